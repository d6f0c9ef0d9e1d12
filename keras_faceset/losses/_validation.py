"""Shared input checks for the losses: identity labels, pair labels and embedding batches."""

import keras
from keras import ops

from keras_faceset.losses.distribute import build_labels


def _as_vector(values, name: str):
    """`(B,)` or `(B, 1)` -> `(B,)`; any other shape raises `ValueError` naming `name`."""
    shape = tuple(values.shape)
    if len(shape) == 2 and shape[1] == 1:
        return ops.squeeze(values, axis=1)
    if len(shape) != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1), got shape {shape}")
    return values


def validate_labels(labels):
    """Check identity labels of shape `(B,)` or `(B, 1)` with an integer dtype.

    Returns them as an int32 tensor of shape `(B,)`; raises `ValueError` for a float
    (or bool) dtype, a rank other than 1 or 2, or a `(B, k)` shape with `k != 1`. The float
    labels of Keras' build under a multi-replica strategy (`build_labels`) are accepted.
    """
    labels = build_labels(ops.convert_to_tensor(labels))
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:
        raise ValueError(f"labels must have an integer dtype (identity indices), got {dtype}")
    return ops.cast(_as_vector(labels, "labels"), "int32")


def validate_pair_labels(y_same):
    """Check same/different pair labels (1 = same, 0 = different), shape `(B,)` or `(B, 1)`.

    Returns them as a `(B,)` tensor of their own dtype.
    """
    return _as_vector(ops.convert_to_tensor(y_same), "pair labels y_same")


def validate_embeddings(embeddings, name: str = "embeddings"):
    """Check a batch of embeddings of shape `(B, D)`; returns it as a float tensor."""
    embeddings = ops.convert_to_tensor(embeddings)
    if "float" not in keras.backend.standardize_dtype(embeddings.dtype):
        embeddings = ops.cast(embeddings, keras.backend.floatx())
    if len(embeddings.shape) != 2:
        raise ValueError(f"{name} must have shape (B, D), got shape {tuple(embeddings.shape)}")
    return embeddings

"""Shared input checks for the losses: integer identity labels and embedding batches."""

import keras
from keras import ops


def validate_labels(labels) -> "keras.KerasTensor":
    """Check identity labels of shape `(B,)` or `(B, 1)` with an integer dtype.

    Returns them as an int32 tensor of shape `(B,)`; raises `ValueError` for a float
    (or bool) dtype, a rank other than 1 or 2, or a `(B, k)` shape with `k != 1`.
    """
    labels = ops.convert_to_tensor(labels)
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:
        raise ValueError(f"labels must have an integer dtype (identity indices), got dtype {dtype}")
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[1] == 1:
        labels = ops.squeeze(labels, axis=1)
    elif len(shape) != 1:
        raise ValueError(f"labels must have shape (B,) or (B, 1), got shape {shape}")
    return ops.cast(labels, "int32")


def validate_embeddings(embeddings, name: str = "embeddings"):
    """Check a float batch of embeddings of shape `(B, D)`; returns it as a tensor."""
    embeddings = ops.convert_to_tensor(embeddings)
    if "float" not in keras.backend.standardize_dtype(embeddings.dtype):
        embeddings = ops.cast(embeddings, keras.backend.floatx())
    if len(embeddings.shape) != 2:
        raise ValueError(f"{name} must have shape (B, D), got shape {tuple(embeddings.shape)}")
    return embeddings

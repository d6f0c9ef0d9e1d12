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


def validate_labels(labels, num_classes: int | None = None, owner: str = "labels", lowest: int = 0):
    """Check identity labels of shape `(B,)` or `(B, 1)` with an integer dtype.

    Returns them as an int32 tensor of shape `(B,)`; raises `ValueError` for a float
    (or bool) dtype, a rank other than 1 or 2, or a `(B, k)` shape with `k != 1`. The float
    labels of Keras' build under a multi-replica strategy (`build_labels`) are accepted.
    With `num_classes`, every label must lie in `[lowest, num_classes)` (`check_label_range`).
    """
    labels = build_labels(ops.convert_to_tensor(labels))
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:
        raise ValueError(f"labels must have an integer dtype (identity indices), got {dtype}")
    labels = ops.cast(_as_vector(labels, "labels"), "int32")
    if num_classes is None:
        return labels
    return check_label_range(labels, num_classes, owner, lowest)


def _out_of_range(owner: str, num_classes: int, lowest: int = 0) -> str:
    return (
        f"{owner}: a label is outside [{lowest}, {num_classes}): labels index the {num_classes} "
        f"classes it was built with. Remap the labels to 0..{num_classes - 1}, or build it "
        "with more classes"
    )


def check_label_range(labels, num_classes: int, owner: str, lowest: int = 0):
    """`labels` (int32 `(B,)`) if all lie in `[lowest, num_classes)`, else an error naming
    the first bad label, its batch row, the number of classes and `owner` (`lowest=-1`: the
    margin heads' -1 marks an unlabeled sample).

    Eagerly a `ValueError`; inside a TensorFlow graph (`model.fit`) an assertion that fails
    the step with `InvalidArgumentError` and the same message (XLA compiles assertions out:
    use `jit_compile=False` to keep it). Under JAX only concrete (eager) labels are checked:
    inside `jax.jit` (JAX's `model.fit`) there are no values to check. A one-hot of an
    out-of-range label would otherwise be all zeros: no target logit, no margin, no center, a
    silently wrong loss."""
    num_classes = int(num_classes)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            in_range = tf.logical_and(labels >= lowest, labels < num_classes)
            row = tf.argmin(tf.cast(in_range, tf.int32), output_type=tf.int32)
            message = _out_of_range(owner, num_classes, lowest)
            check = tf.debugging.Assert(
                tf.reduce_all(in_range),
                [message, "label:", tf.gather(labels, row), "at batch row:", row],
            )
            with tf.control_dependencies([check]):
                return tf.identity(labels)
    if keras.backend.is_keras_tensor(labels) or _traced(labels):
        return labels  # symbolic (a model being built, JAX under jit): no values to check
    values = ops.convert_to_numpy(labels)
    bad = ((values < lowest) | (values >= num_classes)).nonzero()[0]
    if bad.size:
        raise ValueError(
            f"label {values[bad[0]]} at batch row {bad[0]}: "
            + _out_of_range(owner, num_classes, lowest)
        )
    return labels


def _traced(tensor) -> bool:
    """A JAX tracer (inside `jax.jit`, as `model.fit` runs under the JAX backend)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return isinstance(tensor, jax.core.Tracer)


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

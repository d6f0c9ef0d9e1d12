"""Gradients by the active backend's autodiff (tf.GradientTape or jax.grad), as NumPy arrays."""

import keras
import numpy as np
import pytest


def gradients(fn, *args) -> list[np.ndarray]:
    """`d fn(*args) / d args` for a scalar-valued `fn` of float arrays."""
    args = [np.asarray(a, dtype="float32") for a in args]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [np.asarray(g) for g in grads]
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(args))))(*args)
        return [np.asarray(g) for g in grads]
    pytest.skip(f"no gradient helper for the {backend} backend")

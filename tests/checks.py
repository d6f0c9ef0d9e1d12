"""Checks every layer and loss goes through (cf. keras-hub's shared test case).

Each helper asserts a real value: outputs identical after a round trip, a loss that falls.
"""

from pathlib import Path

import keras
import numpy as np


def assert_config_round_trip(layer: keras.layers.Layer, inputs, **call_kwargs) -> None:
    """`from_config(get_config())` rebuilt with the same weights gives the same outputs."""
    expected = layer(inputs, **call_kwargs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs, **call_kwargs)  # build
    clone.set_weights(layer.get_weights())
    _assert_nested_close(expected, clone(inputs, **call_kwargs), atol=0)


def assert_keras_file_round_trip(model: keras.Model, inputs, tmp_path: Path) -> keras.Model:
    """`.keras` save then load gives identical outputs; returns the loaded model."""
    path = Path(tmp_path) / "model.keras"
    expected = model(inputs)
    model.save(path)
    loaded = keras.saving.load_model(path)
    _assert_nested_close(expected, loaded(inputs), atol=0)
    return loaded


def assert_fit_reduces_loss(
    model: keras.Model, x, y, loss, epochs: int = 20, learning_rate: float = 1e-2, **compile_kwargs
):
    """A few epochs of `model.fit` lower the training loss."""
    optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(optimizer=optimizer, loss=loss, **compile_kwargs)
    batch_size = len(_first(x))
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.9 * losses[0], f"loss did not fall: {losses[0]} -> {losses[-1]}"
    return losses


def assert_jit_compile_matches(model: keras.Model, x, atol: float = 1e-5) -> None:
    """`jit_compile=True` predictions equal an eager call (not `predict`, which the JAX backend
    compiles anyway)."""
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))
    model.compile(jit_compile=True)
    _assert_nested_close(expected, model.predict(x, verbose=0), atol=atol)


def _first(x):
    """The first input array of `x` (an array, a list or a dict of arrays)."""
    if isinstance(x, dict):
        return next(iter(x.values()))
    return x[0] if isinstance(x, (list, tuple)) else x


def _assert_nested_close(a, b, atol):
    if isinstance(a, dict):
        for key in a:
            _assert_nested_close(a[key], b[key], atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for left, right in zip(a, b, strict=True):
            _assert_nested_close(left, right, atol)
    else:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=atol, rtol=0
        )


def value_and_gradients(fn, *args):
    """`(fn(*args), [d fn / d arg, ...])` as float32 NumPy, by the active backend's autodiff
    (tf.GradientTape or jax.grad), for a scalar-valued `fn` of float arrays."""
    args = [np.asarray(a, dtype="float32") for a in args]
    if keras.backend.backend() == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
    else:
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return keras.ops.convert_to_numpy(value), [keras.ops.convert_to_numpy(g) for g in grads]


def gradients(fn, *args) -> list:
    """`d fn(*args) / d args` (see `value_and_gradients`)."""
    return value_and_gradients(fn, *args)[1]


def tempered_weights(weights, temperature: float) -> np.ndarray:
    """The reference for a set layer's `temperature`: the T = 1 frame weights raised to 1/T and
    renormalised (float64; an all-masked row stays 0)."""
    tempered = np.asarray(weights, dtype=np.float64) ** (1 / temperature)
    return tempered / np.maximum(tempered.sum(-1, keepdims=True), 1e-300)

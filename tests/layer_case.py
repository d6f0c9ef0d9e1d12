"""Checks every public layer and loss goes through (cf. keras-hub's `TestCase`).

A `LayerCase` says how to build a layer and feed it a batch; a `LossCase` how to train a small
model with a `keras.losses.Loss`. The `check_*` functions run one case through a config round
trip, a `.keras` round trip inside a small model, one `fit` step, `jit_compile=True` and the
`mixed_bfloat16` policy, each asserting values: outputs identical after a round trip, every
weight moved by a step, compiled outputs equal to eager ones, bfloat16 within its precision.
A layer's outputs include the losses it adds (`CenterLoss`, `DSALoss`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tests.checks import assert_keras_file_round_trip

BATCH_SEED = 0
# bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.004); a few ops deep, outputs stay
# within 2 % of the output's largest magnitude.
BF16_TOLERANCE = 2e-2
# XLA reorders float32 sums; outputs move by a few ulps of their magnitude.
JIT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class LayerCase:
    """A layer to check.

    `make()` builds it unbuilt; `inputs(rng)` gives one batch: an array or a list of arrays
    (int arrays are labels, bool arrays masks). `embed=True` puts a `Dense` on the first input
    inside the test model, for layers without trainable weights of their own.
    `bf16_tolerance`: the allowed bfloat16 error, relative to the output's largest magnitude.
    """

    id: str
    make: Callable[[], keras.layers.Layer]
    inputs: Callable[[np.random.Generator], object]
    embed: bool = False
    bf16_tolerance: float = BF16_TOLERANCE


@dataclass(frozen=True)
class LossCase:
    """A loss to check: `make()` builds it, `model()` a small model to train with it and
    `data(rng)` one batch `(x, y)` for that model."""

    id: str
    make: Callable[[], keras.losses.Loss]
    model: Callable[[], keras.Model]
    data: Callable[[np.random.Generator], tuple]


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _numpy(values) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in values]


def outputs_of(layer_or_model, inputs) -> list[np.ndarray]:
    """The call's outputs followed by the losses the call added, as NumPy arrays."""
    outputs = keras.tree.flatten(layer_or_model(inputs))
    return _numpy([*outputs, *layer_or_model.losses])


def _assert_all_close(actual: list, expected: list, atol: float = 0.0, rtol: float = 0.0):
    assert len(actual) == len(expected), (len(actual), len(expected))
    for got, want in zip(actual, expected, strict=True):
        got, want = np.asarray(got, "float32"), np.asarray(want, "float32")
        np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def perturb_weights(layer: keras.layers.Layer, rng: np.random.Generator) -> None:
    """Move every float weight off its initial value, so that a round trip losing a
    zero-initialised weight cannot pass: arrays get N(0, 0.5) noise, scalars (scales,
    annealing weights) a positive nudge that keeps their sign."""
    for variable in layer.weights:
        if "float" not in keras.backend.standardize_dtype(variable.dtype):
            continue
        value = keras.ops.convert_to_numpy(variable)
        noise = rng.uniform(0.1, 0.5) if value.ndim == 0 else rng.normal(0, 0.5, value.shape)
        variable.assign(value + noise)


def built_layer(case: LayerCase) -> tuple[keras.layers.Layer, object]:
    """The case's layer, built on a seeded batch and with perturbed weights, and the batch."""
    rng = np.random.default_rng(BATCH_SEED)
    inputs = case.inputs(rng)
    layer = case.make()
    layer(inputs)
    perturb_weights(layer, rng)
    return layer, inputs


def _single(values: list):
    return values[0] if len(values) == 1 else values


def model_around(case: LayerCase, layer: keras.layers.Layer, inputs) -> keras.Model:
    """A functional model: one `keras.Input` per input array (batch axis left out), an
    optional `Dense` on the first, then the layer."""
    arrays = _as_list(inputs)
    symbolic = [keras.Input(a.shape[1:], dtype=str(a.dtype)) for a in arrays]
    fed = list(symbolic)
    if case.embed:
        fed[0] = keras.layers.Dense(arrays[0].shape[-1], name="embed")(fed[0])
    return keras.Model(_single(symbolic), layer(_single(fed)))


def check_layer_config_round_trip(case: LayerCase) -> None:
    """`from_config(get_config())` (and Keras serialisation) rebuild the layer; with the same
    weights the clone gives identical outputs."""
    layer, inputs = built_layer(case)
    expected = outputs_of(layer, inputs)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    _assert_all_close(outputs_of(clone, inputs), expected)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def check_layer_keras_file_round_trip(case: LayerCase, tmp_path: Path) -> None:
    """A model holding the layer, saved to `.keras` and loaded, gives identical outputs."""
    layer, inputs = built_layer(case)
    model = model_around(case, layer, inputs)
    expected = outputs_of(model, inputs)
    loaded = assert_keras_file_round_trip(model, inputs, tmp_path)
    _assert_all_close(outputs_of(loaded, inputs), expected)  # and the losses the model adds


def check_layer_fit_step(case: LayerCase) -> None:
    """One `fit` step on an MSE target (plus the losses the layer adds) gives a finite loss
    and moves every trainable weight: each one gets a gradient."""
    layer, inputs = built_layer(case)
    model = model_around(case, layer, inputs)
    assert model.trainable_variables, f"{case.id}: nothing to train; set embed=True"
    rng = np.random.default_rng(BATCH_SEED + 1)
    outputs = keras.tree.flatten(model(inputs))
    targets = [rng.normal(size=o.shape).astype("float32") for o in outputs]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = _numpy(model.trainable_variables)
    batch = len(_as_list(inputs)[0])
    history = model.fit(inputs, _single(targets), batch_size=batch, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]), history.history
    after = _numpy(model.trainable_variables)
    for variable, old, new in zip(model.trainable_variables, before, after, strict=True):
        assert not np.array_equal(old, new), f"{case.id}: {variable.path} did not move"


def check_layer_jit_compile(case: LayerCase) -> None:
    """`jit_compile=True` predictions (and added losses, through `evaluate`) equal eager ones."""
    layer, inputs = built_layer(case)
    model = model_around(case, layer, inputs)
    expected = outputs_of(model, inputs)
    n_outputs = len(keras.tree.flatten(model.outputs))
    model.compile(jit_compile=True)
    batch = len(_as_list(inputs)[0])
    predicted = _as_list(model.predict(inputs, batch_size=batch, verbose=0))
    scale = max(1.0, max(float(np.abs(e).max()) for e in expected))
    _assert_all_close(predicted, expected[:n_outputs], atol=JIT_TOLERANCE * scale)
    if len(expected) > n_outputs:  # the layer adds losses: `evaluate` reports their sum
        total = model.evaluate(inputs, batch_size=batch, verbose=0)
        np.testing.assert_allclose(total, sum(expected[n_outputs:]), rtol=JIT_TOLERANCE)


def check_layer_mixed_bfloat16(case: LayerCase) -> None:
    """Under the `mixed_bfloat16` policy the layer computes in bfloat16 (float outputs are
    bfloat16) with float32 weights, and its outputs stay within bfloat16 precision of float32."""
    layer, inputs = built_layer(case)
    expected = outputs_of(layer, inputs)
    mixed = type(layer).from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})
    mixed(inputs)
    mixed.set_weights(layer.get_weights())
    raw = [*keras.tree.flatten(mixed(inputs)), *mixed.losses]
    for variable in mixed.weights:
        if "float" in variable.dtype:
            assert variable.dtype == "float32", variable.path
    for value, want in zip(raw, expected, strict=True):
        if np.issubdtype(want.dtype, np.floating):
            assert keras.backend.standardize_dtype(value.dtype) == "bfloat16", value.dtype
        scale = max(1e-3, float(np.abs(want).max()))
        got = keras.ops.convert_to_numpy(keras.ops.cast(value, "float32"))
        np.testing.assert_allclose(got, want, atol=case.bf16_tolerance * scale, rtol=0)


def _loss_value(loss: keras.losses.Loss, model: keras.Model, data: tuple) -> float:
    x, y = data
    return float(keras.ops.convert_to_numpy(loss(y, model(x))))


def _case_data(case: LossCase) -> tuple:
    return case.data(np.random.default_rng(BATCH_SEED))


def check_loss_config_round_trip(case: LossCase) -> None:
    """`from_config(get_config())` and `keras.losses` serialisation rebuild the loss; the
    clone gives the identical value."""
    loss, model, data = case.make(), case.model(), _case_data(case)
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    assert _loss_value(clone, model, data) == _loss_value(loss, model, data)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


def _fit_one_step(model: keras.Model, loss: keras.losses.Loss, data: tuple) -> float:
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    x, y = data
    history = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0, shuffle=False)
    return history.history["loss"][0]


def check_loss_fit_step(case: LossCase) -> None:
    """One `fit` step gives a finite, positive loss and moves every trainable weight."""
    model, data = case.model(), _case_data(case)
    before = _numpy(model.trainable_variables)
    value = _fit_one_step(model, case.make(), data)
    assert np.isfinite(value) and value > 0, value
    after = _numpy(model.trainable_variables)
    for variable, old, new in zip(model.trainable_variables, before, after, strict=True):
        assert not np.array_equal(old, new), f"{case.id}: {variable.path} did not move"


def check_loss_keras_file_round_trip(case: LossCase, tmp_path: Path) -> None:
    """A model compiled with the loss and trained a step, saved to `.keras` and loaded, keeps
    the loss (class and config) and evaluates to the same value."""
    loss, model, data = case.make(), case.model(), _case_data(case)
    _fit_one_step(model, loss, data)
    path = Path(tmp_path) / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()
    x, y = data
    expected = model.evaluate(x, y, batch_size=len(y), verbose=0)
    assert loaded.evaluate(x, y, batch_size=len(y), verbose=0) == expected


def check_loss_jit_compile(case: LossCase) -> None:
    """`evaluate` with `jit_compile=True` gives the eager value of the loss."""
    loss, model, data = case.make(), case.model(), _case_data(case)
    expected = _loss_value(loss, model, data)
    model.compile(loss=loss, jit_compile=True)
    x, y = data
    got = model.evaluate(x, y, batch_size=len(y), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=JIT_TOLERANCE, atol=JIT_TOLERANCE)


def check_loss_mixed_bfloat16(case: LossCase) -> None:
    """With `dtype="mixed_bfloat16"` the loss computes in bfloat16, within bfloat16 precision
    of the float32 value. A loss is a difference of terms of order 1 (distances of unit
    embeddings, log-probabilities), so its error is absolute below a value of 1."""
    loss, model, (x, y) = case.make(), case.model(), _case_data(case)
    mixed = type(loss).from_config({**loss.get_config(), "dtype": "mixed_bfloat16"})
    y_pred = model(x)
    value = mixed(y, y_pred)
    assert keras.backend.standardize_dtype(value.dtype) == "bfloat16", value.dtype
    expected = float(keras.ops.convert_to_numpy(loss(y, y_pred)))
    got = float(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32")))
    np.testing.assert_allclose(got, expected, atol=BF16_TOLERANCE * max(1.0, abs(expected)))

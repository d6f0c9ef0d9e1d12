"""QAN pooling temperature: `w_i = μ_i^(1/T) / Σ_j μ_j^(1/T)` (brute force in NumPy)."""

import numpy as np
import pytest
from keras import ops

from keras_faceset.layers import QualityPooling
from tests.checks import assert_config_round_trip, gradients, tempered_weights
from tests.layers.test_set_layers import DIM, random_set


def reference(x, q, mask, temperature):
    """One set at a time on its unmasked frames, float64."""
    pooled, weights = np.zeros((len(x), DIM)), np.zeros(mask.shape)
    for b in range(len(x)):
        idx = np.flatnonzero(mask[b])
        mu = q[b, idx].astype("float64") ** (1 / temperature)
        if mu.sum() > 0:
            weights[b, idx] = mu / mu.sum()
            pooled[b] = weights[b, idx] @ x[b, idx].astype("float64")
    return pooled, weights


def run(layer, x, q, mask):
    pooled, weights = layer([x, q, mask])
    return ops.convert_to_numpy(pooled), ops.convert_to_numpy(weights)


def test_temperature_one_is_eq_1_bit_for_bit(rng):
    """The default (a layer saved before the argument existed) is T = 1, and T = 1 is QAN's
    eq. 1 exactly (μ used as it is)."""
    x, q, mask = random_set(rng)
    default = QualityPooling(return_weights=True)
    assert default.temperature == 1.0
    got = run(default, x, q, mask)
    for a, b in zip(got, run(QualityPooling(True, temperature=1.0), x, q, mask), strict=True):
        np.testing.assert_array_equal(a, b)
    mu = np.where(mask, q, 0.0)
    total = mu.sum(-1, keepdims=True)
    expected = np.where(total > 0, mu / np.where(total > 0, total, 1.0), 0.0).astype("float32")
    np.testing.assert_allclose(got[1], expected, rtol=1e-6)


@pytest.mark.parametrize("temperature", [3.0, 0.5, 10.0])
def test_matches_brute_force_reference(temperature, rng):
    x, q, mask = random_set(rng)
    q[3, 0] = 0.0  # an unmasked frame of quality 0 keeps weight 0
    mask[3, 0] = True
    pooled, weights = run(QualityPooling(True, temperature=temperature), x, q, mask)
    expected_pooled, expected_weights = reference(x, q, mask, temperature)
    np.testing.assert_allclose(pooled, expected_pooled, atol=2e-6)
    np.testing.assert_allclose(weights, expected_weights, atol=2e-6)
    np.testing.assert_array_equal(weights[~mask], 0.0)
    assert weights[3, 0] == 0.0


def test_is_the_trained_weights_to_the_power_one_over_t(rng):
    """`μ^(1/T)` renormalised equals the T = 1 weights raised to 1/T and renormalised (the
    normalisation of eq. 1 cancels)."""
    x, q, mask = random_set(rng)
    _, trained = run(QualityPooling(True), x, q, mask)
    pooled, weights = run(QualityPooling(True, temperature=3.0), x, q, mask)
    tempered = tempered_weights(trained, 3.0)
    np.testing.assert_allclose(weights, tempered, atol=2e-6)
    np.testing.assert_allclose(pooled, np.einsum("bt,btd->bd", tempered, x), atol=2e-6)


def test_higher_temperature_is_closer_to_uniform(rng):
    x, q, mask = random_set(rng)
    uniform = np.where(mask, 1.0, 0.0) / np.maximum(mask.sum(-1, keepdims=True), 1)
    gaps = [
        np.abs(run(QualityPooling(True, temperature=t), x, q, mask)[1] - uniform).sum()
        for t in (1.0, 3.0, 30.0)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > 0


def test_masked_and_zero_quality_frames_get_zero_weight_and_finite_gradients(rng):
    """μ^(1/3) has an infinite slope at μ = 0: masked frames and μ = 0 must still give finite
    gradients (and exactly 0 on masked frames)."""
    x, q, mask = random_set(rng)
    q[2, 1] = 0.0  # unmasked, quality 0
    layer = QualityPooling(True, temperature=3.0)
    expected = run(layer, x, q, mask)
    bad_x = np.where(mask[..., None], x, np.nan).astype("float32")
    bad_q = np.where(mask, q, np.nan).astype("float32")
    got = run(layer, bad_x, bad_q, mask)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert got[1][2, 1] == 0.0
    probe = rng.normal(size=(len(x), DIM)).astype("float32")

    def loss(features, quality):
        return ops.sum(layer([features, quality], mask=mask)[0] * probe)

    grad_x, grad_q = gradients(loss, bad_x, bad_q)
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_q))
    np.testing.assert_array_equal(grad_x[~mask], 0.0)
    np.testing.assert_array_equal(grad_q[~mask], 0.0)


def test_config_keeps_temperature(rng):
    x, q, mask = random_set(rng)
    layer = QualityPooling(True, temperature=3.0)
    assert layer.get_config()["temperature"] == 3.0
    assert QualityPooling.from_config(layer.get_config()).temperature == 3.0
    assert_config_round_trip(layer, [x, q, mask])


@pytest.mark.parametrize("bad", [0, -2, float("nan"), float("inf"), False, "3", None])
def test_bad_temperature_is_refused(bad):
    with pytest.raises(ValueError, match="QualityPooling: temperature must be a finite"):
        QualityPooling(temperature=bad)

"""NAN attention temperature: the last block's softmax of `e_k / T` (brute force in NumPy)."""

import numpy as np
import pytest
from keras import ops

from keras_faceset.layers import AttentionAggregation
from tests.checks import assert_config_round_trip, gradients, tempered_weights
from tests.layers.test_set_layers import DIM, random_set

QUALITY = 3


def make_nan(num_blocks, temperature=1.0, max_logit=None, seed=1, **kwargs):
    """A built NAN layer with quality features and random (non-zero) weights."""
    layer = AttentionAggregation(
        num_blocks,
        return_attention=True,
        quality_features=True,
        max_logit=max_logit,
        temperature=temperature,
        **kwargs,
    )
    layer.build([(None, None, DIM), (None, None, QUALITY)])
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    return layer


def quality_features(rng, x):
    return rng.normal(size=(*x.shape[:2], QUALITY)).astype("float32")


def reference(layer, x, u, mask, temperature):
    """NAN eqs. (1)-(4), one set at a time on its unmasked frames, float64; the last block's
    softmax over `e_k / temperature`."""

    def numpy(w):
        return ops.convert_to_numpy(w).astype("float64")

    query, v = numpy(layer.query), numpy(layer.quality_kernel)
    transfers = [
        (numpy(k), numpy(b))
        for k, b in zip(layer.transfer_kernels, layer.transfer_biases, strict=True)
    ]
    c = layer.max_logit

    def attend(f, quality_score, q, t):
        e = f @ q + quality_score
        if c is not None:
            e = c * np.tanh(e / c)
        a = np.exp(e / t - (e / t).max())
        return a / a.sum()

    pooled, attention = np.zeros((len(x), DIM)), np.zeros(mask.shape)
    for b in range(len(x)):
        idx = np.flatnonzero(mask[b])
        if idx.size == 0:
            continue
        f, s = x[b, idx].astype("float64"), u[b, idx].astype("float64") @ v
        a = attend(f, s, query, temperature if not transfers else 1.0)
        for n, (kernel, bias) in enumerate(transfers, start=1):
            q = np.tanh(a @ f @ kernel + bias)
            a = attend(f, s, q, temperature if n == len(transfers) else 1.0)
        pooled[b], attention[b, idx] = a @ f, a
    return pooled, attention


def run(layer, x, u, mask):
    pooled, attention = layer([x, u, mask])
    return ops.convert_to_numpy(pooled), ops.convert_to_numpy(attention)


@pytest.mark.parametrize("num_blocks, max_logit", [(1, None), (2, 1.5), (3, None)])
def test_temperature_one_is_the_trained_layer_bit_for_bit(num_blocks, max_logit, rng):
    """The default (a layer saved before the argument existed) is T = 1, and T = 1 is NAN's
    eqs. (1)-(4) exactly: dividing by 1 changes no bit."""
    x, _, mask = random_set(rng)
    u = quality_features(rng, x)
    explicit = make_nan(num_blocks, 1.0, max_logit)
    default = AttentionAggregation(
        num_blocks, return_attention=True, quality_features=True, max_logit=max_logit
    )
    default.build([(None, None, DIM), (None, None, QUALITY)])
    default.set_weights(explicit.get_weights())
    assert default.temperature == 1.0
    got = run(default, x, u, mask)
    for a, b in zip(got, run(explicit, x, u, mask), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got, reference(default, x, u, mask, 1.0), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6)


@pytest.mark.parametrize("num_blocks, max_logit", [(1, None), (1, 1.5), (2, 1.5), (2, None)])
@pytest.mark.parametrize("temperature", [3.0, 0.5])
def test_matches_brute_force_reference(num_blocks, max_logit, temperature, rng):
    x, _, mask = random_set(rng)
    u = quality_features(rng, x)
    layer = make_nan(num_blocks, temperature, max_logit)
    pooled, attention = run(layer, x, u, mask)
    expected_pooled, expected_attention = reference(layer, x, u, mask, temperature)
    np.testing.assert_allclose(pooled, expected_pooled, atol=2e-6)
    np.testing.assert_allclose(attention, expected_attention, atol=2e-6)
    np.testing.assert_array_equal(attention[~mask], 0.0)
    np.testing.assert_allclose(attention.sum(-1)[mask.any(-1)], 1.0, atol=1e-6)


@pytest.mark.parametrize("num_blocks", [1, 2])
def test_is_the_trained_weights_to_the_power_one_over_t(num_blocks, rng):
    """`softmax(e / T) = a^(1/T) / Σ a^(1/T)` of the T = 1 layer's last block (earlier blocks
    unchanged), and the pooled `r` is the weighted mean with those weights."""
    x, _, mask = random_set(rng)
    u = quality_features(rng, x)
    _, trained = run(make_nan(num_blocks, 1.0, 1.5), x, u, mask)
    pooled, attention = run(make_nan(num_blocks, 3.0, 1.5), x, u, mask)
    tempered = tempered_weights(trained, 3.0)
    np.testing.assert_allclose(attention, tempered, atol=2e-6)
    np.testing.assert_allclose(pooled, np.einsum("bt,btd->bd", tempered, x), atol=2e-6)


def test_higher_temperature_is_closer_to_uniform(rng):
    x, _, mask = random_set(rng)
    u = quality_features(rng, x)
    uniform = np.where(mask, 1.0, 0.0) / np.maximum(mask.sum(-1, keepdims=True), 1)
    gaps = [
        np.abs(run(make_nan(2, t, 1.5), x, u, mask)[1] - uniform).sum() for t in (1.0, 3.0, 30.0)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > 0


def test_masked_frames_get_exactly_zero_and_finite_gradients(rng):
    x, _, mask = random_set(rng)
    u = quality_features(rng, x)
    layer = make_nan(2, 3.0, 1.5)
    expected = run(layer, x, u, mask)
    bad_x = np.where(mask[..., None], x, np.nan).astype("float32")
    bad_u = np.where(mask[..., None], u, 1e30).astype("float32")
    got = run(layer, bad_x, bad_u, mask)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[1][~mask], 0.0)
    probe = rng.normal(size=(len(x), DIM)).astype("float32")
    params = [ops.convert_to_numpy(w) for w in layer.trainable_variables]

    def loss(features, quality, *weights):
        (pooled, _), _ = layer.stateless_call(list(weights), [], [features, quality, mask])
        return ops.sum(pooled * probe)

    grads = gradients(loss, bad_x, bad_u, *params)
    assert all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_array_equal(grads[0][~mask], 0.0)


def test_config_keeps_temperature(rng):
    x, _, mask = random_set(rng)
    u = quality_features(rng, x)
    layer = make_nan(2, 3.0, 1.5)
    assert layer.get_config()["temperature"] == 3.0
    assert AttentionAggregation.from_config(layer.get_config()).temperature == 3.0
    assert_config_round_trip(layer, [x, u, mask])


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "3", None])
def test_bad_temperature_is_refused(bad):
    with pytest.raises(ValueError, match="AttentionAggregation: temperature must be a finite"):
        AttentionAggregation(2, temperature=bad)


def test_numpy_scalar_temperature_is_accepted():
    assert AttentionAggregation(1, temperature=np.float32(3)).temperature == 3.0
    assert isinstance(AttentionAggregation(1, temperature=2).temperature, float)

"""Set aggregation layers: NAN attention, QAN quality pooling, masked mean/max pooling."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_faceset.layers import (
    AttentionAggregation,
    MaskedMaxPooling,
    MaskedMeanPooling,
    QualityPooling,
)
from tests.checks import assert_fit_reduces_loss, gradients

DIM = 4
CASES = ["mean", "max", "nan1", "nan2", "qan"]


def make_layer(case: str, return_weights: bool = True, seed: int = 1):
    """A built layer; NAN layers get random (non-zero) weights so attention is not uniform."""
    if case == "mean":
        return MaskedMeanPooling(return_weights=return_weights)
    if case == "max":
        return MaskedMaxPooling(return_weights=return_weights)
    if case == "qan":
        return QualityPooling(return_weights=return_weights)
    layer = AttentionAggregation(num_blocks=int(case[-1]), return_attention=return_weights)
    layer.build((None, None, DIM))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    return layer


def layer_inputs(case, x, q):
    return [x, q] if case == "qan" else x


def random_set(rng, batch=6, frames=5):
    """Features, positive qualities and a mask with an empty, a singleton and a full set."""
    x = rng.normal(size=(batch, frames, DIM)).astype("float32")
    q = rng.uniform(0.05, 1.0, size=(batch, frames)).astype("float32")
    mask = rng.random((batch, frames)) < 0.6
    mask[0] = False
    mask[1] = np.arange(frames) == 2
    mask[2] = True
    return x, q, mask


def _softmax(e):
    e = np.exp(e - e.max())
    return e / e.sum()


def reference(case, layer, x, q, mask):
    """Brute force in float64, one set at a time, looking only at the unmasked frames."""
    pooled = np.zeros((x.shape[0], x.shape[2]))
    weights = np.zeros(mask.shape)
    for b in range(x.shape[0]):
        idx = np.flatnonzero(mask[b])
        if idx.size == 0:
            continue
        f = x[b, idx].astype("float64")
        if case == "mean":
            a = np.full(idx.size, 1.0 / idx.size)
        elif case == "qan":
            a = q[b, idx] / q[b, idx].sum()
        elif case == "max":
            wins = f == f.max(axis=0)
            a = (wins / wins.sum(axis=0)).mean(axis=1)
            pooled[b] = f.max(axis=0)
        else:
            a = _softmax(f @ ops.convert_to_numpy(layer.query))
            for kernel, bias in zip(layer.transfer_kernels, layer.transfer_biases, strict=True):
                query = np.tanh(a @ f @ ops.convert_to_numpy(kernel) + ops.convert_to_numpy(bias))
                a = _softmax(f @ query)
        if case != "max":
            pooled[b] = a @ f
        weights[b, idx] = a
    return pooled, weights


def run(case, layer, x, q, mask):
    pooled, weights = layer(layer_inputs(case, x, q), mask=mask)
    return ops.convert_to_numpy(pooled), ops.convert_to_numpy(weights)


@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_reference(case, rng):
    x, q, mask = random_set(rng, batch=8, frames=7)
    layer = make_layer(case)
    pooled, weights = run(case, layer, x, q, mask)
    ref_pooled, ref_weights = reference(case, layer, x, q, mask)
    np.testing.assert_allclose(pooled, ref_pooled, atol=1e-5)
    np.testing.assert_allclose(weights, ref_weights, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_permutation_invariance(case, rng):
    x, q, mask = random_set(rng)
    layer = make_layer(case)
    perm = rng.permutation(x.shape[1])
    pooled, weights = run(case, layer, x, q, mask)
    pooled_p, weights_p = run(case, layer, x[:, perm], q[:, perm], mask[:, perm])
    np.testing.assert_allclose(pooled_p, pooled, atol=1e-6)
    np.testing.assert_allclose(weights_p, weights[:, perm], atol=1e-6)


def _garbage(x, q, mask, value):
    x_bad = np.where(mask[..., None], x, np.float32(value))
    return x_bad, np.where(mask, q, np.float32(value))


@pytest.mark.parametrize("value", [1e30, -1e30, np.nan, np.inf])
@pytest.mark.parametrize("case", CASES)
def test_garbage_in_masked_frames_changes_nothing(case, value, rng):
    x, q, mask = random_set(rng)
    layer = make_layer(case)
    expected = run(case, layer, x, q, mask)
    x_bad, q_bad = _garbage(x, q, mask, value)
    got = run(case, layer, x_bad, q_bad, mask)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("case", CASES)
def test_gradients_finite_with_garbage_and_empty_sets(case, rng):
    x, q, mask = random_set(rng)
    x_bad, q_bad = _garbage(x, q, mask, np.nan)
    layer = make_layer(case)
    layer(layer_inputs(case, x, q), mask=mask)  # build
    weights = [ops.convert_to_numpy(w) for w in layer.trainable_variables]
    probe = rng.normal(size=(x.shape[0], DIM)).astype("float32")

    def loss(features, quality, *params):
        inputs = layer_inputs(case, features, quality)
        (pooled, _), _ = layer.stateless_call(list(params), [], inputs, mask=mask)
        return ops.sum(pooled * probe)

    grads = gradients(loss, x_bad, q_bad, *weights)
    for g in grads:
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(grads[0][~mask], 0.0)  # padding and empty sets get no gradient
    np.testing.assert_array_equal(grads[1][~mask], 0.0)


@pytest.mark.parametrize("case", CASES)
def test_single_frame_set_is_that_frame(case, rng):
    x, q, _ = random_set(rng, frames=1)
    pooled, weights = run(case, make_layer(case), x, q, None)
    np.testing.assert_allclose(pooled, x[:, 0], atol=1e-6)
    np.testing.assert_array_equal(weights, 1.0)
    # one valid frame among padding
    x, q, _ = random_set(rng, frames=6)
    mask = np.arange(6)[None, :] == np.array([0, 5, 3, 1, 2, 4])[:, None]
    pooled, weights = run(case, make_layer(case), x, q, mask)
    np.testing.assert_allclose(pooled, x[mask], atol=1e-6)
    np.testing.assert_array_equal(weights, mask.astype("float32"))


@pytest.mark.parametrize("case", CASES)
def test_all_masked_gives_zero_vector_and_zero_weights(case, rng):
    x, q, _ = random_set(rng)
    mask = np.zeros(x.shape[:2], bool)
    pooled, weights = run(case, make_layer(case), x, q, mask)
    np.testing.assert_array_equal(pooled, 0.0)
    np.testing.assert_array_equal(weights, 0.0)


@pytest.mark.parametrize("case", CASES)
def test_weights_sum_to_one_over_unmasked_frames(case, rng):
    x, q, mask = random_set(rng, batch=10, frames=6)
    _, weights = run(case, make_layer(case), x, q, mask)
    np.testing.assert_array_equal(weights[~mask], 0.0)
    assert np.all(weights >= 0)
    sums = weights.sum(axis=1)
    np.testing.assert_allclose(sums[mask.any(axis=1)], 1.0, atol=1e-6)
    np.testing.assert_array_equal(sums[~mask.any(axis=1)], 0.0)


@pytest.mark.parametrize("case", CASES)
def test_no_mask_means_all_frames_valid(case, rng):
    x, q, _ = random_set(rng)
    layer = make_layer(case)
    expected = run(case, layer, x, q, np.ones(x.shape[:2], bool))
    got = run(case, layer, x, q, None)
    np.testing.assert_allclose(got[0], expected[0], atol=0)
    np.testing.assert_allclose(got[1], expected[1], atol=0)


@pytest.mark.parametrize("case", CASES)
def test_mask_given_three_ways_agrees(case, rng):
    x, q, mask = random_set(rng)
    x = np.where(mask[..., None], x, 0.0).astype("float32")  # what keras.layers.Masking drops
    layer = make_layer(case)
    by_kwarg = run(case, layer, x, q, mask)
    by_input = layer([x, q, mask] if case == "qan" else [x, mask])
    features = keras.Input((None, DIM))
    quality = keras.Input((None,))
    masked = keras.layers.Masking(mask_value=0.0)(features)
    outputs = layer([masked, quality] if case == "qan" else masked)
    propagated = keras.Model([features, quality], outputs)([x, q])
    for got in (by_input, propagated):
        np.testing.assert_allclose(ops.convert_to_numpy(got[0]), by_kwarg[0], atol=1e-6)
        np.testing.assert_allclose(ops.convert_to_numpy(got[1]), by_kwarg[1], atol=1e-6)


def _functional(case, layer):
    features = keras.Input((None, DIM))
    quality = keras.Input((None,))
    mask = keras.Input((None,), dtype="bool")
    if case == "qan":
        return keras.Model([features, quality, mask], layer([features, quality, mask]))
    return keras.Model([features, mask], layer([features, mask]))


def _model_inputs(case, x, q, mask):
    return [x, q, mask] if case == "qan" else [x, mask]


@pytest.mark.parametrize("case", CASES)
def test_dynamic_set_size_in_a_model(case, rng):
    layer = make_layer(case)
    model = _functional(case, layer)
    for frames in (3, 7):
        x, q, mask = random_set(rng, frames=frames)
        pooled, weights = model.predict(_model_inputs(case, x, q, mask), verbose=0)
        ref_pooled, ref_weights = reference(case, layer, x, q, mask)
        np.testing.assert_allclose(pooled, ref_pooled, atol=1e-5)
        np.testing.assert_allclose(weights, ref_weights, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_raise_value_error(case, rng):
    x, q, mask = random_set(rng)
    layer = make_layer(case)
    with pytest.raises(ValueError, match="rank 3"):
        layer(layer_inputs(case, x[:, 0], q))
    with pytest.raises(ValueError, match="mask must have shape"):
        layer(layer_inputs(case, x, q), mask=mask[:, :-1])
    with pytest.raises(ValueError, match="mask must have shape"):
        layer(layer_inputs(case, x, q), mask=mask[..., None])
    symbolic = _model_inputs(case, keras.Input((5, DIM)), keras.Input((5,)), keras.Input((4,)))
    with pytest.raises(ValueError, match="mask must have shape"):
        layer(symbolic)


def test_quality_shape_mismatch_raises(rng):
    x, q, mask = random_set(rng)
    layer = QualityPooling()
    for bad in (q[:, :-1], q[..., None, None], np.repeat(q[..., None], 2, axis=-1)):
        with pytest.raises(ValueError, match="quality must have shape"):
            layer([x, bad])
    with pytest.raises(ValueError, match="expects inputs"):
        layer(x)
    with pytest.raises(ValueError, match="expects inputs"):
        layer([x, q, mask, mask])


def test_quality_pooling_accepts_trailing_unit_axis(rng):
    x, q, mask = random_set(rng)
    layer = QualityPooling(return_weights=True)
    expected = run("qan", layer, x, q, mask)
    got = run("qan", layer, x, q[..., None], mask)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_quality_pooling_gradients_are_paper_eqs_5_6(rng):
    """∂L/∂R_i = ∂L/∂R_a · μ_i/Σμ and ∂L/∂μ_i = ∂L/∂R_a · (R_i − R_a)/Σμ on unmasked frames."""
    x, q, mask = random_set(rng)
    probe = rng.normal(size=(x.shape[0], DIM)).astype("float32")  # ∂L/∂R_a
    layer = QualityPooling()

    def loss(features, quality):
        return ops.sum(layer([features, quality], mask=mask) * probe)

    grad_x, grad_q = gradients(loss, x, q)
    mu = np.where(mask, q, 0.0).astype("float64")
    total = mu.sum(axis=1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    pooled = np.einsum("bt,btd->bd", mu, x) / safe
    expected_x = probe[:, None, :] * (mu / safe)[..., None]
    expected_q = np.einsum("bd,btd->bt", probe, x - pooled[:, None, :]) / safe
    expected_q = np.where(mask, expected_q, 0.0)
    np.testing.assert_allclose(grad_x, expected_x, atol=1e-5)
    np.testing.assert_allclose(grad_q, expected_q, atol=1e-5)


@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_nan_at_init_is_masked_mean(num_blocks, rng):
    x, q, mask = random_set(rng)
    nan = AttentionAggregation(num_blocks=num_blocks, return_attention=True)
    got = nan(x, mask=mask)
    expected = MaskedMeanPooling(return_weights=True)(x, mask=mask)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6)
    assert len(nan.trainable_weights) == 1 + 2 * (num_blocks - 1)


@pytest.mark.parametrize("num_blocks", [0, -1, 1.5, True, "2"])
def test_nan_rejects_bad_num_blocks(num_blocks):
    with pytest.raises(ValueError, match="num_blocks"):
        AttentionAggregation(num_blocks=num_blocks)


def test_nan_softmax_is_stable_for_large_scores(rng):
    x, q, mask = random_set(rng)
    layer = make_layer("nan1")
    layer.set_weights([np.full(DIM, 1e4)])
    pooled, weights = run("nan1", layer, x, q, mask)
    ref_pooled, ref_weights = reference("nan1", layer, x, q, mask)
    assert np.all(np.isfinite(pooled)) and np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights, ref_weights, atol=1e-5)
    np.testing.assert_allclose(pooled, ref_pooled, atol=1e-4)


def noisy_sets(rng, sets=64, frames=5):
    """Two classes; each set has one signal frame (class prototype + a quality marker in the
    last dimension) among loud noise frames. Mean pooling drowns the signal; attending to the
    marked frame recovers it."""
    labels = rng.integers(0, 2, size=sets)
    prototypes = np.array([[2.0] * (DIM - 1), [-2.0] * (DIM - 1)])
    x = rng.normal(0.0, 3.0, size=(sets, frames, DIM))
    x[..., -1] = 0.0
    signal = rng.integers(0, frames, size=sets)
    x[np.arange(sets), signal, :-1] = prototypes[labels] + rng.normal(0, 0.3, (sets, DIM - 1))
    x[np.arange(sets), signal, -1] = 10.0
    mask = rng.random((sets, frames)) < 0.8
    mask[np.arange(sets), signal] = True
    return x.astype("float32"), mask, signal, labels


def _classifier(layer, embed: bool):
    """[embed frames with a Dense ->] layer -> Dense(2) from zero weights. Without the embedding
    every weight starts at zero, so the trajectory is the same on every backend."""
    features = keras.Input((None, DIM))
    mask = keras.Input((None,), dtype="bool")
    frames = keras.layers.Dense(DIM, name="embed")(features) if embed else features
    pooled, weights = layer([frames, mask])
    logits = keras.layers.Dense(2, kernel_initializer="zeros", name="classifier")(pooled)
    return keras.Model([features, mask], logits), keras.Model([features, mask], weights)


@pytest.mark.parametrize("case", ["mean", "max", "nan1", "nan2"])
def test_fit_reduces_loss(case, rng):
    """NAN learns from its mean-pooling start to attend to the signal frame; parameter-free
    pooling trains a per-frame embedding through the pooling."""
    x, mask, signal, labels = noisy_sets(rng)
    layer = make_layer(case)
    attention = case.startswith("nan")
    if attention:
        layer = AttentionAggregation(num_blocks=layer.num_blocks, return_attention=True)
    model, weights_model = _classifier(layer, embed=not attention)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert_fit_reduces_loss(model, [x, mask], labels, loss)
    if attention:  # attention learned to pick the signal frame out of the noise
        weights = weights_model.predict([x, mask], verbose=0)
        uniform = (1.0 / mask.sum(axis=1)).mean()  # about 0.25
        assert weights[np.arange(len(x)), signal].mean() > 2 * uniform


def test_nan_quality_features_and_max_logit(rng):
    """`quality_features`: scores `qᵀ f_k + vᵀ u_k` (NumPy, one block), bounded by `max_logit`
    (`c tanh(e / c)`); a missing quality input is a clear error."""
    x, _, mask = random_set(rng)
    u = rng.normal(size=(*x.shape[:2], 3)).astype("float32")
    layer = AttentionAggregation(1, return_attention=True, quality_features=True, max_logit=0.7)
    layer([x, u, mask])
    query, kernel = rng.normal(size=DIM), rng.normal(size=3)
    layer.set_weights([query, kernel])
    pooled, attention = (ops.convert_to_numpy(t) for t in layer([x, u, mask]))
    f = x.astype(np.float64)
    for b in range(len(x)):
        if not mask[b].any():
            np.testing.assert_array_equal(attention[b], 0.0)
            continue
        e = 0.7 * np.tanh((f[b] @ query + u[b] @ kernel) / 0.7)
        a = np.where(mask[b], np.exp(e - e[mask[b]].max()), 0.0)
        a /= a.sum()
        np.testing.assert_allclose(attention[b], a, atol=1e-6)
        np.testing.assert_allclose(pooled[b], a @ f[b], atol=1e-5)
    with pytest.raises(ValueError, match="expects inputs \\[features, quality\\]"):
        layer([x, mask, mask, mask])
    with pytest.raises(ValueError, match="max_logit"):
        AttentionAggregation(1, max_logit=-1.0)

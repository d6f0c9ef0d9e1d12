import keras
import numpy as np
import pytest

from keras_faceset.losses.dsa import DSALoss, allowed_negatives, dsa_loss, sample_negative_mask
from keras_faceset.losses.lsr import LSRLoss
from tests.checks import assert_fit_reduces_loss

NUM_IDS, NUM_SEQS, DIM = 4, 3, 6
NUM_CENTERS = NUM_IDS + NUM_SEQS


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _batch(rng, batch=20):
    labels = rng.integers(0, NUM_CENTERS, size=batch).astype("int32")
    embeddings = rng.normal(size=(batch, DIM)).astype("float32")
    centers = rng.normal(size=(NUM_CENTERS, DIM)).astype("float32")
    return labels, embeddings, centers


def _allowed_loop(labels):
    return np.array(
        [[j != y and (y < NUM_IDS or j < NUM_IDS) for j in range(NUM_CENTERS)] for y in labels]
    )


def _dsa_loop(labels, embeddings, centers, mask, lambda_=0.5, alpha=2.0, beta=1.0):
    def d(x, c):
        return np.sum((x / np.linalg.norm(x) - c / np.linalg.norm(c)) ** 2) / 4

    allowed = _allowed_loop(labels)
    total = []
    for i, (x, y) in enumerate(zip(embeddings, labels, strict=True)):
        d_pos = d(x, centers[y])
        hinges = [
            max(0.0, alpha * d_pos - d(x, centers[n]) + beta)
            for n in range(NUM_CENTERS)
            if mask[i, n] and allowed[i, n]
        ]
        total.append(lambda_ * d_pos + (1 - lambda_) * (np.mean(hinges) if hinges else 0.0))
    return np.mean(total)


def test_allowed_negatives_rule(rng):
    labels, _, _ = _batch(rng)
    got = _np(allowed_negatives(labels, NUM_CENTERS, NUM_IDS))
    np.testing.assert_array_equal(got, _allowed_loop(labels))


@pytest.mark.parametrize("params", [{}, {"lambda_": 0.2, "alpha": 1.5, "beta": 0.3}])
def test_dsa_loss_matches_loop_for_a_given_mask(rng, params):
    labels, embeddings, centers = _batch(rng)
    mask = (rng.random((len(labels), NUM_CENTERS)) < 0.5).astype("float32")
    mask[0] = 0.0  # a sample without negatives keeps only the positive term
    got = dsa_loss(
        labels[:, None], embeddings, centers, num_identities=NUM_IDS, negative_mask=mask, **params
    )
    np.testing.assert_allclose(
        _np(got), _dsa_loop(labels, embeddings, centers, mask, **params), rtol=1e-5, atol=1e-6
    )


def test_sampler_p1_all_allowed_p0_exactly_one(rng):
    labels, _, _ = _batch(rng)
    allowed = _allowed_loop(labels)
    full = _np(sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=1.0, seed=1))
    np.testing.assert_array_equal(full, allowed.astype("float32"))
    for seed in range(5):
        one = _np(sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=0.0, seed=seed))
        np.testing.assert_array_equal(one.sum(1), np.ones(len(labels)))
        assert np.all(allowed[one > 0])


def test_sampler_frequency_respects_rule_and_is_seeded():
    labels = np.arange(NUM_CENTERS).repeat(30).astype("int32")
    allowed = _allowed_loop(labels)
    generator = keras.random.SeedGenerator(3)
    draws = np.stack(
        [
            _np(sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=0.3, seed=generator))
            for _ in range(40)
        ]
    )
    assert np.all(draws[:, ~allowed] == 0)
    assert np.all(draws.sum(-1) >= 1)
    # A row with k allowed negatives keeps p*k of them on average, plus the one-negative
    # fallback with probability (1 - p)^k.
    k = allowed.sum(1)
    expected = 0.3 + 0.7**k / k
    rate = draws.sum(0).sum(1) / (len(draws) * k)
    assert abs(rate.mean() - expected.mean()) < 0.01, (rate.mean(), expected.mean())
    assert not np.array_equal(draws[0], draws[1])  # the generator advances
    first = sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=0.3, seed=7)
    again = sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=0.3, seed=7)
    np.testing.assert_array_equal(_np(first), _np(again))


def test_sampler_fallback_is_uniform_over_allowed():
    labels = np.zeros(2000, dtype="int32")  # identity 0: negatives are centers 1..6
    picks = _np(sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=0.0, seed=0)).argmax(1)
    counts = np.bincount(picks, minlength=NUM_CENTERS)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:] / len(labels), 1 / 6, atol=0.03)


def _gradients(embeddings, centers, labels):
    mask = np.ones((len(labels), NUM_CENTERS), "float32")

    def loss(x, c):
        return dsa_loss(labels, x, c, num_identities=NUM_IDS, negative_mask=mask)

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(embeddings, centers)
    import tensorflow as tf

    x, c = tf.Variable(embeddings), tf.Variable(centers)
    with tf.GradientTape() as tape:
        value = loss(x, c)
    return tape.gradient(value, [x, c])


def test_gradients_finite_at_the_center_and_at_zero(rng):
    labels, embeddings, centers = _batch(rng, batch=4)
    embeddings[0] = centers[labels[0]]  # d(x, c_y) = 0
    embeddings[1] = 0.0
    embeddings[2] = 1e-20
    for grad in _gradients(embeddings, centers, labels):
        assert np.all(np.isfinite(_np(grad)))
    value = dsa_loss(
        labels[:1], embeddings[:1], centers, num_identities=NUM_IDS, negative_mask=np.ones((1, 7))
    )
    assert np.isfinite(_np(value))


def _seqface_data(rng, n=112):
    """Identity samples (labels 0..3) and sequence samples (DSA labels 4..6, LSR label -1)."""
    dsa_labels = np.arange(NUM_CENTERS).repeat(n // NUM_CENTERS).astype("int32")
    means = rng.normal(scale=3.0, size=(NUM_CENTERS, 10))
    x = (means[dsa_labels] + rng.normal(size=(n, 10))).astype("float32")
    lsr_labels = np.where(dsa_labels < NUM_IDS, dsa_labels, -1).astype("int32")
    return x, dsa_labels, lsr_labels


def _dsa_model():
    x_in = keras.Input((10,))
    y_in = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(DIM)(x_in)
    embeddings = DSALoss(NUM_IDS, NUM_SEQS, p=0.5, seed=0, name="dsa")([embeddings, y_in])
    logits = keras.layers.Dense(NUM_IDS)(embeddings)
    return keras.Model([x_in, y_in], logits)


def test_seqface_model_trains(rng):
    x, dsa_labels, lsr_labels = _seqface_data(rng)
    model = _dsa_model()
    centers_before = _np(model.get_layer("dsa").centers).copy()
    assert_fit_reduces_loss(model, [x, dsa_labels], lsr_labels, LSRLoss(), jit_compile=True)
    centers = _np(model.get_layer("dsa").centers)
    assert not np.allclose(centers, centers_before)  # the agents are learnt


def test_layer_adds_weighted_loss(rng):
    labels, embeddings, centers = _batch(rng)
    layer = DSALoss(NUM_IDS, NUM_SEQS, p=1.0, weight=0.5, lambda_=0.3, seed=2)
    layer.build([embeddings.shape, labels.shape])
    layer.centers.assign(centers)
    layer([embeddings, labels])
    mask = _allowed_loop(labels)  # p = 1: every allowed negative
    np.testing.assert_allclose(
        _np(layer.losses[0]),
        0.5 * _dsa_loop(labels, embeddings, centers, mask, lambda_=0.3),
        rtol=1e-5,
    )


def test_bad_arguments_raise(rng):
    labels, embeddings, _ = _batch(rng)
    with pytest.raises(ValueError, match="num_identities"):
        DSALoss(0)
    with pytest.raises(ValueError, match="p must be"):
        DSALoss(NUM_IDS, p=1.5)
    with pytest.raises(ValueError, match="p must be"):
        sample_negative_mask(labels, NUM_CENTERS, NUM_IDS, p=-0.1)
    with pytest.raises(ValueError, match="integer"):
        DSALoss(NUM_IDS, NUM_SEQS)([embeddings, labels.astype("float32")])
    with pytest.raises(ValueError, match="rank 2"):
        DSALoss(NUM_IDS, NUM_SEQS)([embeddings[None], labels])

import keras
import numpy as np
import pytest

from keras_faceset.losses.lsr import LSRLoss, lsr_loss
from tests.checks import assert_fit_reduces_loss

NUM_CLASSES = 5


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _batch(rng, batch=16):
    labels = rng.integers(-1, NUM_CLASSES, size=batch).astype("int32")  # -1: unlabeled
    logits = (3 * rng.normal(size=(batch, NUM_CLASSES))).astype("float32")
    return labels, logits


def _lsr_loop(labels, logits):
    out = []
    for y, z in zip(labels, logits, strict=True):
        log_p = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
        out.append(-log_p[y] if y >= 0 else -np.mean(log_p))
    return np.array(out)


def test_matches_loop(rng):
    labels, logits = _batch(rng)
    assert (labels == -1).any() and (labels >= 0).any()
    expected = _lsr_loop(labels, logits)
    np.testing.assert_allclose(_np(lsr_loss(labels, logits)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(LSRLoss()(labels[:, None], logits)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("from_logits", [True, False])
def test_fully_labeled_is_sparse_cross_entropy(rng, from_logits):
    labels, logits = _batch(rng)
    labels = np.abs(labels)
    y_pred = logits if from_logits else _np(keras.ops.softmax(logits))
    expected = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=from_logits)
    got = lsr_loss(labels, y_pred, from_logits=from_logits)
    np.testing.assert_allclose(_np(got), _np(expected), rtol=1e-5, atol=1e-6)


def test_unlabeled_target_is_uniform(rng):
    _, logits = _batch(rng, batch=4)
    labels = np.full(4, -1, dtype="int32")
    log_softmax = _np(keras.ops.log_softmax(logits, axis=-1))
    np.testing.assert_allclose(
        _np(lsr_loss(labels, logits)), -log_softmax.mean(-1), rtol=1e-5, atol=1e-6
    )
    # Equal logits already match the uniform target: the loss is the entropy log C.
    flat = lsr_loss(labels, np.zeros((4, NUM_CLASSES), "float32"))
    np.testing.assert_allclose(_np(flat), np.log(NUM_CLASSES), rtol=1e-6)


def test_probabilities_with_sum_reduction(rng):
    labels, logits = _batch(rng)
    loss = LSRLoss(from_logits=False, reduction="sum")
    probs = _np(keras.ops.softmax(logits))
    np.testing.assert_allclose(_np(loss(labels, probs)), _lsr_loop(labels, logits).sum(), rtol=1e-5)


def test_tiny_softmax_model_trains(rng):
    labels = np.arange(NUM_CLASSES).repeat(20)
    means = rng.normal(scale=2.0, size=(NUM_CLASSES, 8))
    x = (means[labels] + rng.normal(size=(len(labels), 8))).astype("float32")
    targets = np.where(rng.random(len(labels)) < 0.3, -1, labels).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(NUM_CLASSES)])
    assert_fit_reduces_loss(model, x, targets, LSRLoss())


def test_bad_labels_raise(rng):
    labels, logits = _batch(rng)
    with pytest.raises(ValueError, match="integer"):
        LSRLoss()(labels.astype("float32"), logits)
    with pytest.raises(ValueError, match="shape"):
        lsr_loss(labels.reshape(4, 4), logits)
    with pytest.raises(ValueError, match="logits"):
        lsr_loss(labels, logits[None])

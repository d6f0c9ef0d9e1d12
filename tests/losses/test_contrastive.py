"""Contrastive loss against NumPy, edge cases and Keras use (stacked pairs and batch pairs)."""

import keras
import numpy as np
import pytest

from keras_faceset.losses import (
    ContrastiveLoss,
    contrastive_loss,
    identity_adjacency,
    pairwise_distance,
)
from keras_faceset.losses.distances import DISTANCES
from tests.checks import assert_fit_reduces_loss, value_and_gradients
from tests.losses.test_distances import numpy_distance, numpy_pairwise


def reference_contrastive(y_same, d, margin):
    return y_same * d**2 + (1 - y_same) * np.maximum(margin - d, 0.0) ** 2


def reference_batch(labels, x, margin, distance):
    """Mean over the ordered pairs i != j of the batch."""
    d = numpy_pairwise(x, distance)
    terms = [
        reference_contrastive(float(labels[i] == labels[j]), d[i, j], margin)
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j
    ]
    return float(np.mean(terms))


def random_pairs(seed, size=10, dim=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=size), rng.normal(size=(size, 2, dim)).astype("float32")


def numpy_value(tensor):
    return keras.ops.convert_to_numpy(tensor)


def test_function_on_precomputed_distances(rng):
    y_same = rng.integers(0, 2, size=20)
    d = rng.uniform(0, 2, size=20).astype("float32")
    np.testing.assert_allclose(
        numpy_value(contrastive_loss(y_same, d, margin=1.2)),
        reference_contrastive(y_same, np.float64(d), 1.2),
        atol=1e-6,
    )


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stacked_pairs_match_numpy(distance, seed):
    y_same, pairs = random_pairs(seed)
    d = numpy_distance(pairs[:, 0], pairs[:, 1], distance)
    expected = reference_contrastive(y_same, d, 2.0)
    loss = ContrastiveLoss(margin=2.0, distance=distance)
    np.testing.assert_allclose(numpy_value(loss(y_same, pairs)), expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(numpy_value(loss(y_same[:, None], pairs)), expected.mean(), 1e-5)
    per_pair = ContrastiveLoss(margin=2.0, distance=distance, reduction=None)(y_same, pairs)
    np.testing.assert_allclose(numpy_value(per_pair), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_pairs_match_numpy(distance, seed):
    rng = np.random.default_rng(seed)
    labels, x = rng.integers(0, 3, size=9), rng.normal(size=(9, 4)).astype("float32")
    expected = reference_batch(labels, x, 1.5, distance)
    loss = ContrastiveLoss(margin=1.5, distance=distance, pairs="batch")
    np.testing.assert_allclose(numpy_value(loss(labels, x)), expected, rtol=1e-5)
    matrix = contrastive_loss(
        identity_adjacency(labels), pairwise_distance(x, distance), margin=1.5
    )
    np.testing.assert_allclose(numpy_value(keras.ops.sum(matrix)) / 72, expected, rtol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradient_matches_finite_differences(distance):
    y_same, pairs = random_pairs(3, size=6, dim=3)
    loss = ContrastiveLoss(margin=2.0, distance=distance)
    _, (grad,) = value_and_gradients(lambda e: loss(y_same, e), pairs)

    def reference(p):
        d = numpy_distance(p[:, 0], p[:, 1], distance)
        return reference_contrastive(y_same, d, 2.0).mean()

    p64, eps = np.float64(pairs), 1e-6
    expected = np.zeros_like(p64)
    for index in np.ndindex(pairs.shape):
        step = np.zeros_like(p64)
        step[index] = eps
        expected[index] = (reference(p64 + step) - reference(p64 - step)) / (2 * eps)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(grad, expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("pairs", ["stacked", "batch"])
@pytest.mark.parametrize("distance", DISTANCES)
def test_duplicate_embeddings_give_finite_gradients(pairs, distance):
    point = np.array([0.5, -1.0, 2.0], "float32")
    if pairs == "stacked":
        y, x = np.array([1, 0]), np.stack([np.stack([point, point])] * 2)
    else:
        y, x = np.array([0, 0, 1]), np.stack([point, point, point])
    loss = ContrastiveLoss(distance=distance, pairs=pairs)
    value, (grad,) = value_and_gradients(lambda e: loss(y, e), x)
    assert np.isfinite(value) and value > 0  # the different-identity pair is inside the margin
    assert np.all(np.isfinite(grad))


def test_bad_inputs_raise():
    y_same, pairs = random_pairs(0)
    with pytest.raises(ValueError, match=r"y_pred must have shape \(B, 2, D\)"):
        ContrastiveLoss()(y_same, pairs[:, 0])
    with pytest.raises(ValueError, match="pair labels y_same must have shape"):
        ContrastiveLoss()(np.zeros((10, 2)), pairs)
    with pytest.raises(ValueError, match="labels must have an integer dtype"):
        ContrastiveLoss(pairs="batch")(y_same.astype("float32"), pairs[:, 0])
    with pytest.raises(ValueError, match="Unknown pairs 'triplets'"):
        ContrastiveLoss(pairs="triplets")
    with pytest.raises(ValueError, match="Unknown distance"):
        ContrastiveLoss(distance="l1")
    with pytest.raises(ValueError, match="Unknown mining_batch 'local'"):
        ContrastiveLoss(pairs="batch", mining_batch="local")
    with pytest.raises(ValueError, match="mining_batch='global' needs pairs='batch'"):
        ContrastiveLoss(mining_batch="global")


def test_global_batch_pairs_are_replica_pairs_on_one_device(rng):
    """On one device the gathered batch is the batch (the two-replica case: tests/distribute)."""
    labels, x = rng.integers(0, 3, size=9), rng.normal(size=(9, 4)).astype("float32")
    loss = ContrastiveLoss(margin=1.5, pairs="batch", mining_batch="global", reduction=None)
    np.testing.assert_array_equal(
        numpy_value(loss(labels, x)),
        numpy_value(ContrastiveLoss(margin=1.5, pairs="batch", reduction=None)(labels, x)),
    )
    restored = ContrastiveLoss.from_config(loss.get_config())
    assert (restored.pairs, restored.mining_batch) == ("batch", "global")


def siamese_data(pairs=32, dim=8, classes=4, seed=0):
    """Pairs of Gaussian-blob points, (B, 2, dim), half same-class, half different-class."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 1.5
    first = rng.integers(0, classes, size=pairs)
    same = np.arange(pairs) % 2
    second = np.where(same == 1, first, (first + rng.integers(1, classes, size=pairs)) % classes)
    points = centers[np.stack([first, second], axis=1)] + rng.normal(size=(pairs, 2, dim))
    return points.astype("float32"), same


def siamese_model(dim=8, embedding=4):
    # Dense acts on the last axis, so one tower embeds both members of each (B, 2, dim) pair.
    return keras.Sequential([keras.Input((2, dim)), keras.layers.Dense(embedding)])


def test_fit_reduces_loss():
    x, same = siamese_data()
    assert_fit_reduces_loss(siamese_model(), x, same, ContrastiveLoss(margin=2.0), epochs=15)

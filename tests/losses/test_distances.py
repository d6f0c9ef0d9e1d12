"""Pairwise / paired distances against NumPy, and gradient safety at d = 0."""

import keras
import numpy as np
import pytest

from keras_faceset.losses.distances import (
    DISTANCES,
    l2_normalize,
    paired_distance,
    pairwise_distance,
)
from tests.checks import value_and_gradients


def numpy_distance(x, y, distance):
    """Distance between the rows of `x` and `y` (broadcasting), in float64."""
    x, y = np.float64(x), np.float64(y)
    if distance == "cosine":
        cos = np.sum(x * y, -1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
        return 1.0 - cos
    squared = np.sum((x - y) ** 2, axis=-1)
    return np.sqrt(squared) if distance == "l2" else squared


def numpy_pairwise(x, distance):
    matrix = numpy_distance(x[:, None, :], x[None, :, :], distance)
    np.fill_diagonal(matrix, 0.0)
    return matrix


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_matches_numpy(distance, seed):
    x = np.random.default_rng(seed).normal(size=(9, 5)).astype("float32")
    got = keras.ops.convert_to_numpy(pairwise_distance(x, distance))
    np.testing.assert_allclose(got, numpy_pairwise(x, distance), atol=1e-5, rtol=1e-5)
    assert np.all(np.diag(got) == 0)


@pytest.mark.parametrize("distance", DISTANCES)
def test_paired_matches_numpy(distance, rng):
    x, y = rng.normal(size=(2, 7, 4)).astype("float32")
    got = keras.ops.convert_to_numpy(paired_distance(x, y, distance))
    np.testing.assert_allclose(got, numpy_distance(x, y, distance), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradients_finite_at_zero_distance(distance):
    # Rows 0 and 1 are duplicates, row 2 is the zero vector.
    x = np.array([[0.3, -1.0, 2.0], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0]], "float32")
    _, (grad,) = value_and_gradients(lambda e: keras.ops.sum(pairwise_distance(e, distance)), x)
    assert np.all(np.isfinite(grad))
    _, (grad,) = value_and_gradients(
        lambda e: keras.ops.sum(paired_distance(e, e[::-1] * 0 + e[0], distance)), x
    )
    assert np.all(np.isfinite(grad))


def test_l2_gradient_is_zero_at_duplicates_and_exact_elsewhere():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]], "float32")
    _, (grad,) = value_and_gradients(lambda e: pairwise_distance(e, "l2")[0, 1], x)
    np.testing.assert_array_equal(grad, 0)
    _, (grad,) = value_and_gradients(lambda e: pairwise_distance(e, "l2")[0, 2], x)
    np.testing.assert_allclose(grad, [[-0.6, -0.8], [0, 0], [0.6, 0.8]], atol=1e-6)


def test_l2_normalize_matches_numpy_and_keeps_zero(rng):
    x = rng.normal(size=(3, 4)).astype("float32")
    x[1] = 0
    got = keras.ops.convert_to_numpy(l2_normalize(x))
    expected = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_unknown_distance_lists_valid_names():
    with pytest.raises(ValueError, match="squared_l2.*l2.*cosine"):
        pairwise_distance(np.zeros((2, 3), "float32"), "manhattan")
    with pytest.raises(ValueError, match="Unknown distance"):
        paired_distance(np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32"), "l1")


def test_embeddings_rank_is_checked():
    with pytest.raises(ValueError, match=r"embeddings must have shape \(B, D\)"):
        pairwise_distance(np.zeros((2, 3, 4), "float32"))

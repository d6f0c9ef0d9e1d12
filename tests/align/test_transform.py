import numpy as np
import pytest

from keras_faceset.align import apply_affine, invert_affine, umeyama, warp_affine


def similarity(angle, scale, tx, ty):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


ANGLES = np.linspace(-np.pi, np.pi, 7201)


def brute_force_error(src, dst, weights):
    """min over rotations (grid) of the weighted squared error with optimal scale/translation."""
    w = weights / weights.sum()
    src_c, dst_c = src - w @ src, dst - w @ dst
    best = np.inf
    for angle in ANGLES:
        rotated = src_c @ similarity(angle, 1, 0, 0)[:, :2].T
        scale = np.sum(w[:, None] * rotated * dst_c) / np.sum(w[:, None] * rotated**2)
        best = min(best, np.sum(w * np.sum((dst_c - scale * rotated) ** 2, axis=1)))
    return best


def weighted_error(matrix, src, dst, weights):
    w = weights / weights.sum()
    return np.sum(w * np.sum((apply_affine(matrix, src) - dst) ** 2, axis=1))


@pytest.mark.parametrize("angle", [0.0, 0.3, -2.5, np.pi])
def test_umeyama_recovers_a_known_similarity(rng, angle):
    src = rng.normal(size=(5, 2)) * 30
    expected = similarity(angle, 1.7, 12.0, -40.0)
    np.testing.assert_allclose(umeyama(src, apply_affine(expected, src)), expected, atol=1e-9)


def test_umeyama_weights_ignore_a_zero_weight_outlier(rng):
    src = rng.normal(size=(5, 2)) * 30
    expected = similarity(0.4, 0.8, 3.0, 5.0)
    dst = apply_affine(expected, src)
    dst[4] += [50.0, -80.0]
    np.testing.assert_allclose(umeyama(src, dst, [1, 2, 3, 1, 0]), expected, atol=1e-9)


@pytest.mark.parametrize("weights", [np.ones(5), np.array([3.0, 3.0, 1.0, 0.5, 0.0])])
def test_umeyama_is_the_least_squares_optimum_and_never_reflects(rng, weights):
    src = rng.normal(size=(5, 2)) * 30
    mirrored = src * [-1.0, 1.0] + rng.normal(size=(5, 2))  # best fit would be a reflection
    matrix = umeyama(src, mirrored, weights)
    assert np.linalg.det(matrix[:, :2]) > 0
    optimum = brute_force_error(src, mirrored, weights)
    assert weighted_error(matrix, src, mirrored, weights) <= optimum * (1 + 1e-6) + 1e-9
    assert weighted_error(matrix, src, mirrored, weights) >= optimum * (1 - 1e-3)


def test_umeyama_rejects_bad_input():
    points = np.zeros((5, 2))
    with pytest.raises(ValueError, match="coincide"):
        umeyama(points, points)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        umeyama(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="weights"):
        umeyama(np.eye(2), np.eye(2), [1.0, -1.0])
    with pytest.raises(ValueError, match="finite"):
        umeyama(np.array([[0.0, 0.0], [np.nan, 1.0]]), np.eye(2))


def test_invert_affine_round_trip(rng):
    matrix = similarity(0.7, 2.5, -3.0, 9.0)
    points = rng.normal(size=(6, 2))
    np.testing.assert_allclose(
        apply_affine(invert_affine(matrix), apply_affine(matrix, points)), points
    )


def test_warp_affine_translation_is_a_slice_and_black_outside(rng):
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    chip = warp_affine(image, similarity(0, 1, -7, -5), 20)  # chip(x, y) = image(x + 7, y + 5)
    np.testing.assert_array_equal(chip, image[5:25, 7:27])
    outside = warp_affine(image, similarity(0, 1, 45, 0), 20)
    np.testing.assert_array_equal(outside[:, 5:], 0)


def test_warp_affine_moves_a_point_where_the_matrix_sends_it():
    image = np.zeros((100, 100, 3), np.uint8)
    image[30, 60] = 255
    matrix = similarity(0.5, 0.5, 10.0, 20.0)
    chip = warp_affine(image.astype(np.float32), matrix, 80)[..., 0]
    y, x = np.unravel_index(np.argmax(chip), chip.shape)
    np.testing.assert_allclose([x, y], apply_affine(matrix, [[60, 30]])[0], atol=0.5)

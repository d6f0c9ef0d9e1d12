"""zoo/damage_subspace.py pieces: the damage of degraded frames, its principal directions and
the projection, against loops and a planted shared shift."""

import numpy as np

from tests.zoo.test_set_head_training import load_script

script = load_script("damage_subspace")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_damage_is_each_used_degraded_frame_minus_its_clean_image():
    rng = np.random.default_rng(0)
    clean_embeddings = rng.normal(size=(4, 8))
    clean = {
        "embedding": clean_embeddings,
        "severity": np.zeros(4),
        "path": np.array(["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"]),
    }
    frames = rng.normal(size=(6, 8))
    variant = {
        "embedding": frames,
        "severity": np.array([0.0, 0.5, 0.9, 0.0, 0.3, 0.7]),
        "path": np.array(["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg", "a/1.jpg", "b/2.jpg"]),
        "rows_a": [np.array([0, 1]), np.array([3])],
        "rows_b": [np.array([2]), np.array([4])],  # frame 5 (degraded) is in no pair
    }
    unit_frames, delta = script.damage(variant, clean)
    np.testing.assert_allclose(unit_frames, unit(frames), rtol=1e-6)
    image = {"a/1.jpg": 0, "a/2.jpg": 1, "b/1.jpg": 2, "b/2.jpg": 3}
    expected = [
        unit(frames[k]) - unit(clean_embeddings[image[variant["path"][k]]]) for k in (1, 2, 4)
    ]
    np.testing.assert_allclose(delta, np.stack(expected), rtol=1e-6, atol=1e-12)


def test_directions_find_a_planted_shared_shift_and_their_energy_adds_up():
    rng = np.random.default_rng(1)
    shift = unit(rng.normal(size=16))
    delta = 0.05 * rng.normal(size=(500, 16)) + 0.5 * shift
    rows, energy = script.directions(delta)
    assert abs(rows[0] @ shift) > 0.999
    for k in (1, 3, 16):
        inside = np.sum((delta @ rows[:k].T) ** 2) / np.sum(delta**2)
        np.testing.assert_allclose(energy[k - 1], inside, rtol=1e-9)
    np.testing.assert_allclose(energy[-1], 1.0)


def test_without_removes_the_span_and_keeps_unit_length():
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(12, 3)))[0].T  # 3 orthonormal rows
    vectors = rng.normal(size=(20, 12))
    out = script.without(vectors, basis)
    np.testing.assert_allclose(out @ basis.T, 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out, unit(vectors - (vectors @ basis.T) @ basis), rtol=1e-5)
    np.testing.assert_allclose(script.without(vectors, basis[:0]), unit(vectors), rtol=1e-5)

import numpy as np
import pytest

from keras_faceset.vectors import clean_centre_residuals


def test_clean_centre_residuals_match_a_loop_over_frames():
    """Against a brute-force loop: the centre sums the unit clean embeddings of the person's
    other images, whatever order the people come in."""
    rng = np.random.default_rng(3)
    people = np.array(["b", "a", "b", "a", "a", "c", "c"])
    clean = rng.normal(size=(7, 5))
    frame_images = rng.integers(0, 7, size=12)
    frames = rng.normal(size=(12, 5))
    out = clean_centre_residuals(frames, frame_images, clean, people)
    unit = clean / np.linalg.norm(clean, axis=1, keepdims=True)
    for k, image in enumerate(frame_images):
        centre = sum(unit[i] for i in range(7) if people[i] == people[image] and i != image)
        expected = 1 - frames[k] @ centre / np.linalg.norm(frames[k]) / np.linalg.norm(centre)
        assert out[k] == pytest.approx(expected, abs=1e-12)


def test_clean_centre_residuals_need_another_image_of_the_person():
    clean = np.eye(3)
    with pytest.raises(ValueError, match="another image"):
        clean_centre_residuals(np.ones((2, 3)), [0, 2], clean, ["a", "a", "b"])

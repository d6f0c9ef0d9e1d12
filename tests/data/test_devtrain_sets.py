"""keras_faceset.data.devtrain_sets: the draws are those the shipped set heads were trained with
(reference digests computed with the code that trained them)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from keras_faceset.data import devtrain_sets as D
from keras_faceset.data.degrade import KINDS
from keras_faceset.eval.protocol_cache import frames_digest
from tests.data.mini_devtrain import PEOPLE, mini_devtrain


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


FRAME_INDEX = np.arange(30).reshape(10, 3)  # 10 images x (clean, 2 degraded)
PEOPLE_IMAGES = [np.arange(0, 5), np.arange(5, 10)]
IMAGES = pd.DataFrame(
    {
        "path": [f"P{i // 3}/P{i // 3}_{i % 3 + 1:04d}.jpg" for i in range(12)],
        "identity": [f"P{i // 3}" for i in range(12)],
    }
)


def test_sample_sets_reproduces_the_training_draws():
    default = D.sample_sets(FRAME_INDEX, PEOPLE_IMAGES, 2, 3, np.random.default_rng(0))
    assert digest(*default) == "97410c7f4935a1c1"
    some_clean = D.sample_sets(FRAME_INDEX, PEOPLE_IMAGES, 2, 3, np.random.default_rng(1), 0.5)
    assert digest(*some_clean) == "6462b9d862a2481f"


def test_clean_sets_hold_only_clean_frames_and_default_stream_is_unchanged():
    index, mask, labels = D.sample_sets(
        FRAME_INDEX, PEOPLE_IMAGES, 2, 20, np.random.default_rng(0), clean_sets=1.0
    )
    assert index.shape == mask.shape == (80, D.MAX_FRAMES) and labels.shape == (80,)
    assert np.all(index[mask] % 3 == 0)  # version 0 rows only
    assert np.all(mask.sum(1) >= 1) and set(labels) == {0, 1}
    default = D.sample_sets(FRAME_INDEX, PEOPLE_IMAGES, 2, 5, np.random.default_rng(1))
    explicit = D.sample_sets(FRAME_INDEX, PEOPLE_IMAGES, 2, 5, np.random.default_rng(1), 0.0)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.any(default[0][default[1]] % 3 != 0)  # degraded frames drawn by default


def test_two_sets_of_a_pair_come_from_disjoint_images_of_one_person():
    index, mask, labels = D.sample_sets(FRAME_INDEX, PEOPLE_IMAGES, 2, 10, np.random.default_rng(2))
    image_of = np.repeat(np.arange(10), 3)
    for a in range(0, len(index), 2):
        images_a, images_b = (set(image_of[index[r][mask[r]]]) for r in (a, a + 1))
        assert labels[a] == labels[a + 1]
        assert not images_a & images_b
        assert images_a | images_b <= set(PEOPLE_IMAGES[labels[a]])


def test_training_frames_are_seeded_and_indexed_by_image_and_version():
    frames = D.training_frames(IMAGES, 2)
    assert frames_digest(frames) == "4c7f08526fd7"
    assert list(frames.columns) == D.FRAME_COLUMNS and len(frames) == 36
    clean = frames[frames.version == 0]
    assert (clean.severity == 0).all() and (clean.kind_id == 0).all()
    degraded = frames[frames.version > 0]
    assert degraded.severity.between(*D.SEVERITY).all()
    assert degraded.kind_id.between(0, len(KINDS) - 1).all()
    index = D.frame_index(frames)
    np.testing.assert_array_equal(index, np.arange(36).reshape(12, 3))
    np.testing.assert_array_equal(frames.image.to_numpy()[index[:, 1]], np.arange(12))


def test_frame_index_needs_every_version_of_every_image():
    frames = D.training_frames(IMAGES, 2).drop(index=4)
    with pytest.raises(ValueError, match="every version of every image"):
        D.frame_index(frames)


def test_training_people_keep_80_percent_in_a_seeded_order():
    identities = pd.DataFrame({"identity": [f"P{i:02d}" for i in range(20)]})
    train = D.training_people(identities)
    assert sorted(train) == [
        f"P{i:02d}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 16, 17, 19)
    ]
    assert D.training_people(identities, seed=1) != train


def test_select_images_takes_people_with_two_images_at_most_six_each(tmp_path):
    lfw = mini_devtrain(tmp_path)
    images = D.select_images(lfw, 60)
    assert frames_digest(images) == "5e81155c8e65"
    assert len(images) == 65 and images.identity.nunique() == 12  # stops past 60
    counts = dict(PEOPLE)
    sizes = images.identity.value_counts()
    assert all(counts[name] >= 2 and size == min(counts[name], 6) for name, size in sizes.items())
    assert all(
        path.startswith(f"{name}/") for path, name in zip(images.path, images.identity, strict=True)
    )


def test_frame_residuals_match_a_loop_over_frames(rng):
    """Against a brute-force loop: the centre is the person's other images' clean frames."""
    images = pd.DataFrame({"path": [f"p{i}" for i in range(7)], "identity": list("aaabbcc")})
    frames = D.training_frames(images, versions=2)
    embeddings = rng.normal(size=(len(frames), 5))
    out = D.frame_residuals(embeddings, frames, images)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    for k, row in frames.iterrows():
        person = images.identity[row.image]
        others = [
            unit[j]
            for j, other in frames.iterrows()
            if other.version == 0
            and other.image != row.image
            and images.identity[other.image] == person
        ]
        centre = np.sum(others, axis=0)
        assert out[k] == pytest.approx(1 - unit[k] @ centre / np.linalg.norm(centre), abs=1e-12)
    lone = pd.DataFrame({"path": ["x", "y"], "identity": ["a", "b"]})
    with pytest.raises(ValueError, match="another image"):
        D.frame_residuals(rng.normal(size=(4, 5)), D.training_frames(lone, versions=1), lone)

"""Verification pairs of a labelled folder, against brute force."""

import itertools

import numpy as np
import pytest
from PIL import Image

from keras_faceset.eval.folder import folder_items, folder_pairs

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])


def brute_force_pairs(labels):
    return {
        (a, b): bool(labels[a] == labels[b])
        for a, b in itertools.combinations(range(len(labels)), 2)
    }


def test_all_pairs_are_every_genuine_and_impostor_pair_once():
    pairs = folder_pairs(LABELS)
    got = {(a, b): same for a, b, same in pairs[["a", "b", "same"]].itertuples(index=False)}
    assert got == brute_force_pairs(LABELS) and len(pairs) == 45
    assert pairs["same"].sum() == 3 + 1 + 6  # C(3,2) + C(2,2) + C(4,2)
    for _, fold in pairs.groupby("fold"):  # classes dealt round-robin: balanced folds
        assert fold["same"].sum() == 1 and len(fold) in (4, 5)


def test_sampled_pairs_are_seeded_distinct_and_capped_per_class():
    first, again = folder_pairs(LABELS, max_pairs=5, seed=3), folder_pairs(LABELS, 5, seed=3)
    assert first.equals(again) and not first.equals(folder_pairs(LABELS, 5, seed=4))
    assert (first["same"].sum(), (~first["same"]).sum()) == (5, 5)
    assert not first.duplicated(["a", "b"]).any()
    truth = brute_force_pairs(LABELS)
    assert all(truth[(a, b)] == s for a, b, s in first[["a", "b", "same"]].to_numpy())


@pytest.mark.parametrize(
    "labels, match", [([0, 1, 2], "one identity with two items"), ([0, 0, 0], "two identities")]
)
def test_a_folder_without_both_classes_is_refused(labels, match):
    with pytest.raises(ValueError, match=match):
        folder_pairs(labels)


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def test_folder_items_reads_images_or_sets(tmp_path):
    for name in ("ann/1.png", "ann/2.png", "bob/1.png"):
        _image(tmp_path / "images" / name)
    items = folder_items(tmp_path / "images")
    assert items["item"].tolist() == ["ann/1.png", "ann/2.png", "bob/1.png"]
    assert items["label"].tolist() == [0, 0, 1] and all(len(f) == 1 for f in items["frames"])
    for name in ("ann/s1/1.png", "ann/s1/2.png", "ann/s2/1.png", "bob/s1/1.png"):
        _image(tmp_path / "sets" / name)
    sets = folder_items(tmp_path / "sets")
    assert sets["item"].tolist() == ["ann/s1", "ann/s2", "bob/s1"]
    assert [len(f) for f in sets["frames"]] == [2, 1, 1]
    _image(tmp_path / "sets" / "bob" / "loose.png")
    with pytest.raises(ValueError, match="directly in an identity folder"):
        folder_items(tmp_path / "sets")
    with pytest.raises(ValueError, match="not found"):
        folder_items(tmp_path / "nowhere")

"""Verification pairs of a labelled folder, against brute force."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_faceset.eval.folder import evaluate_folder, folder_items, folder_pairs
from keras_faceset.eval.verification import tar_at_far

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


class TableEmbedder:
    """An embedder stand-in: an image's embedding is a fixed vector looked up by
    ``identity/file``; a set's is the normalised mean of its frames'."""

    __name__ = "table"

    def __init__(self, vectors: dict):
        self.vectors = vectors

    def embed_sets(self, sets):
        key = lambda frame: "/".join(Path(frame).parts[-2:])  # noqa: E731
        means = np.array([np.mean([self.vectors[key(f)] for f in s], axis=0) for s in sets])
        return means / np.linalg.norm(means, axis=1, keepdims=True), [np.ones(1)] * len(sets)


def test_evaluate_folder_reports_tar_only_at_measurable_fars(tmp_path, rng):
    """12 identities x 2 images: 12 genuine and 264 impostor pairs measure FAR 1e-1 and 1e-2,
    not 1e-3 (NaN there)."""
    vectors = {}
    for person in range(12):
        centre = rng.normal(size=8)
        for shot in range(2):
            _image(tmp_path / f"p{person:02d}" / f"{shot}.png")
            vectors[f"p{person:02d}/{shot}.png"] = centre + 0.8 * rng.normal(size=8)
    summary, scores = evaluate_folder(TableEmbedder(vectors), tmp_path)
    row = summary.iloc[0]
    assert (row["genuine"], row["impostor"], row["pairs"]) == (12, 264, 276)
    score, same = scores["score"].to_numpy(), scores["same"].to_numpy()
    for far in (0.1, 0.01):
        assert row[f"tar@far={far:g}"] == tar_at_far(score, same, far)
    assert 0 < row["tar@far=0.01"] < 1 and np.isnan(row["tar@far=0.001"])

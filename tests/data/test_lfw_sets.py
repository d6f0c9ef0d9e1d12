import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_faceset.data import degrade
from keras_faceset.data import lfw_sets as L
from keras_faceset.data.lfw import LFW
from keras_faceset.eval.sets import lfw_sets_protocol_dir
from tests.conftest import LFW_DIR, require

MINI = {"num_folds": 3, "pairs_per_fold": 10}
# 24 DevTest people with 2..14 images (3 too few), DevTrain disjoint except "Shared_Name"
TEST_PEOPLE = [(f"Test_{i:02d}", 2 + (5 * i) % 13) for i in range(23)] + [("Shared_Name", 9)]
TRAIN_PEOPLE = [("Train_A", 8), ("Train_B", 5), ("Shared_Name", 9)]


def people_file(people) -> str:
    return f"{len(people)}\n" + "".join(f"{name}\t{count}\n" for name, count in people)


@pytest.fixture
def mini_lfw(tmp_path) -> LFW:
    """People files, and 48x48 JPEGs for the first two DevTest people."""
    (tmp_path / "peopleDevTest.txt").write_text(people_file(TEST_PEOPLE))
    (tmp_path / "peopleDevTrain.txt").write_text(people_file(TRAIN_PEOPLE))
    lfw = LFW(tmp_path)
    rng = np.random.default_rng(0)
    for name, count in TEST_PEOPLE[:2]:
        for number in range(1, count + 1):
            path = Path(lfw.image_path(name, number))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).save(path)
    return lfw


def check_protocol(frame: pd.DataFrame, lfw: LFW, num_folds: int, pairs_per_fold: int) -> None:
    """Counts, balance, set sizes, disjointness, fold separation and eligibility."""
    people = lfw.people("dev_test").set_index("name")["count"]
    train = set(lfw.people("dev_train")["name"])
    counts = frame.groupby(["fold", "same"]).size()
    assert (counts == pairs_per_fold).all() and len(counts) == 2 * num_folds
    fold_of = {}
    for row in frame.itertuples():
        assert (row.name_a == row.name_b) == row.same
        assert len(row.set_a) == len(row.set_b)
        assert 2 <= len(row.set_a) <= 6
        assert len(set(row.set_a)) == len(row.set_a) and len(set(row.set_b)) == len(row.set_b)
        if row.same:
            assert not set(row.set_a) & set(row.set_b)
        for name, paths in ((row.name_a, row.set_a), (row.name_b, row.set_b)):
            assert name not in train and people[name] >= 4
            assert fold_of.setdefault(name, row.fold) == row.fold  # a person is in one fold
            for path in paths:
                assert path.startswith(f"{name}/{name}_") and path.endswith(".jpg")
                assert 1 <= int(path[-8:-4]) <= people[name]
        assert len(row.degrade_a) == len(row.set_a) and len(row.degrade_b) == len(row.set_b)
    # impostor set sizes copy the genuine ones, fold by fold
    sizes = frame.assign(k=frame["set_a"].map(len)).groupby(["fold", "same"])["k"]
    for fold in range(num_folds):
        assert sorted(sizes.get_group((fold, True))) == sorted(sizes.get_group((fold, False)))


def test_mini_protocol_counts_and_disjointness(mini_lfw):
    frame = L.make_lfw_sets(mini_lfw, seed=0, **MINI)
    check_protocol(frame, mini_lfw, 3, 10)
    eligible = {name for name, count in TEST_PEOPLE if count >= 4 and name != "Shared_Name"}
    assert set(frame["name_a"]) | set(frame["name_b"]) == eligible  # everyone is used
    assert all(spec is None for specs in frame["degrade_a"] for spec in specs)
    genuine = frame[frame["same"]]
    keys = {(r.name_a, frozenset([tuple(r.set_a), tuple(r.set_b)])) for r in genuine.itertuples()}
    assert len(keys) == len(genuine)  # no genuine pair repeated
    impostor = frame[~frame["same"]]
    assert len({frozenset(p) for p in zip(impostor.name_a, impostor.name_b, strict=True)}) == 30


def test_generation_is_seeded_and_degraded_variant_keeps_the_pairs(mini_lfw, tmp_path):
    clean = L.make_lfw_sets(mini_lfw, seed=3, **MINI)
    for name in ("a", "b"):
        L.save_protocol(L.make_lfw_sets(mini_lfw, seed=3, **MINI), tmp_path / f"{name}.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    other = L.make_lfw_sets(mini_lfw, seed=4, **MINI)
    assert not other["set_a"].equals(clean["set_a"])
    degraded = L.make_lfw_sets(mini_lfw, seed=3, degraded=True, **MINI)
    columns = ["fold", "same", "name_a", "name_b", "set_a", "set_b"]
    assert degraded[columns].equals(clean[columns])
    specs = [s for column in ("degrade_a", "degrade_b") for f in degraded[column] for s in f]
    share = np.mean([s is not None for s in specs])
    assert 0.65 < share < 0.95  # probability 0.8
    for spec in filter(None, specs):
        assert spec["kind"] in degrade.KINDS and 0.3 <= spec["severity"] <= 1.0
        assert len(spec["seed"]) == 2 and all(0 <= s < 2**31 for s in spec["seed"])
    assert degraded.attrs["protocol"]["variant"] == "degraded"
    assert degraded.attrs["protocol"]["degrade_probability"] == 0.8


def test_save_load_round_trip(mini_lfw, tmp_path):
    frame = L.make_lfw_sets(mini_lfw, seed=1, degraded=True, **MINI)
    path = tmp_path / "sub" / "p.jsonl"
    L.save_protocol(frame, path)
    loaded = L.load_protocol(path)
    assert loaded.equals(frame) and loaded.attrs == frame.attrs
    assert [p.name for p in path.parent.iterdir()] == ["p.jsonl"]  # no temporary left
    header = json.loads(path.read_text().splitlines()[0])
    assert header["protocol"]["name"] == "lfw_sets" and header["protocol"]["seed"] == 1
    (tmp_path / "bad.jsonl").write_text('{"fold": 0}\n')
    with pytest.raises(ValueError, match="first line must be"):
        L.load_protocol(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="unknown LFW-sets parameters"):
        L.make_lfw_sets(mini_lfw, folds=3)
    with pytest.raises(ValueError, match="cannot give 40 genuine pairs"):
        L.make_lfw_sets(mini_lfw, num_folds=3, pairs_per_fold=40)


def test_degraded_frame_is_reproducible(mini_lfw):
    name = TEST_PEOPLE[0][0]
    path = f"{name}/{name}_0001.jpg"
    spec = {"kind": "occlusion", "severity": 0.734, "seed": [12345, 678]}
    first = L.degraded_frame(path, spec, mini_lfw)
    second = L.degraded_frame(path, json.loads(json.dumps(spec)), str(mini_lfw.data_dir))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.uint8 and first.shape == (48, 48, 3)
    clean = L.degraded_frame(path, None, mini_lfw)
    expected = degrade.degrade(clean, "occlusion", 0.734, [12345, 678]).numpy()
    np.testing.assert_array_equal(first, expected)
    assert not np.array_equal(first, clean)


def test_protocol_frames_and_frame_dataset_match_degraded_frame(mini_lfw):
    name = TEST_PEOPLE[0][0]
    paths = [f"{name}/{name}_{i:04d}.jpg" for i in (1, 2, 1)]
    frame = pd.DataFrame(
        {
            "set_a": [paths[:2], paths[2:]],
            "set_b": [paths[1:], paths[:1]],
            "degrade_a": [[None, {"kind": "jpeg", "severity": 0.5, "seed": [1, 2]}], [None]],
            "degrade_b": [[{"kind": "jpeg", "severity": 0.5, "seed": [1, 3]}, None], [None]],
        }
    )
    frames, rows_a, rows_b = L.protocol_frames(frame)
    assert len(frames) == 3  # 0001 clean (shared by three sets), 0002 with two seeds
    assert [r.tolist() for r in rows_a] == [[0, 1], [0]]
    assert [r.tolist() for r in rows_b] == [[2, 0], [0]]
    images = np.concatenate([b.numpy() for b in L.frame_dataset(frames, mini_lfw, batch_size=2)])
    pairs = [(paths[0], None), (paths[1], frame["degrade_a"][0][1])]
    pairs.append((paths[1], frame["degrade_b"][0][0]))
    for image, (path, spec) in zip(images, pairs, strict=True):
        np.testing.assert_array_equal(image, L.degraded_frame(path, spec, mini_lfw))


@pytest.mark.slow
def test_committed_protocols_equal_a_regeneration(tmp_path):
    lfw = LFW(require(LFW_DIR))
    written = L.write_protocols(lfw, tmp_path)
    for path in written:
        committed = lfw_sets_protocol_dir() / path.name
        assert path.read_bytes() == committed.read_bytes(), path.name
    clean, degraded = (L.load_protocol(p) for p in written)
    check_protocol(clean, lfw, 10, 40)
    people = set(clean["name_a"]) | set(clean["name_b"])
    assert len(people) == 180  # every DevTest person with >= 4 images
    assert clean.groupby("fold").apply(lambda g: len(set(g.name_a) | set(g.name_b))).eq(18).all()
    assert set(clean["set_a"].map(len)) == {2, 3, 4, 5, 6}
    for path in {p for column in ("set_a", "set_b") for s in clean[column] for p in s}:
        assert (lfw.image_dir / path).is_file(), path


@pytest.mark.slow
def test_committed_degraded_frames_are_reproducible():
    lfw = LFW(require(LFW_DIR))
    degraded = L.load_protocol(lfw_sets_protocol_dir() / "lfw_sets_degraded.jsonl")
    frames, _, _ = L.protocol_frames(degraded.head(12))
    assert set(frames["kind_id"][frames["severity"] > 0]) == set(range(len(degrade.KINDS)))
    batches = L.frame_dataset(frames, lfw, batch_size=16)
    images = np.concatenate([b.numpy() for b in batches])
    for image, row in zip(images, frames.itertuples(), strict=True):
        spec = None
        if row.severity > 0:
            kind = degrade.KINDS[row.kind_id]
            spec = {"kind": kind, "severity": row.severity, "seed": [row.seed0, row.seed1]}
        again = L.degraded_frame(row.path, spec, lfw)
        np.testing.assert_array_equal(image, again)
        np.testing.assert_array_equal(again, L.degraded_frame(row.path, spec, lfw))
        assert again.shape == (250, 250, 3)

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_faceset.data import lfw as lfw_module
from keras_faceset.data.lfw import LFW
from tests.conftest import LFW_DIR, require

# A miniature LFW in the official formats: 2 folds of 2 matched + 2 mismatched pairs.
MINI_PEOPLE = [
    [("Ann_A", 3), ("Bob_B", 2), ("Cat_C", 1)],
    [("Dan_D", 2), ("Eve_E", 3), ("Fay_F", 1)],
]
MINI_FILES = {
    "pairs.txt": """2\t2
Ann_A\t1\t2
Bob_B\t1\t2
Ann_A\t3\tCat_C\t1
Bob_B\t2\tCat_C\t1
Dan_D\t1\t2
Eve_E\t1\t3
Dan_D\t1\tFay_F\t1
Eve_E\t2\tFay_F\t1
""",
    "pairsDevTrain.txt": "1\nAnn_A\t1\t3\nAnn_A\t2\tBob_B\t1\n",
    "pairsDevTest.txt": "2\nEve_E\t2\t3\nDan_D\t1\t2\nDan_D\t2\tEve_E\t1\nFay_F\t1\tEve_E\t3\n",
    "people.txt": "2\n3\nAnn_A\t3\nBob_B\t2\nCat_C\t1\n3\nDan_D\t2\nEve_E\t3\nFay_F\t1\n",
    "peopleDevTrain.txt": "3\nAnn_A\t3\nBob_B\t2\nCat_C\t1\n",
    "peopleDevTest.txt": "3\nDan_D\t2\nEve_E\t3\nFay_F\t1\n",
}
# One colour per person, so that mean-colour embeddings separate identities perfectly.
MINI_COLOURS = {
    "Ann_A": (220, 40, 40),
    "Bob_B": (40, 200, 40),
    "Cat_C": (40, 40, 220),
    "Dan_D": (220, 220, 40),
    "Eve_E": (40, 220, 220),
    "Fay_F": (220, 40, 220),
}


def write_mini_lfw(root: Path, size: int = 24) -> Path:
    """Write the miniature LFW (protocol files + noisy single-colour JPEGs) under `root`."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for fname, text in MINI_FILES.items():
        (root / fname).write_text(text)
    for fold in MINI_PEOPLE:
        for name, count in fold:
            (root / "lfw-deepfunneled" / name).mkdir(parents=True)
            for number in range(1, count + 1):
                noise = rng.integers(-30, 31, (size, size, 3))
                pixels = np.clip(np.array(MINI_COLOURS[name]) + noise, 0, 255).astype(np.uint8)
                path = root / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg"
                Image.fromarray(pixels).save(path, quality=95)
    return root


@pytest.fixture
def mini_lfw(tmp_path) -> Path:
    return write_mini_lfw(tmp_path / "lfw")


def test_pairs_parse_mini(mini_lfw):
    pairs = LFW(mini_lfw).pairs()
    assert list(pairs.columns) == ["path_a", "path_b", "same", "fold", "name_a", "name_b"]
    assert pairs.same.tolist() == [True, True, False, False] * 2
    assert pairs.fold.tolist() == [0] * 4 + [1] * 4
    assert pairs.same.dtype == bool and pairs.fold.dtype.kind == "i"
    image_dir = mini_lfw / "lfw-deepfunneled"
    assert pairs.path_a[2] == str(image_dir / "Ann_A" / "Ann_A_0003.jpg")
    assert pairs.path_b[2] == str(image_dir / "Cat_C" / "Cat_C_0001.jpg")
    assert pairs.path_b[5] == str(image_dir / "Eve_E" / "Eve_E_0003.jpg")
    assert (pairs.name_a[6], pairs.name_b[6]) == ("Dan_D", "Fay_F")
    assert all(Path(p).is_file() for p in pd.concat([pairs.path_a, pairs.path_b]))
    dev_test = LFW(mini_lfw).pairs("dev_test")
    assert dev_test.same.tolist() == [True, True, False, False]
    assert dev_test.fold.tolist() == [0] * 4
    assert len(LFW(mini_lfw).pairs("dev_train")) == 2


def test_people_and_images_mini(mini_lfw):
    people = LFW(mini_lfw).people()
    assert people.name.tolist() == [name for fold in MINI_PEOPLE for name, _ in fold]
    assert people["count"].tolist() == [3, 2, 1, 2, 3, 1]
    assert people.fold.tolist() == [0, 0, 0, 1, 1, 1]
    images = LFW(mini_lfw).images("view2")
    assert len(images) == 12 and images.identity.value_counts()["Eve_E"] == 3
    assert images.path[0].endswith("Ann_A/Ann_A_0001.jpg")
    assert all(Path(p).is_file() for p in images.path)
    dev_test = LFW(mini_lfw).images("dev_test")
    assert dev_test.identity.tolist() == ["Dan_D"] * 2 + ["Eve_E"] * 3 + ["Fay_F"]
    assert (dev_test.fold == 0).all()


def test_data_dir_from_env(mini_lfw, monkeypatch):
    monkeypatch.setenv("KERAS_FACESET_DATA", str(mini_lfw))
    assert LFW().data_dir == mini_lfw
    assert len(LFW().pairs()) == 8


def test_missing_data_names_file_and_remedy(tmp_path, mini_lfw):
    with pytest.raises(FileNotFoundError, match=r"pairs\.txt.*LFW\.download.*KERAS_FACESET_DATA"):
        LFW(tmp_path / "nowhere").pairs()
    (mini_lfw / "people.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"people\.txt not found"):
        LFW(mini_lfw).people()
    (mini_lfw / "lfw-deepfunneled").rename(mini_lfw / "elsewhere")
    assert len(LFW(mini_lfw).people("dev_train")) == 3  # people lists do not need the images
    with pytest.raises(
        FileNotFoundError, match=r"lfw-deepfunneled not found.*lfw-deepfunneled\.tgz"
    ):
        LFW(mini_lfw).pairs()


def test_malformed_files_raise(mini_lfw):
    text = MINI_FILES["pairs.txt"].replace("Bob_B\t1\t2\n", "Bob_B\t1\tXX\t2\n")
    (mini_lfw / "pairs.txt").write_text(text)
    with pytest.raises(ValueError, match=r"pairs\.txt:3: expected 'name n1 n2'"):
        LFW(mini_lfw).pairs()
    (mini_lfw / "pairs.txt").write_text(MINI_FILES["pairs.txt"] + "Ann_A\t1\t2\n")
    with pytest.raises(ValueError, match="header promises 2 folds of 2 matched"):
        LFW(mini_lfw).pairs()
    (mini_lfw / "people.txt").write_text(MINI_FILES["people.txt"] + "Zed_Z\t1\n")
    with pytest.raises(ValueError, match=r"people\.txt:10: unexpected line"):
        LFW(mini_lfw).people()
    with pytest.raises(ValueError, match="unknown LFW view 'view3'"):
        LFW(mini_lfw).pairs("view3")
    with pytest.raises(ValueError, match="unknown LFW split"):
        LFW(mini_lfw).people("train")


def _serve(mini_lfw: Path, server: Path, monkeypatch) -> None:
    """Publish the mini LFW as file:// URLs (protocol files + archive) with pinned sha256."""
    server.mkdir()
    sources = {}
    for fname in MINI_FILES:
        data = (mini_lfw / fname).read_bytes()
        (server / fname).write_bytes(data)
        sources[fname] = (hashlib.sha256(data).hexdigest(), (f"file://{server / fname}",))
    with tarfile.open(server / "lfw-deepfunneled.tgz", "w:gz") as tar:
        tar.add(mini_lfw / "lfw-deepfunneled", arcname="lfw-deepfunneled")
    sources["lfw-deepfunneled.tgz"] = (None, (f"file://{server / 'lfw-deepfunneled.tgz'}",))
    monkeypatch.setattr(lfw_module, "SOURCES", sources)
    monkeypatch.setattr(lfw_module, "NUM_IMAGES", 12)


def test_download_verifies_and_extracts(mini_lfw, tmp_path, monkeypatch):
    _serve(mini_lfw, tmp_path / "server", monkeypatch)
    lfw = LFW.download(tmp_path / "dest")
    assert lfw.data_dir == tmp_path / "dest"
    assert not (tmp_path / "dest" / "lfw-deepfunneled.tgz").exists()  # deleted after checking
    expected = LFW(mini_lfw).pairs().drop(columns=["path_a", "path_b"])
    pd.testing.assert_frame_equal(lfw.pairs().drop(columns=["path_a", "path_b"]), expected)
    assert all(Path(p).is_file() for p in lfw.images().path)
    # A pinned hash that does not match is refused, naming the file.
    (tmp_path / "server" / "people.txt").write_text("tampered\n")
    (tmp_path / "dest" / "people.txt").unlink()
    with pytest.raises(OSError, match=r"Could not download people\.txt.*hash"):
        LFW.download(tmp_path / "dest")


def test_download_checks_image_count(mini_lfw, tmp_path, monkeypatch):
    _serve(mini_lfw, tmp_path / "server", monkeypatch)
    monkeypatch.setattr(lfw_module, "NUM_IMAGES", 13)
    with pytest.raises(OSError, match="gave 12 images.*expected 13"):
        LFW.download(tmp_path / "dest")


def test_download_offline_error(tmp_path, monkeypatch):
    sha, _ = lfw_module.SOURCES["pairs.txt"]
    unreachable = "http://127.0.0.1:9/lfw/pairs.txt"  # the discard port: connection refused
    monkeypatch.setattr(lfw_module, "SOURCES", {"pairs.txt": (sha, (unreachable,))})
    with pytest.raises(OSError) as info:
        LFW.download(tmp_path / "dest")
    message = str(info.value)
    assert unreachable in message and str(tmp_path / "dest" / "pairs.txt") in message
    assert sha in message


def test_pinned_hashes_match_shared_files():
    for fname, (sha, origins) in lfw_module.SOURCES.items():
        assert origins[0].startswith("http://vis-www.cs.umass.edu/lfw/")
        if sha is not None and (LFW_DIR / fname).is_file():
            assert hashlib.sha256((LFW_DIR / fname).read_bytes()).hexdigest() == sha


@pytest.mark.slow
def test_real_view2_pairs():
    lfw = LFW(require(LFW_DIR))
    pairs = lfw.pairs("view2")
    assert len(pairs) == 6000
    counts = pairs.groupby(["fold", "same"]).size()
    assert (counts == 300).all() and len(counts) == 20
    for fold in range(10):  # per fold: 300 matched lines then 300 mismatched
        assert pairs.same[fold * 600 : fold * 600 + 300].all()
        assert not pairs.same[fold * 600 + 300 : (fold + 1) * 600].any()
    assert (pairs.name_a[pairs.same] == pairs.name_b[pairs.same]).all()
    assert (pairs.name_a[~pairs.same] != pairs.name_b[~pairs.same]).all()
    paths = set(pairs.path_a) | set(pairs.path_b)
    assert len(paths) == 7701
    assert all(Path(p).is_file() for p in paths)
    assert pairs.path_a[0] == str(LFW_DIR / "lfw-deepfunneled/Abel_Pacheco/Abel_Pacheco_0001.jpg")


@pytest.mark.slow
def test_real_view1_pairs():
    lfw = LFW(require(LFW_DIR))
    for view, n in (("dev_train", 1100), ("dev_test", 500)):
        pairs = lfw.pairs(view)
        assert len(pairs) == 2 * n and pairs.same[:n].all() and not pairs.same[n:].any()
        assert (pairs.fold == 0).all()
        assert all(Path(p).is_file() for p in set(pairs.path_a) | set(pairs.path_b))


@pytest.mark.slow
def test_real_people_and_images():
    lfw = LFW(require(LFW_DIR))
    people = lfw.people("view2")
    assert len(people) == 5749 and people.name.is_unique
    fold_sizes = [601, 555, 552, 560, 567, 527, 597, 601, 580, 609]  # as stated in people.txt
    assert people.groupby("fold").size().tolist() == fold_sizes
    images = lfw.images("view2")
    assert len(images) == people["count"].sum() == 13233
    assert all(Path(p).is_file() for p in images.path)
    train, test = lfw.people("dev_train"), lfw.people("dev_test")
    assert (len(train), len(test)) == (4038, 1711)
    assert (train["count"].sum(), test["count"].sum()) == (9525, 3708)
    assert not set(train.name) & set(test.name)
    # The pairs of a fold only use people of that fold of people.txt.
    pairs = lfw.pairs("view2")
    fold_of = dict(zip(people.name, people.fold, strict=True))
    assert (pairs.name_a.map(fold_of) == pairs.fold).all()
    assert (pairs.name_b.map(fold_of) == pairs.fold).all()

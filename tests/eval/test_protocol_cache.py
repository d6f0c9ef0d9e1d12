"""keras_faceset.eval.protocol_cache: cache file names, cache reuse, and the variants' rows."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_faceset.data import lfw_sets
from keras_faceset.data.devtrain_sets import select_images, training_frames, training_people
from keras_faceset.data.held_out_sets import held_out_protocol
from keras_faceset.data.lfw import LFW
from keras_faceset.eval import protocol_cache as P
from keras_faceset.eval.sets import lfw_sets_protocol_dir
from keras_faceset.zoo import build_head
from tests.conftest import LFW_DIR, require
from tests.data.mini_devtrain import mini_devtrain


def fake_arrays(count: int) -> dict[str, np.ndarray]:
    """Frame arrays whose first embedding column is the row number."""
    rng = np.random.default_rng(0)
    arrays = {
        "embedding": rng.normal(size=(count, 128)).astype(np.float32),
        "pooled": rng.uniform(size=(count, 256)).astype(np.float32),
        "texture": rng.uniform(size=(count, 448)).astype(np.float32),
    }
    arrays["embedding"][:, 0] = np.arange(count)
    return arrays


@pytest.fixture
def no_embedding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("embedded although the cache holds the frames")

    monkeypatch.setattr(P, "embed_frames", refuse)


def test_cached_frames_are_read_back_and_a_partial_cache_is_recomputed(tmp_path, monkeypatch):
    frames = training_frames(pd.DataFrame({"path": ["A/A_0001.jpg"], "identity": ["A"]}), 2)
    arrays = fake_arrays(len(frames))
    calls = []

    def embed(frames_, lfw, chips):
        calls.append(len(frames_))
        return arrays

    monkeypatch.setattr(P, "embed_frames", embed)
    path = tmp_path / "sub" / "cache.npz"
    np.savez(tmp_path / "partial.npz", embedding=arrays["embedding"])
    for target in (path, tmp_path / "partial.npz"):
        out = P.cached_frame_embeddings(frames, LFW(tmp_path), None, target)
        assert all(np.array_equal(out[key], arrays[key]) for key in P.FEATURE_KEYS)
    assert calls == [3, 3]
    again = P.cached_frame_embeddings(frames, LFW(tmp_path), None, path)
    assert calls == [3, 3] and all(np.array_equal(again[k], arrays[k]) for k in P.FEATURE_KEYS)


def test_head_features_follow_the_heads_feature_shape():
    arrays = fake_arrays(4)
    assert P.head_features(build_head("nan"), arrays) is arrays["texture"]
    assert P.head_features(build_head("nan1", feature_shape=256), arrays) is arrays["pooled"]
    assert P.head_features(build_head("seqface"), arrays) is None
    with pytest.raises(ValueError, match="no cached frame features of shape"):
        P.head_features(build_head("nan1", feature_shape=100), arrays)


def test_default_cache_dir_is_under_the_users_cache():
    assert P.default_cache_dir("sets") == Path.home() / ".cache" / "keras_faceset" / "sets"


def test_lfw_sets_variants_take_their_rows_from_the_shared_frame_cache(tmp_path, no_embedding):
    frames = []
    for variant in ("clean", "degraded"):
        pairs = lfw_sets.load_protocol(lfw_sets_protocol_dir() / f"lfw_sets_{variant}.jsonl")
        frames.append(lfw_sets.protocol_frames(pairs)[0])
    union = pd.concat(frames).drop_duplicates(ignore_index=True)
    np.savez(tmp_path / "lfw_sets_dlib.npz", **fake_arrays(len(union)))
    variants = P.lfw_sets_embeddings(LFW(tmp_path), tmp_path)
    position = {key: i for i, key in enumerate(union.itertuples(index=False, name=None))}
    for v in variants.values():
        expected = [position[key] for key in v["frames"].itertuples(index=False, name=None)]
        np.testing.assert_array_equal(v["embedding"][:, 0], expected)
        np.testing.assert_array_equal(v["severity"], v["frames"]["severity"])
        np.testing.assert_array_equal(v["same"], v["pairs"]["same"])
        assert len(v["rows_a"]) == len(v["pairs"]) == 800
    np.savez(tmp_path / "lfw_sets_dlib.npz", **fake_arrays(len(union) - 1))
    with pytest.raises(ValueError, match="rows, not"):
        P.lfw_sets_embeddings(LFW(tmp_path), tmp_path)


def test_training_frames_are_cached_under_their_digest(tmp_path, no_embedding):
    lfw = mini_devtrain(tmp_path)
    images = select_images(lfw, 60)
    frames = training_frames(images, 2)
    np.savez(tmp_path / f"devtrain_dlib_{P.frames_digest(frames)}.npz", **fake_arrays(len(frames)))
    got_images, got_frames, arrays = P.devtrain_embeddings(lfw, tmp_path, None, 60, 2)
    pd.testing.assert_frame_equal(got_images, images)
    pd.testing.assert_frame_equal(got_frames, frames)
    np.testing.assert_array_equal(arrays["embedding"][:, 0], np.arange(len(frames)))


def test_held_out_variants_share_one_cached_frame_table(tmp_path, monkeypatch):
    lfw = mini_devtrain(tmp_path)
    exclude = training_people(select_images(lfw, 60))
    embedded = []

    def embed(frames, lfw_, chips):
        embedded.append(frames)
        return fake_arrays(len(frames))

    monkeypatch.setattr(P, "embed_frames", embed)
    variants = P.held_out_embeddings(lfw, tmp_path, None, exclude, replicates=2)
    [frames] = embedded
    [cache] = tmp_path.glob("devtrain_sets_dlib_*.npz")
    assert cache.name == f"devtrain_sets_dlib_{P.frames_digest(frames)}.npz"
    clean, degraded = variants["clean"], variants["degraded"]
    assert len(clean["same"]) == 1600 and sorted(set(clean["fold"])) == list(range(20))
    assert len(degraded["same"]) == 800 and sorted(set(degraded["fold"])) == list(range(10))
    clean_rows = np.concatenate([np.concatenate(clean[side]) for side in ("rows_a", "rows_b")])
    degraded_rows = np.concatenate([np.concatenate(degraded[s]) for s in ("rows_a", "rows_b")])
    assert (clean["severity"][clean_rows] == 0).all()
    assert 0.7 < np.mean(degraded["severity"][degraded_rows] > 0) < 0.9
    np.testing.assert_array_equal(clean["embedding"][:, 0], np.arange(len(frames)))
    assert P.held_out_embeddings(lfw, tmp_path, None, exclude, replicates=2).keys() == {
        "clean",
        "degraded",
    }
    assert len(embedded) == 1  # the second call read the cache


@pytest.mark.slow
def test_frame_tables_of_the_shipped_heads_keep_their_cache_names():
    """The digests name the caches the shipped heads were trained from (default arguments of
    zoo/train_set_heads.py and zoo/train_seqface.py)."""
    lfw = LFW(require(LFW_DIR))
    images = select_images(lfw, 2400)
    assert P.frames_digest(training_frames(images, 4)) == "1300d9375d64"
    assert P.frames_digest(training_frames(select_images(lfw, 10**6), 2)) == "05080c8c73e2"
    exclude = training_people(images)
    clean = [
        held_out_protocol(lfw, exclude, s).assign(fold=lambda t, s=s: t["fold"] + 10 * s)
        for s in range(P.CLEAN_REPLICATES)
    ]
    lists = pd.concat(
        [pd.concat(clean, ignore_index=True), held_out_protocol(lfw, exclude, 0, True)]
    )
    assert P.frames_digest(lfw_sets.protocol_frames(lists)[0]) == "40752e84d423"

import json

import keras
import numpy as np
import pandas as pd
import pytest

from keras_faceset.data.images import CenterCropResize, load_image
from keras_faceset.eval.lfw import cached_embeddings, embed_paths, evaluate_lfw, pair_scores
from keras_faceset.eval.report import save_report
from tests.conftest import LFW_DIR, require
from tests.data.test_lfw import write_mini_lfw


class MeanColour:
    """Embedding = mean RGB minus grey; counts the images it has embedded."""

    def __init__(self):
        self.seen = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.seen += len(batch)
        return batch.mean(axis=(1, 2)) - 128.0


@pytest.fixture
def mini_lfw(tmp_path):
    return write_mini_lfw(tmp_path / "lfw")


def _paths(mini_lfw):
    return sorted(str(p) for p in (mini_lfw / "lfw-deepfunneled").glob("*/*.jpg"))


def test_embed_paths_embeds_each_file_once(mini_lfw):
    paths = _paths(mini_lfw)
    request = [paths[3], paths[0], paths[3], paths[5], paths[0]]
    embed = MeanColour()
    out = embed_paths(embed, request, batch_size=2)
    assert embed.seen == 3 and out.shape == (5, 3)
    for path, row in zip(request, out, strict=True):
        expected = load_image(path).numpy().mean(axis=(0, 1)) - 128.0
        np.testing.assert_allclose(row, expected, rtol=1e-6)


def test_embed_paths_with_keras_model_and_preprocess(mini_lfw):
    paths = _paths(mini_lfw)
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(5)], name="tiny"
    )
    pre = CenterCropResize(16, 8)
    batch = np.stack([pre(load_image(p)).numpy() for p in paths])
    out = embed_paths(model, paths, pre, batch_size=5)
    np.testing.assert_allclose(out, model.predict(batch, verbose=0), rtol=1e-5, atol=1e-5)


def test_embed_paths_names_corrupt_file_and_bad_output(mini_lfw):
    paths = _paths(mini_lfw)
    data = open(paths[4], "rb").read()
    open(paths[4], "wb").write(data[: len(data) // 3])
    with pytest.raises(ValueError, match=f"cannot decode image {paths[4]}"):
        embed_paths(MeanColour(), paths, batch_size=4)
    with pytest.raises(ValueError, match=r"to \(2, D\) embeddings, got shape \(2, 24, 3\)"):
        embed_paths(lambda x: x.mean(axis=1), paths[:2])


def test_pair_scores():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[6.0, 8.0], [0.0, 2.0]])
    np.testing.assert_allclose(pair_scores(a, b), [1.0, 0.0])
    np.testing.assert_allclose(pair_scores(a, b, "euclidean"), [5.0, np.sqrt(5.0)])
    with pytest.raises(ValueError, match="unknown metric 'l1'"):
        pair_scores(a, b, "l1")


def test_evaluate_lfw_view2_mini(mini_lfw):
    summary, scores = evaluate_lfw(
        MeanColour(), mini_lfw, preprocess=CenterCropResize(0.5, 6), batch_size=4
    )
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row.model == "MeanColour" and row.metric == "cosine"
    assert row.protocol.startswith("LFW View 2 (pairs.txt): 10-fold CV")
    assert row.preprocess == "center crop 0.5 of the short side, bilinear antialiased resize to 6x6"
    assert (row.pairs, row.images, row.embedding_dim) == (8, 12, 3)
    assert (row.accuracy, row["std"], row.auc, row.eer) == (1.0, 0.0, 1.0, 0.0)
    assert row["tar@far=0.001"] == 1.0
    assert list(scores.columns) == [
        "path_a", "path_b", "same", "fold", "name_a", "name_b", "split", "score",
    ]  # fmt: skip
    assert (scores.score[scores.same] > 0.99).all() and (scores.score[~scores.same] < 0.3).all()


def test_evaluate_lfw_view1_and_euclidean_mini(mini_lfw):
    summary, scores = evaluate_lfw(MeanColour(), mini_lfw, view="view1", metric="euclidean")
    row = summary.iloc[0]
    assert row.protocol.startswith("LFW View 1: threshold on pairsDevTrain.txt")
    assert row.pairs == 4 and np.isnan(row["std"]) and row.accuracy == 1.0
    assert scores.split.tolist() == ["dev_train"] * 2 + ["dev_test"] * 4
    train = scores[scores.split == "dev_train"]
    assert row.threshold == pytest.approx(train.score.mean())  # midpoint of the 2 train pairs
    first = scores.iloc[0]
    emb = [load_image(p).numpy().mean(axis=(0, 1)) for p in (first.path_a, first.path_b)]
    assert first.score == pytest.approx(np.linalg.norm(emb[0] - emb[1]), rel=1e-5)


def test_evaluate_lfw_subset_and_bad_options(mini_lfw):
    summary, scores = evaluate_lfw(MeanColour(), mini_lfw, pairs_per_fold=1)
    assert len(scores) == 4 and scores.same.tolist() == [True, False] * 2
    assert summary.protocol[0].endswith("[subset: first 1+1 pairs per fold]")
    with pytest.raises(ValueError, match="unknown LFW view 'dev_test'"):
        evaluate_lfw(MeanColour(), mini_lfw, view="dev_test")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_lfw(MeanColour(), mini_lfw, metric="manhattan")


def test_embedding_cache(mini_lfw, tmp_path):
    cache = tmp_path / "cache" / "mean.npz"
    embed = MeanColour()
    first, scores = evaluate_lfw(embed, mini_lfw, cache_path=cache)
    assert embed.seen == 12 and cache.is_file()
    again, scores_again = evaluate_lfw(embed, mini_lfw, cache_path=cache)
    assert embed.seen == 12  # nothing recomputed
    np.testing.assert_array_equal(scores.score, scores_again.score)
    assert again.accuracy[0] == first.accuracy[0]
    evaluate_lfw(embed, mini_lfw, view="view1", cache_path=cache)  # View 1 reuses those images
    assert embed.seen == 12
    # A new path is embedded alone and added to the cache.
    paths = _paths(mini_lfw)
    extra = tmp_path / "extra.jpg"
    extra.write_bytes(open(paths[0], "rb").read())
    request = [paths[1], str(extra), paths[0]]
    out = cached_embeddings(embed, request, cache_path=cache)
    assert embed.seen == 13 and len(np.load(cache)["paths"]) == 13
    np.testing.assert_array_equal(out, embed_paths(MeanColour(), request))
    assert sorted(p.name for p in cache.parent.iterdir()) == ["mean.npz"]  # no temp files left
    with pytest.raises(ValueError, match="was written for 'MeanColour | none"):
        evaluate_lfw(lambda x: x.mean(axis=(1, 2)), mini_lfw, cache_path=cache)


def _pixel_projection():
    """A fixed random projection of centred 16x16 pixels: a weak but deterministic face embedder."""
    projection = np.random.default_rng(0).standard_normal((16 * 16 * 3, 64)).astype(np.float32)

    def pixel_projection(batch: np.ndarray) -> np.ndarray:
        x = batch.reshape(len(batch), -1) / 255.0
        return (x - x.mean(axis=1, keepdims=True)) @ projection

    return pixel_projection, CenterCropResize(120, 16)


@pytest.mark.slow
def test_evaluate_lfw_real_subset_with_cache(tmp_path):
    embed, pre = _pixel_projection()
    data_dir, cache = require(LFW_DIR), tmp_path / "emb.npz"
    summary, scores = evaluate_lfw(
        embed, data_dir, preprocess=pre, cache_path=cache, pairs_per_fold=10
    )
    row = summary.iloc[0]
    assert (row.pairs, row.images) == (200, 312)
    assert 0.55 < row.accuracy < 0.9 and row.accuracy == pytest.approx(0.64, abs=0.01)
    again, scores_again = evaluate_lfw(
        embed, data_dir, preprocess=pre, cache_path=cache, pairs_per_fold=10
    )
    np.testing.assert_array_equal(scores.score, scores_again.score)
    assert again.accuracy[0] == row.accuracy


@pytest.mark.slow
def test_evaluate_lfw_real_full_views():
    embed, pre = _pixel_projection()
    data_dir = require(LFW_DIR)
    summary, _ = evaluate_lfw(embed, data_dir, preprocess=pre, batch_size=64)
    row = summary.iloc[0]
    assert (row.pairs, row.images) == (6000, 7701)
    assert row.accuracy == pytest.approx(0.6025, abs=0.003) and 0.55 < row.auc < 0.9
    summary, _ = evaluate_lfw(embed, data_dir, view="view1", preprocess=pre, batch_size=64)
    assert (summary.pairs[0], summary.images[0]) == (1000, 4992)
    assert summary.accuracy[0] == pytest.approx(0.615, abs=0.003)


def test_save_report(mini_lfw, tmp_path):
    summary, scores = evaluate_lfw(MeanColour(), mini_lfw, view="view1", metric="euclidean")
    paths = save_report(summary, scores, tmp_path / "out")
    assert sorted(paths) == [
        "histogram_png",
        "roc_png",
        "scores_csv",
        "summary_csv",
        "summary_json",
    ]
    records = json.loads(paths["summary_json"].read_text())
    assert records[0]["accuracy"] == summary.accuracy[0] and records[0]["std"] is None
    pd.testing.assert_frame_equal(pd.read_csv(paths["summary_csv"]), summary)
    np.testing.assert_allclose(pd.read_csv(paths["scores_csv"]).score, scores.score)
    for kind in ("roc_png", "histogram_png"):
        png = paths[kind].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000

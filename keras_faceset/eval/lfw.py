"""LFW verification of an embedding model: embed each image once, score pairs, report metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_faceset.data.images import image_dataset, load_image
from keras_faceset.data.lfw import LFW
from keras_faceset.eval.verification import best_threshold, verification_report
from keras_faceset.files import atomic_path
from keras_faceset.progress import progress

METRICS = ("cosine", "euclidean")
VIEWS = {
    "view2": "LFW View 2 (pairs.txt): 10-fold CV, threshold from the other 9 folds",
    "view1": "LFW View 1: threshold on pairsDevTrain.txt, accuracy on pairsDevTest.txt",
}

Embedder = keras.Model | Callable[[np.ndarray], np.ndarray]
Preprocess = Callable[[tf.Tensor], tf.Tensor]


def _name(obj) -> str:
    """Short human name of a model, function or callable object."""
    if isinstance(obj, keras.Model):
        return obj.name
    return getattr(obj, "__name__", type(obj).__name__)


def describe_preprocess(preprocess: Preprocess | None) -> str:
    """`preprocess.description` when it has one (`CenterCropResize`), else its name."""
    if preprocess is None:
        return "none (uint8 image)"
    return getattr(preprocess, "description", None) or _name(preprocess)


def embed_paths(
    model: Embedder,
    paths: Sequence[str | os.PathLike],
    preprocess: Preprocess | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Embeddings (len(paths), D) of ``model(preprocess(load_image(path)))``, each file once.

    `model` is a `keras.Model` (run with `predict_on_batch`) or any callable mapping a NumPy
    batch to a (batch, D) array. Repeated paths are decoded and embedded once. A file that
    cannot be decoded raises `ValueError` naming it. Shows a `keras_faceset.progress` bar.
    """
    paths = [os.fspath(p) for p in paths]
    unique = list(dict.fromkeys(paths))
    embed = model.predict_on_batch if isinstance(model, keras.Model) else model
    iterator = iter(image_dataset(unique, preprocess, batch_size))
    outputs = []
    steps = range(0, len(unique), batch_size)
    for start in progress(
        steps, len(unique), "embedding", lambda i: min(batch_size, len(unique) - i)
    ):
        try:
            batch = next(iterator)
        except tf.errors.OpError:
            for path in unique[start : start + batch_size]:
                load_image(path)  # raises ValueError naming the undecodable file
            raise
        out = np.asarray(keras.ops.convert_to_numpy(embed(batch.numpy())))
        if out.ndim != 2 or out.shape[0] != batch.shape[0]:
            raise ValueError(
                f"{_name(model)} must map a batch of {batch.shape[0]} images to "
                f"({batch.shape[0]}, D) embeddings, got shape {out.shape}"
            )
        outputs.append(out)
    embeddings = np.concatenate(outputs)
    index = {path: i for i, path in enumerate(unique)}
    return embeddings[[index[p] for p in paths]]


def _load_cache(cache_path: Path, key: str) -> dict[str, np.ndarray]:
    if not cache_path.is_file():
        return {}
    with np.load(cache_path) as cache:
        if str(cache["key"]) != key:
            raise ValueError(
                f"embedding cache {cache_path} was written for {str(cache['key'])!r}, not "
                f"{key!r}; delete it or choose another cache_path"
            )
        return dict(zip(cache["paths"].tolist(), cache["embeddings"], strict=True))


def _save_cache(cache_path: Path, key: str, cached: dict[str, np.ndarray]) -> None:
    with atomic_path(cache_path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            key=np.array(key),
            paths=np.array(list(cached)),
            embeddings=np.stack(list(cached.values())),
        )


def cached_embeddings(
    model: Embedder,
    paths: Sequence[str],
    preprocess: Preprocess | None = None,
    batch_size: int = 32,
    cache_path: str | Path | None = None,
) -> np.ndarray:
    """`embed_paths`, reusing and extending an .npz cache keyed by path when `cache_path` is set.

    The cache also stores the model and preprocessing names and refuses a mismatch; it cannot
    see weight changes, so use one cache file per model checkpoint.
    """
    if cache_path is None:
        return embed_paths(model, paths, preprocess, batch_size)
    cache_path = Path(cache_path)
    key = f"{_name(model)} | {describe_preprocess(preprocess)}"
    cached = _load_cache(cache_path, key)
    todo = [p for p in dict.fromkeys(paths) if p not in cached]
    if todo:
        cached.update(zip(todo, embed_paths(model, todo, preprocess, batch_size), strict=True))
        _save_cache(cache_path, key, cached)
    return np.stack([cached[p] for p in paths])


def pair_scores(emb_a: np.ndarray, emb_b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Cosine similarity of the L2-normalised embeddings, or Euclidean distance of the raw ones."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if metric == "euclidean":
        return np.linalg.norm(emb_a - emb_b, axis=1)
    emb_a = emb_a / np.maximum(np.linalg.norm(emb_a, axis=1, keepdims=True), 1e-12)
    emb_b = emb_b / np.maximum(np.linalg.norm(emb_b, axis=1, keepdims=True), 1e-12)
    return np.sum(emb_a * emb_b, axis=1)


def _subset(pairs: pd.DataFrame, pairs_per_fold: int | None) -> pd.DataFrame:
    """The first `pairs_per_fold` matched and mismatched pairs of each fold."""
    if pairs_per_fold is None:
        return pairs
    if pairs_per_fold < 1:
        raise ValueError(f"pairs_per_fold must be positive, got {pairs_per_fold}")
    return pairs.groupby(["fold", "same"], sort=False).head(pairs_per_fold).reset_index(drop=True)


def evaluate_lfw(
    model: Embedder,
    data_dir: str | Path | None = None,
    view: str = "view2",
    preprocess: Preprocess | None = None,
    metric: str = "cosine",
    batch_size: int = 32,
    cache_path: str | Path | None = None,
    pairs_per_fold: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verify LFW pairs with `model` embeddings; return (one-row summary, per-pair scores).

    view="view2": 10-fold accuracy on pairs.txt (`kfold_accuracy`). view="view1": threshold
    chosen on pairsDevTrain.txt, every metric measured on pairsDevTest.txt. `preprocess` maps a
    uint8 (250, 250, 3) image to the model input (e.g. `CenterCropResize`). Scores are cosine
    similarities of L2-normalised embeddings or Euclidean distances of raw embeddings.
    `pairs_per_fold` keeps only the first n matched + n mismatched pairs per fold (quick runs).
    The summary names the model, protocol, preprocessing and metric next to accuracy, std, AUC,
    EER, TAR@FAR and threshold; the scores frame is `LFW.pairs` plus ``score`` and ``split``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown LFW view {view!r}; expected one of {sorted(VIEWS)}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    lfw = LFW(data_dir)
    splits = ["view2"] if view == "view2" else ["dev_train", "dev_test"]
    pairs = pd.concat(
        [_subset(lfw.pairs(split), pairs_per_fold).assign(split=split) for split in splits],
        ignore_index=True,
    )
    paths = pd.concat([pairs.path_a, pairs.path_b]).tolist()
    start = time.perf_counter()
    embeddings = cached_embeddings(model, paths, preprocess, batch_size, cache_path)
    seconds = time.perf_counter() - start
    pairs["score"] = pair_scores(embeddings[: len(pairs)], embeddings[len(pairs) :], metric)

    higher_is_same = metric == "cosine"
    test = pairs[pairs.split == splits[-1]]
    threshold = None
    if view == "view1":
        train = pairs[pairs.split == "dev_train"]
        threshold, _ = best_threshold(train.score, train.same, higher_is_same)
    metrics = verification_report(
        test.score.to_numpy(),
        test.same.to_numpy(),
        test.fold.to_numpy(),
        higher_is_same,
        threshold,
    )
    protocol = VIEWS[view]
    if pairs_per_fold is not None:
        protocol += f" [subset: first {pairs_per_fold}+{pairs_per_fold} pairs per fold]"
    summary = {
        "model": _name(model),
        "protocol": protocol,
        "preprocess": describe_preprocess(preprocess),
        "metric": metric,
        "pairs": len(test),
        "images": len(set(paths)),
        "embedding_dim": embeddings.shape[1],
        **metrics,
        "embed_seconds": seconds,
    }
    return pd.DataFrame([summary]), pairs

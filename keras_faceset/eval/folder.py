"""Verification on a user's labelled folder: every genuine and impostor pair (or a seeded sample).

Layouts (`keras_faceset.data.folders`): ``root/<identity>/<image>`` (items are images) or
``root/<identity>/<set>/<frames>`` and ``root/<identity>/<video>`` (items are sets). An image
model scores a set by the mean of its unit frame embeddings; a set model scores an image as a
set of one frame.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keras_faceset.data.folders import VIDEO_EXTENSIONS, image_folder, set_folder
from keras_faceset.eval.verification import TAR_FARS, measurable_fars, verification_report

if TYPE_CHECKING:
    from keras_faceset.embedder import FaceEmbedder


def folder_items(root: str | os.PathLike, max_frames: int | None = None) -> pd.DataFrame:
    """The items of a labelled folder: columns item, identity, label, frames (a list).

    The layout is sets when an identity folder holds a sub-folder or a video, else images (an
    image is an item with one frame).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {root}")
    entries = [e for d in root.iterdir() if d.is_dir() for e in d.iterdir()]
    if any(e.is_dir() or e.suffix.lower() in VIDEO_EXTENSIONS for e in entries):
        items = set_folder(root, max_frames=max_frames).rename(columns={"set_id": "item"})
    else:
        items = image_folder(root)
        items = items.assign(
            item=[Path(p).relative_to(root).as_posix() for p in items["path"]],
            frames=[[p] for p in items["path"]],
        )
    return items[["item", "identity", "label", "frames"]]


def folder_pairs(
    labels, max_pairs: int | None = None, seed: int = 0, folds: int = 10
) -> pd.DataFrame:
    """Pairs of items (a < b): all genuine and all impostor pairs, or with `max_pairs` at most
    that many of each class drawn uniformly without replacement (seeded). Columns a, b, same,
    fold: each class is shuffled and dealt round-robin into `folds` folds, so every fold has
    the same share of genuine and impostor pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    a, b = np.triu_indices(len(labels), k=1)
    same = labels[a] == labels[b]
    if same.all() or not same.any():
        raise ValueError(
            "a folder needs at least two identities and one identity with two items "
            "(for impostor and genuine pairs)"
        )
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be positive, got {max_pairs}")
    parts = []
    for value in (True, False):
        index = rng.permutation(np.flatnonzero(same == value))[:max_pairs]
        parts.append(
            pd.DataFrame(
                {"a": a[index], "b": b[index], "same": value, "fold": np.arange(len(index)) % folds}
            )
        )
    return pd.concat(parts, ignore_index=True).sort_values(["a", "b"], ignore_index=True)


def evaluate_folder(
    embedder: FaceEmbedder,
    root: str | os.PathLike,
    max_pairs: int | None = None,
    seed: int = 0,
    max_frames: int | None = None,
    folds: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verify the pairs of a labelled folder (`folder_items`, `folder_pairs`) with cosine
    similarity of `embedder.embed_sets` embeddings: (one-row summary, per-pair scores with
    columns a, b, item_a, item_b, same, fold, score, distance, split).

    TAR at a FAR its impostor pairs cannot measure (fewer than 1 / FAR of them,
    `measurable_fars`) is NaN: e.g. 375 impostor pairs give TAR@FAR 1e-1 and 1e-2 only.
    """
    items = folder_items(root, max_frames)
    pairs = folder_pairs(items["label"], max_pairs, seed, folds)
    used = np.unique(pairs[["a", "b"]].to_numpy())
    from keras_faceset.data.inputs import set_inputs

    start = time.perf_counter()
    embeddings = embedder.embed_sets([set_inputs(items["frames"].iloc[i]) for i in used])[0]
    embedded = np.zeros((len(items), embeddings.shape[1]), np.float32)
    embedded[used] = embeddings
    seconds = time.perf_counter() - start
    score = np.sum(embedded[pairs["a"]] * embedded[pairs["b"]], axis=1)
    report = verification_report(score, pairs["same"].to_numpy(), pairs["fold"].to_numpy())
    impostor = int((~pairs["same"]).sum())
    for far in set(TAR_FARS) - set(measurable_fars(impostor, TAR_FARS)):
        report[f"tar@far={far:g}"] = float("nan")  # fewer than 1 / far impostor pairs
    layout = "images" if all(len(f) == 1 for f in items["frames"]) else "sets"
    summary = {
        "model": embedder.__name__,
        "protocol": f"folder {Path(root).name}: {layout}, "
        + ("all pairs" if max_pairs is None else f"<= {max_pairs} pairs per class, seed {seed}"),
        "metric": "cosine",
        "pairs": len(pairs),
        "genuine": int(pairs["same"].sum()),
        "impostor": impostor,
        "items": len(used),
        "identities": int(items["label"].iloc[used].nunique()),
        "embedding_dim": embedded.shape[1],
        **report,
        "embed_seconds": seconds,
    }
    scores = pairs.assign(
        item_a=items["item"].to_numpy()[pairs["a"]],
        item_b=items["item"].to_numpy()[pairs["b"]],
        score=score,
        distance=1.0 - score,
        split="folder",
    )
    return pd.DataFrame([summary]), scores

"""Set-to-set verification (e.g. LFW-sets): pool each set's frame embeddings, score pairs.

Frames are embedded once (one row per distinct frame); a set is a list of row indices into
that table (`keras_faceset.data.lfw_sets.protocol_frames`). A set embedding is either a fixed
pooling of the frames (`pool_sets`) or a trained set head's output (`head_sets`); pairs are
scored by the cosine of the two unit set embeddings (`set_verification`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keras_faceset.data import lfw_sets
from keras_faceset.data.lfw import LFW
from keras_faceset.eval.verification import verification_report
from keras_faceset.models.set_inference import pad_sets
from keras_faceset.progress import progress

if TYPE_CHECKING:
    from keras_faceset.embedder import FaceEmbedder

POOLINGS = ("mean", "norm_weighted", "best_frame")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pool_sets(
    embeddings, rows: Sequence[Sequence[int]], pooling: str = "mean", frame_weights=None
) -> np.ndarray:
    """Unit set embeddings (N, D) from raw frame embeddings `embeddings` (F, D).

    With `f_k = x_k / ‖x_k‖`: ``"mean"`` is `Σ f_k / K` (a NAN or QAN head at initialisation);
    ``"norm_weighted"`` weights `f_k` by the raw norm `‖x_k‖`, i.e. `Σ x_k` (the IJB-C template
    heuristic: a low-quality frame has a smaller descriptor); ``"best_frame"`` keeps the single
    `f_k` of largest `‖x_k‖`. Each result is L2-normalised. `frame_weights` (F,) >= 0, with
    ``"mean"``, weight each frame: `Σ w_k f_k`.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLINGS}")
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (F, D), got shape {embeddings.shape}")
    index, mask = pad_sets(rows)
    frames = embeddings[index]
    norms = np.linalg.norm(frames, axis=-1) * mask
    if pooling == "best_frame":
        return _unit(frames[np.arange(len(index)), np.argmax(norms, axis=1)])
    weights = mask if pooling == "mean" else norms
    if frame_weights is not None:
        if pooling != "mean":
            raise ValueError(f"frame_weights go with pooling 'mean', not {pooling!r}")
        weights = mask * np.asarray(frame_weights, np.float64)[index]
    return _unit(np.einsum("nt,ntd->nd", weights, _unit(frames)))


def set_verification(set_a, set_b, same, folds=10) -> dict[str, float]:
    """`verification_report` of the cosine similarity of paired unit set embeddings."""
    set_a, set_b = np.asarray(set_a), np.asarray(set_b)
    if set_a.shape != set_b.shape or set_a.ndim != 2:
        raise ValueError(
            f"set embeddings must be two (N, D) arrays, got {set_a.shape}, {set_b.shape}"
        )
    return verification_report(np.sum(set_a * set_b, axis=1), np.asarray(same), folds)


def weight_severity_spearman(weights, mask, severity) -> float:
    """Spearman correlation between frame weight relative to its set (`K a_k`, 1 = uniform)
    and the frame's degradation severity (0 for a clean frame), over every frame of every set
    of at least two frames."""
    weights, mask, severity = np.asarray(weights), np.asarray(mask, bool), np.asarray(severity)
    if not weights.shape == mask.shape == severity.shape:
        raise ValueError(
            f"weights {weights.shape}, mask {mask.shape} and severity {severity.shape} differ"
        )
    sizes = mask.sum(axis=1, keepdims=True)
    keep = mask & (sizes >= 2)
    relative = (weights * sizes)[keep]
    return float(np.corrcoef(_ranks(relative), _ranks(severity[keep]))[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as in Spearman's rho."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def lfw_sets_protocol_dir() -> Path:
    """The LFW-sets pair lists shipped in the package (``keras_faceset/zoo/protocols``)."""
    from keras_faceset.zoo.registry import PROTOCOLS

    return PROTOCOLS


def evaluate_lfw_sets(
    embedder: FaceEmbedder,
    data_dir: str | os.PathLike | None = None,
    variants: Sequence[str] = ("clean", "degraded"),
    protocol_dir: str | os.PathLike | None = None,
    cache_path: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LFW-sets verification (docs/lfw_sets.md) of a `FaceEmbedder`: (summary, scores).

    Every distinct frame of the chosen variants is decoded, degraded as the protocol says,
    cropped and embedded once (cached in the .npz `cache_path`, keyed by frame, when given).
    With ``align="preset"`` the face is detected in the *clean* image (chip cache) and the
    degraded frame is cropped with that box / those landmarks, as a tracker would give them;
    ``align="center"`` takes the central crop. Sets are embedded by `embedder.set_embeddings`
    (the head of a set preset, the mean of unit frame embeddings for an image preset) and
    scored by cosine similarity; metrics per variant by `set_verification` over the 10 folds.
    The summary has one row per variant (with ``weight_severity_spearman`` of a set preset on
    the degraded variant); scores has one row per pair (fold, same, names, score, distance,
    split = ``lfw_sets_<variant>``).
    """
    unknown = set(variants) - {"clean", "degraded"}
    if unknown or not variants:
        raise ValueError(f"unknown LFW-sets variants {sorted(unknown)}; use clean and/or degraded")
    protocol_dir = Path(protocol_dir) if protocol_dir else lfw_sets_protocol_dir()
    protocols = {}
    for variant in variants:
        path = protocol_dir / f"lfw_sets_{variant}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"LFW-sets pair list {path} not found (give --protocol-dir)")
        pairs = lfw_sets.load_protocol(path)
        protocols[variant] = (pairs, *lfw_sets.protocol_frames(pairs))
    lfw = LFW(data_dir)
    union = pd.concat([p[1] for p in protocols.values()]).drop_duplicates(ignore_index=True)
    start = time.perf_counter()
    table = _frame_table(embedder, union, lfw, cache_path)
    seconds = time.perf_counter() - start
    position = {key: i for i, key in enumerate(union.itertuples(index=False, name=None))}
    rows, scores = [], []
    for variant, (pairs, frames, rows_a, rows_b) in protocols.items():
        where = np.array([position[k] for k in frames.itertuples(index=False, name=None)])
        outputs = {key: value[where] for key, value in table.items()}
        (set_a, weights_a, mask_a), (set_b, weights_b, mask_b) = (
            embedder.set_embeddings(outputs, side) for side in (rows_a, rows_b)
        )
        report = set_verification(set_a, set_b, pairs["same"].to_numpy(), pairs["fold"].to_numpy())
        row = {
            "model": embedder.__name__,
            "protocol": f"lfw_sets_{variant}",
            "metric": "cosine",
            "pairs": len(pairs),
            "frames": len(frames),
            "embedding_dim": set_a.shape[1],
            **report,
        }
        if variant == "degraded" and embedder.takes_sets:
            severity = frames["severity"].to_numpy()
            width = max(mask_a.shape[1], mask_b.shape[1])
            weights, mask, sev = (
                np.concatenate([np.pad(x, [(0, 0), (0, width - x.shape[1])]) for x in parts])
                for parts in (
                    (weights_a, weights_b),
                    (mask_a, mask_b),
                    (severity[pad_sets(rows_a)[0]], severity[pad_sets(rows_b)[0]]),
                )
            )
            row["weight_severity_spearman"] = weight_severity_spearman(weights, mask, sev)
        rows.append({**row, "embed_seconds": seconds})
        score = np.sum(set_a * set_b, axis=1)
        scores.append(
            pairs[["fold", "same", "name_a", "name_b"]].assign(
                score=score, distance=1.0 - score, split=f"lfw_sets_{variant}"
            )
        )
    return pd.DataFrame(rows), pd.concat(scores, ignore_index=True)


def _frame_table(
    embedder: FaceEmbedder, frames: pd.DataFrame, lfw: LFW, cache_path
) -> dict[str, np.ndarray]:
    """`embedder.frame_outputs` of `protocol_frames`-style rows, through the frame cache, in
    batches of the embedder's batch size (one bar for the whole loop)."""
    batch_size = embedder.batch_size
    from keras_faceset.eval.lfw import _load_cache, _save_cache

    keys = ["|".join(map(str, key)) for key in frames.itertuples(index=False, name=None)]
    cache_key = f"lfw_sets frames | {embedder.frame_key}"
    cached = _load_cache(Path(cache_path), cache_key) if cache_path else {}
    todo = [i for i, key in enumerate(keys) if key not in cached]
    dim = embedder.head.dim
    if todo:
        like = None
        if embedder.align == "preset":  # detect in the clean images, once per path
            paths = sorted(set(frames["path"].iloc[todo]))
            aligned = embedder.align_faces([str(lfw.image_dir / p) for p in paths])
            index = {p: i for i, p in enumerate(paths)}
        batches = lfw_sets.frame_dataset(frames.iloc[todo], lfw, batch_size=batch_size)
        steps = zip(range(0, len(todo), batch_size), batches, strict=False)
        for start, batch in progress(steps, len(todo), "embedding LFW-sets frames", _batch_len):
            chunk = todo[start : start + batch_size]
            if embedder.align == "preset":
                like = aligned.take([index[frames["path"].iloc[i]] for i in chunk])
            out = embedder.frame_outputs(embedder.chips(list(batch.numpy()), like=like))
            joined = np.concatenate([out["frame_embeddings"], *_features(out)], axis=1)
            cached.update(zip((keys[i] for i in chunk), joined, strict=True))
        if cache_path:
            _save_cache(Path(cache_path), cache_key, cached)
    joined = np.stack([cached[key] for key in keys])
    table = {"frame_embeddings": joined[:, :dim]}
    if joined.shape[1] > dim:
        table["frame_features"] = joined[:, dim:]
    return table


def _batch_len(step: tuple) -> int:
    return len(step[1])


def _features(outputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The flattened frame features, if any (stored beside the embedding in the cache)."""
    features = outputs.get("frame_features")
    return [] if features is None else [features.reshape(len(features), -1)]

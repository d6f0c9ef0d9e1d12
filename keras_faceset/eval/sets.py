"""Set-to-set verification (e.g. LFW-sets): pool each set's frame embeddings, score pairs.

Frames are embedded once (one row per distinct frame); a set is a list of row indices into
that table (`keras_faceset.data.lfw_sets.protocol_frames`). A set embedding is either a fixed
pooling of the frames (`pool_sets`) or a trained set head's output (`head_sets`); pairs are
scored by the cosine of the two unit set embeddings (`set_verification`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from keras_faceset.eval.verification import verification_report

POOLINGS = ("mean", "norm_weighted", "best_frame")


def pad_sets(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Sets of row indices -> index array (N, T) (0 at padding) and bool mask (N, T)."""
    if len(rows) == 0:
        raise ValueError("no sets given")
    lengths = np.array([len(r) for r in rows])
    if lengths.min() < 1:
        raise ValueError(f"set {int(np.argmin(lengths))} is empty")
    mask = np.arange(lengths.max())[None, :] < lengths[:, None]
    index = np.zeros(mask.shape, np.int64)
    index[mask] = np.concatenate([np.asarray(r, np.int64) for r in rows])
    return index, mask


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pool_sets(embeddings, rows: Sequence[Sequence[int]], pooling: str = "mean") -> np.ndarray:
    """Unit set embeddings (N, D) from raw frame embeddings `embeddings` (F, D).

    With `f_k = x_k / ‖x_k‖`: ``"mean"`` is `Σ f_k / K` (a NAN or QAN head at initialisation);
    ``"norm_weighted"`` weights `f_k` by the raw norm `‖x_k‖`, i.e. `Σ x_k` (the IJB-C template
    heuristic: a low-quality frame has a smaller descriptor); ``"best_frame"`` keeps the single
    `f_k` of largest `‖x_k‖`. Each result is L2-normalised.
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
    return _unit(np.einsum("nt,ntd->nd", weights, _unit(frames)))


def head_sets(
    head: keras.Model,
    embeddings,
    rows: Sequence[Sequence[int]],
    features=None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A set head's (`NANHead`, `QANHead`, ...) unit set embeddings (N, D), per-frame
    weights (N, T) and mask (N, T); `features` (F, ...) feed ``"frame_features"``."""
    index, mask = pad_sets(rows)
    inputs = {"frame_embeddings": np.asarray(embeddings, np.float32)[index], "mask": mask}
    if "frame_features" in head.input:
        if features is None:
            raise ValueError(f"{head.name} takes frame_features; pass features")
        inputs["frame_features"] = np.asarray(features, np.float32)[index]
    outputs = head.predict(inputs, batch_size=batch_size, verbose=0)
    return np.asarray(outputs["embedding"]), np.asarray(outputs["weights"]), mask


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

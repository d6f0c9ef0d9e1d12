"""Batched set inference: sets as rows into a table of frames, padded, through a set head.

Frames are embedded once (one row per distinct frame, by a task's `frame_model`); a set is a list
of row indices into that table. `pad_sets` turns the sets into an index array and a mask, and
`head_sets` runs the head on the padded sets in batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np


def pad_sets(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Sets of row indices -> index array (N, T) (0 at padding) and bool mask (N, T)."""
    if len(rows) == 0:
        raise ValueError("no sets given")
    lengths = np.array([len(r) for r in rows])
    if lengths.min() < 1:
        raise ValueError(f"set {int(np.argmin(lengths))} is empty: every set needs a frame")
    mask = np.arange(lengths.max())[None, :] < lengths[:, None]
    index = np.zeros(mask.shape, np.int64)
    index[mask] = np.concatenate([np.asarray(r, np.int64) for r in rows])
    return index, mask


MAX_PADDED_FRAMES = 1 << 16
"""Padded frames (sets x longest set) per head batch in `head_sets`: bounds its memory."""


def _batches(order: np.ndarray, lengths: np.ndarray, batch_size: int):
    """Consecutive runs of `order` (sets sorted by length) of at most `batch_size` sets whose
    padded size, count x last length, stays within `MAX_PADDED_FRAMES` (one set at least)."""
    start = 0
    while start < len(order):
        stop = start + 1
        while (
            stop < len(order)
            and stop - start < batch_size
            and (stop - start + 1) * lengths[order[stop]] <= MAX_PADDED_FRAMES
        ):
            stop += 1
        yield order[start:stop]
        start = stop


def consecutive_rows(sizes: Sequence[int]) -> list[list[int]]:
    """The rows of sets of `sizes` frames stored one after another: [2, 1] -> [[0, 1], [2]]."""
    ends = np.cumsum(sizes)
    return [list(range(end - size, end)) for size, end in zip(sizes, ends, strict=True)]


def head_sets(
    head: keras.Model,
    embeddings,
    rows: Sequence[Sequence[int]],
    features=None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A set head's (`MeanHead`, `NANHead`, `QANHead`, ...) unit set embeddings (N, D),
    per-frame weights (N, T) and mask (N, T) of the sets `rows` of frame embeddings
    `embeddings` (F, dim); `features` (F, ...) feed ``"frame_features"``.

    Sets go through the head in order of length, at most `batch_size` sets and
    `MAX_PADDED_FRAMES` padded frames a batch (a longer set alone), each batch padded only to
    its own longest set: one long set does not pad every other one. A set using a
    NaN or infinite frame value is refused (ValueError naming it)."""
    _, mask = pad_sets(rows)
    embeddings = np.asarray(embeddings, np.float32)
    finite = np.isfinite(embeddings).reshape(len(embeddings), -1).all(axis=1)
    if "frame_features" in head.input:
        if features is None:
            raise ValueError(f"{head.name} takes frame_features; pass features")
        features = np.asarray(features, np.float32)
        finite &= np.isfinite(features).reshape(len(features), -1).all(axis=1)
    if not finite.all():
        bad = next(i for i, r in enumerate(rows) if not finite[np.asarray(r, np.int64)].all())
        raise ValueError(
            f"set {bad} has NaN or Inf in its frame embeddings or features: drop those frames"
        )
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out, weights = None, np.zeros(mask.shape, np.float32)
    for chunk in _batches(order, lengths, batch_size):
        index, chunk_mask = pad_sets([rows[i] for i in chunk])
        inputs = {"frame_embeddings": embeddings[index], "mask": chunk_mask}
        if "frame_features" in head.input:
            inputs["frame_features"] = features[index]
        outputs = head.predict_on_batch(inputs)
        if out is None:
            out = np.empty((len(rows), outputs["embedding"].shape[-1]), np.float32)
        out[chunk] = np.asarray(outputs["embedding"])
        weights[chunk, : chunk_mask.shape[1]] = np.asarray(outputs["weights"])
    return out, weights, mask

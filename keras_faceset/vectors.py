"""Unit vectors: the one place embeddings are normalised to length 1 outside a model graph
(the gallery's index and tracker, clustering, identification metrics)."""

from __future__ import annotations

import numpy as np


def unit_vectors(
    vectors, dim: int | None = None, name: str = "vectors", dtype=np.float32
) -> np.ndarray:
    """`vectors` (N, dim) as C-contiguous `dtype` rows ``v / ‖v‖`` (any width when `dim` is
    None); ValueError for a wrong shape, values that are not real numbers or not finite, or an
    all-zero row (each naming the rows)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or (dim is not None and vectors.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "2-D (N, dim)"
        raise ValueError(f"{name} must be {want}, got shape {vectors.shape}")
    if vectors.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {vectors.dtype}")
    vectors = vectors.astype(dtype, copy=False)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} hold NaN or infinite values (rows {_rows(bad)}): drop those")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        raise ValueError(f"{name} hold all-zero rows (rows {_rows(zero)}), which have no direction")
    return np.ascontiguousarray(vectors / norms)


def _rows(mask: np.ndarray, shown: int = 5) -> str:
    rows = np.flatnonzero(mask)
    text = ", ".join(map(str, rows[:shown]))
    return text + (f", ... ({len(rows)} in all)" if len(rows) > shown else "")

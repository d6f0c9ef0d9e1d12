"""Unit vectors: the one place embeddings are normalised to length 1 outside a model graph
(the gallery's index and tracker, clustering, identification metrics), and each embedding's
residual to its person's clean centre (the frame-precision targets and the residual oracle)."""

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


def clean_centre_residuals(
    frames: np.ndarray, frame_images: np.ndarray, clean: np.ndarray, image_people: np.ndarray
) -> np.ndarray:
    """Each frame's distance to its person's clean centre, `r_k = 1 − cos(f_k, c_k)` (F,):
    `f_k` a row of `frames` (F, D), `c_k` the mean of the unit `clean` embeddings (I, D; row i
    is image i's clean embedding) of the *other* images of the frame's person, `frame_images`
    (F,) the image index of each frame and `image_people` (I,) the person of each image. A
    clean frame's residual is its natural variation (pose, age, light); a degraded frame's adds
    the damage. For unit vectors `‖f − c/‖c‖‖² = 2 r`: a squared residual. ValueError when a
    frame's person has no other image."""
    unit = unit_vectors(frames, dtype=np.float64)
    clean_unit = unit_vectors(clean, dtype=np.float64, name="clean embeddings")
    frame_images = np.asarray(frame_images)
    people = np.unique(np.asarray(image_people), return_inverse=True)[1].reshape(-1)
    person_sums = np.zeros((people.max() + 1, unit.shape[1]))
    np.add.at(person_sums, people, clean_unit)
    centres = person_sums[people[frame_images]] - clean_unit[frame_images]
    norms = np.linalg.norm(centres, axis=1)
    if (norms == 0).any():
        raise ValueError("every frame's person needs a clean embedding of another image")
    return 1.0 - np.sum(unit * centres, axis=1) / norms


def _rows(mask: np.ndarray, shown: int = 5) -> str:
    rows = np.flatnonzero(mask)
    text = ", ".join(map(str, rows[:shown]))
    return text + (f", ... ({len(rows)} in all)" if len(rows) > shown else "")

"""Similarity transforms: Umeyama least squares and the bilinear warp that applies them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def umeyama(
    src: np.ndarray, dst: np.ndarray, weights: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """The 2x3 similarity ``dst ~ c R src + t`` minimising ``sum_i w_i |dst_i - c R src_i - t|^2``.

    Umeyama (1991) with weighted means: ``Sigma = sum_i w_i (y_i - mu_y)(x_i - mu_x)^T = U D V^T``
    (eq. 38, weights summing to 1), ``R = U S V^T`` with ``S = diag(1, det(U V^T))`` so that R is
    a rotation, never a reflection (eq. 39-40), ``c = tr(D S) / sigma_x^2`` (eq. 42) and
    ``t = mu_y - c R mu_x`` (eq. 41). Without `weights` all points count equally.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise ValueError(
            f"src and dst must both be (n, 2) point arrays, got {src.shape}, {dst.shape}"
        )
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("src and dst must be finite")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() == 0:
        raise ValueError(
            f"weights must be {len(src)} non-negative values, not all 0, got {weights}"
        )
    w = w / w.sum()
    mu_src, mu_dst = w @ src, w @ dst
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = w @ np.sum(src_c**2, axis=1)
    if var_src == 0:
        raise ValueError("the (positively weighted) source points all coincide")
    u, d, vt = np.linalg.svd((dst_c * w[:, None]).T @ src_c)
    s = np.array([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = (u * s) @ vt
    scale = np.sum(d * s) / var_src
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_dst - scale * rotation @ mu_src
    return matrix


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (n, 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 inverse of an invertible 2x3 affine matrix."""
    return np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size x size`` chip with ``chip[y, x] = image[M^-1 (x, y)]``, bilinear, black outside.

    Pixel centres sit at integer coordinates, as in dlib and OpenCV.
    """
    import cv2

    return cv2.warpAffine(
        np.ascontiguousarray(image),
        np.asarray(matrix, dtype=np.float64),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )

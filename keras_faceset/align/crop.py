"""The crops: facenet's box + margin, the five-point similarity warp, the centre fallback, and
`crop_face`, the one function that cuts a `CropSpec`'s chip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_faceset.align.transform import umeyama, warp_affine

if TYPE_CHECKING:
    from keras_faceset.align.spec import CropSpec


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` uint8 resize with PIL's bilinear filter (widened when downscaling), the
    `scipy.misc.imresize(..., interp="bilinear")` that facenet's alignment used."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def margin_box(box: Sequence[float], margin: float, shape: tuple[int, ...]) -> tuple[int, ...]:
    """facenet's crop rectangle (x0, y0, x1, y1): the box grown by ``margin / 2`` on each side,
    clipped to the image, truncated to integers as ``align_dataset_mtcnn.py`` does."""
    height, width = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    half = margin / 2.0
    return (
        int(max(x1 - half, 0.0)),
        int(max(y1 - half, 0.0)),
        int(min(x2 + half, width)),
        int(min(y2 + half, height)),
    )


def box_crop(image: np.ndarray, box: Sequence[float], margin: float, size: int) -> np.ndarray:
    """`image[y0:y1, x0:x1]` of `margin_box`, resized to ``size x size`` (not aspect-preserving,
    as in facenet). Raises ValueError when the rectangle is empty (a box outside the image)."""
    x0, y0, x1, y1 = margin_box(box, margin, image.shape)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {list(box)} does not overlap the {image.shape[:2]} image")
    return resize_bilinear(image[y0:y1, x0:x1], size)


def five_point_crop(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: np.ndarray,
    size: int,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Warp `image` by the (weighted) least-squares similarity taking `landmarks` to `template`."""
    return warp_affine(image, umeyama(landmarks, template, weights), size)


def centre_box(shape: tuple[int, ...], fraction: Sequence[float]) -> tuple[int, int, int, int]:
    """The central rectangle (x0, y0, x1, y1) of ``round(fw S) x round(fh S)`` pixels, S the
    shorter side (clipped to the image); an odd leftover puts the extra row / column at the
    bottom / right."""
    height, width = shape[:2]
    short = min(height, width)
    crop_w = max(1, min(width, round(fraction[0] * short)))
    crop_h = max(1, min(height, round(fraction[1] * short)))
    x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
    return x0, y0, x0 + crop_w, y0 + crop_h


def centre_crop(image: np.ndarray, fraction: Sequence[float], size: int) -> np.ndarray:
    """`centre_box` of the image resized to ``size x size`` (the no-face fallback)."""
    x0, y0, x1, y1 = centre_box(image.shape, fraction)
    return resize_bilinear(image[y0:y1, x0:x1], size)


def crop_face(
    image: np.ndarray,
    spec: CropSpec,
    box: Sequence[float] | None = None,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """The chip of `spec` from a face found at `box` (``mtcnn_box``) / `landmarks`
    (``five_point``), or, with neither, the centre crop of `spec.fallback_fraction`."""
    if box is None and landmarks is None:
        return centre_crop(image, spec.fallback_fraction, spec.size)
    if spec.method == "mtcnn_box":
        return box_crop(image, box, spec.margin, spec.size)
    return five_point_crop(image, landmarks, np.asarray(spec.template), spec.size, spec.weights)

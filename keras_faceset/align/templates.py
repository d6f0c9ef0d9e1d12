"""Five-point templates: where MTCNN's landmarks go in an aligned chip.

Rows are MTCNN's points in `keras_faceset.align.detect.LANDMARK_NAMES` order (left eye, right
eye, nose, left and right mouth corners, "left" meaning the image's left), columns are (x, y)
chip pixel coordinates with pixel centres at integers.
"""

from __future__ import annotations

import numpy as np

DLIB_SIZE = 150
DLIB_PADDING = 0.25

DLIB_150 = np.array(
    [
        [46.995, 44.818],
        [100.515, 44.690],
        [73.175, 76.698],
        [49.874, 103.795],
        [97.579, 103.723],
    ]
)
"""MTCNN's 5 points in dlib's 150x150 chip with padding 0.25 (`dlib.get_face_chip`).

Derived by ``zoo/derive_dlib_template.py``: on 299 LFW images (sorted paths[::44][:300], the
ones where both dlib and MTCNN find a face), MTCNN's landmarks mapped into each image's dlib chip
through dlib's exact chip map, averaged (reruns agree within 0.03 px). Spread (std per
coordinate, x / y, px): eyes 1.7-1.9 / 2.1-2.2, nose 5.7 / 4.5, mouth corners 4.7-5.0 / 6.1:
dlib places its chip by eye corners and the base of the nose, so MTCNN's nose tip and mouth
corners move against it with pose and expression.
"""

DLIB_WEIGHTS = (3.0, 3.0, 1.0, 0.0, 0.0)
"""Point weights for fitting `DLIB_150` (eyes, nose, mouth corners): chosen by the same script
as the weights giving the smallest RMS displacement from dlib's own chip on held-out images
(3.0 px over the chip vs 4.8 px for equal weights; on all 299: 2.8 vs 4.8 px, mean |chip -
dlib chip| 8.8 vs 13.4 uint8 levels, dlib descriptor distance 0.107 vs 0.142). Like dlib's
own fit, it ignores the mouth."""

ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
"""insightface's `arcface_dst` (``insightface/utils/face_align.py``) for 112x112 chips."""


def dlib_template(
    size: int = DLIB_SIZE,
    padding: float = DLIB_PADDING,
    base: np.ndarray = DLIB_150,
    base_size: int = DLIB_SIZE,
    base_padding: float = DLIB_PADDING,
) -> np.ndarray:
    """`base` (a template in a dlib chip of `base_size`, `base_padding`) moved to another chip.

    dlib's chip spans its mean face's unit square widened by `padding` on every side, pixel
    centres 0 .. size - 1: ``pixel = (u + padding) / (1 + 2 padding) * (size - 1)`` for the
    mean-face coordinate u, so the template is rescaled through u.
    """
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    unit = np.asarray(base, dtype=np.float64) / (base_size - 1) * (1 + 2 * base_padding)
    return (unit - base_padding + padding) / (1 + 2 * padding) * (size - 1)


def arcface_template(size: int = 112) -> np.ndarray:
    """`ARCFACE_112` scaled to a ``size x size`` chip (``arcface_dst * size / 112``)."""
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    return ARCFACE_112 * (size / 112.0)

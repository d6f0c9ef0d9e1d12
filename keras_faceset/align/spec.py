"""The crop spec: how a backbone's chip is cut from a photo (a preset's `crop_spec`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keras_faceset.align.templates import (
    DLIB_150,
    DLIB_PADDING,
    DLIB_SIZE,
    DLIB_WEIGHTS,
    arcface_template,
    dlib_template,
)

METHODS = ("mtcnn_box", "five_point")
BOX_FALLBACK = (0.49, 0.62)
"""`mtcnn_box` fallback crop (width, height) as fractions of the image's shorter side: the
median MTCNN box + 32 px margin on LFW (123 x 156 px of 250, ``zoo/derive_dlib_template.py``)."""
FIVE_POINT_FALLBACK = 0.47
"""`five_point` fallback square side as a fraction of the shorter side for dlib's 150 px chip
with padding 0.25: the median image extent of that chip on LFW (116 px of 250). Other templates
scale it by their eye distance (a chip with closer-set eyes covers more of the image)."""


@dataclass(frozen=True)
class CropSpec:
    """A validated crop: `method` ``"mtcnn_box"`` (the detected box grown by `margin` px in
    total, resized to `size`) or ``"five_point"`` (the similarity warp of the 5 landmarks to
    `template`, (5, 2) in the chip, weighted by `weights`); `fallback_fraction` (w, h) of the
    shorter side is the centre crop used when no face is found. Build it with `CropSpec.create`."""

    method: str
    size: int
    fallback_fraction: tuple[float, float]
    margin: float | None = None
    template: tuple[tuple[float, float], ...] | None = None
    weights: tuple[float, ...] | None = None

    @classmethod
    def create(
        cls,
        method: str = "mtcnn_box",
        size: int | None = None,
        margin: float | None = None,
        padding: float | None = None,
        template: str | np.ndarray | None = None,
        weights: Sequence[float] | None = None,
        fallback_fraction: float | tuple[float, float] | None = None,
    ) -> CropSpec:
        """Validate the options of `method` and fill in its defaults: ``"mtcnn_box"`` margin
        32 px, size 160 (facenet); ``"five_point"`` ``template="dlib"`` (size 150, padding 0.25,
        `DLIB_WEIGHTS`), ``"arcface"`` (insightface's 112 px) or a (5, 2) array in a chip of
        `size`."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        points = None
        if method == "mtcnn_box":
            for option, value in (
                ("padding", padding),
                ("template", template),
                ("weights", weights),
            ):
                if value is not None:
                    raise ValueError(f"{option} applies to method='five_point', not 'mtcnn_box'")
            size = 160 if size is None else size
            margin = 32.0 if margin is None else float(margin)
            if margin < 0:
                raise ValueError(f"margin must be non-negative pixels, got {margin}")
            fraction = BOX_FALLBACK if fallback_fraction is None else fallback_fraction
        else:
            if margin is not None:
                raise ValueError("margin applies to method='mtcnn_box', not 'five_point'")
            points, size, weights = _template(template, size, padding, weights)
            span = np.linalg.norm(points[1] - points[0]) / (size - 1)
            dlib_span = np.linalg.norm(DLIB_150[1] - DLIB_150[0]) / (DLIB_SIZE - 1)
            fraction = fallback_fraction
            if fraction is None:
                fraction = FIVE_POINT_FALLBACK * dlib_span / span
            points = tuple(tuple(p) for p in np.round(points, 4).tolist())
            weights = None if weights is None else tuple(float(w) for w in weights)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
            raise ValueError(f"size must be an int >= 2, got {size!r}")
        fraction = np.asarray(fraction, dtype=np.float64).reshape(-1)
        fraction = np.repeat(fraction, 2) if fraction.size == 1 else fraction
        if fraction.shape != (2,) or not np.all((fraction > 0) & (fraction <= 1)):
            raise ValueError(f"fallback_fraction must be in (0, 1], got {fallback_fraction!r}")
        return cls(method, int(size), tuple(fraction.tolist()), margin, points, weights)

    def as_dict(self) -> dict:
        """The settings as JSON-serialisable data (part of the chip cache key)."""
        if self.method == "mtcnn_box":
            settings = {"method": self.method, "margin": self.margin}
        else:
            weights = None if self.weights is None else list(self.weights)
            template = [list(p) for p in self.template]
            settings = {"method": self.method, "template": template, "weights": weights}
        return {**settings, "size": self.size, "fallback_fraction": list(self.fallback_fraction)}

    @property
    def description(self) -> str:
        """How a chip is made, in words."""
        if self.method == "mtcnn_box":
            return f"MTCNN box + {self.margin:g} px margin resized to {self.size}"
        return f"MTCNN 5-point similarity warp to a {self.size} px chip"


def _template(template, size, padding, weights):
    """(points, size, weights) of a five-point template name or array."""
    template = "dlib" if template is None else template
    if isinstance(template, str):
        if template == "dlib":
            size = DLIB_SIZE if size is None else size
            padding = DLIB_PADDING if padding is None else padding
            points = dlib_template(size, padding)
            weights = DLIB_WEIGHTS if weights is None else weights
        elif template == "arcface":
            if padding is not None:
                raise ValueError("padding applies to template='dlib' only")
            size = 112 if size is None else size
            points = arcface_template(size)
        else:
            raise ValueError(
                f"unknown template {template!r}; expected 'dlib', 'arcface' or an array"
            )
    else:
        if padding is not None:
            raise ValueError("padding applies to template='dlib' only")
        if size is None:
            raise ValueError("an array template needs the size of its chip")
        points = np.asarray(template, dtype=np.float64)
        if points.shape != (5, 2):
            raise ValueError(f"template must be (5, 2) chip coordinates, got {points.shape}")
    if weights is not None and len(weights) != 5:
        raise ValueError(f"weights must be 5 values, got {weights!r}")
    return points, size, weights

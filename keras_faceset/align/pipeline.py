"""`align_faces`: detect, choose one face, crop it the way a backbone's weights expect."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keras_faceset.align.cache import ChipCache, settings_key
from keras_faceset.align.crop import box_crop, centre_box, centre_crop, five_point_crop
from keras_faceset.align.detect import Detections, MtcnnDetector, select_face
from keras_faceset.align.templates import (
    DLIB_150,
    DLIB_PADDING,
    DLIB_SIZE,
    DLIB_WEIGHTS,
    arcface_template,
    dlib_template,
)

METHODS = ("mtcnn_box", "five_point")
CACHE_VERSION = 1
"""Part of every cache key: bump it when a change to the code changes the chips."""

BOX_FALLBACK = (0.49, 0.62)
"""`mtcnn_box` fallback crop (width, height) as fractions of the image's shorter side: the
median MTCNN box + 32 px margin on LFW (123 x 156 px of 250, ``zoo/derive_dlib_template.py``)."""
FIVE_POINT_FALLBACK = 0.47
"""`five_point` fallback square side as a fraction of the shorter side for dlib's 150 px chip
with padding 0.25: the median image extent of that chip on LFW (116 px of 250). Other templates
scale it by their eye distance (a chip with closer-set eyes covers more of the image)."""
CHUNK = 256
"""Images decoded and detected at a time (bounds memory on a large list of paths)."""

ImageInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class AlignedBatch:
    """Aligned chips and, per image, what was found.

    chips: uint8 (N, size, size, 3) RGB. boxes: float32 (N, 4) x1, y1, x2, y2 of the chosen face
    (of the centre crop for a fallback). landmarks: float32 (N, 5, 2) MTCNN points (NaN for a
    fallback). confidence: float32 (N,) MTCNN's score (0 for a fallback). fallback: bool (N,),
    True when no face was found and the centre crop was used. names: the paths, or
    ``"<array i>"`` for arrays.
    """

    chips: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    confidence: np.ndarray
    fallback: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def fallback_names(self) -> list[str]:
        return [name for name, used in zip(self.names, self.fallback, strict=True) if used]


@functools.cache
def default_detector() -> MtcnnDetector:
    """The process-wide detector `align_faces` uses when none is passed (built once)."""
    return MtcnnDetector()


def align_faces(
    images: Sequence[ImageInput] | np.ndarray,
    method: str = "mtcnn_box",
    size: int | None = None,
    margin: float | None = None,
    padding: float | None = None,
    template: str | np.ndarray | None = None,
    weights: Sequence[float] | None = None,
    fallback_fraction: float | tuple[float, float] | None = None,
    detector: MtcnnDetector | None = None,
    cache: ChipCache | str | os.PathLike | None = None,
) -> AlignedBatch:
    """Detect the face in each image with MTCNN and crop it for a backbone.

    `images` is a list of paths and/or arrays ((H, W), (H, W, 1|3|4), uint8 or uint16), or an
    (N, H, W, C) array; files are decoded by `keras_faceset.data.images.load_image`. Same-size
    images are detected in batches. Of several faces, `select_face` keeps the largest, penalised
    by its distance from the centre. ``align_faces(paths, **preset.crop)`` reproduces a preset's
    crop. Methods:

    - ``"mtcnn_box"`` (facenet): the box grown by ``margin / 2`` px per side (default 32 px in
      total), clipped to the image, resized to ``size`` (default 160) with PIL's bilinear filter
      -- davidsandberg/facenet's ``align_dataset_mtcnn.py``, no rotation.
    - ``"five_point"``: the least-squares similarity (`umeyama`, weighted by `weights`) taking
      the 5 landmarks to `template`, bilinear warp. ``template="dlib"`` (default; ``size`` 150,
      ``padding`` 0.25 as in ``dlib.get_face_chip``) uses MTCNN's points measured in dlib's chips
      with `DLIB_WEIGHTS`; ``"arcface"`` is insightface's 112 px template; an array is a (5, 2)
      template in the chip of `size`.

    With no face, the chip is a centre crop (`fallback_fraction` (w, h) of the shorter side,
    default `BOX_FALLBACK` / `FIVE_POINT_FALLBACK`) and ``fallback`` is True. With `cache` (a
    `ChipCache` or a folder), chips are stored and reused, keyed by the file's sha256 and the
    settings; a hit neither decodes nor detects.
    """
    settings = _settings(method, size, margin, padding, template, weights, fallback_fraction)
    detector = detector if detector is not None else default_detector()
    if cache is not None and not isinstance(cache, ChipCache):
        cache = ChipCache(cache)
    items = _as_items(images)
    names = [_name(item, index) for index, item in enumerate(items)]
    key_settings = {**settings, "detector": detector.config, "version": CACHE_VERSION}
    key = settings_key(key_settings)
    records: list[dict | None] = [None] * len(items)
    if cache is not None:
        hashes = [_content_hash(item, name) for item, name in zip(items, names, strict=True)]
        records = [cache.load(digest, key) for digest in hashes]
    misses = [index for index, record in enumerate(records) if record is None]
    for start in range(0, len(misses), CHUNK):
        chunk = misses[start : start + CHUNK]
        decoded = [_decode(items[index], names[index]) for index in chunk]
        for index, image, found in zip(chunk, decoded, detector.detect(decoded), strict=True):
            records[index] = _align_one(image, found, settings)
            if cache is not None:
                cache.save(hashes[index], key, records[index], key_settings)
    return AlignedBatch(
        chips=np.stack([r["chip"] for r in records]).astype(np.uint8),
        boxes=np.stack([r["box"] for r in records]).astype(np.float32),
        landmarks=np.stack([r["landmarks"] for r in records]).astype(np.float32),
        confidence=np.array([r["confidence"] for r in records], dtype=np.float32),
        fallback=np.array([r["fallback"] for r in records], dtype=bool),
        names=names,
    )


def _settings(method, size, margin, padding, template, weights, fallback_fraction) -> dict:
    """Validate the options of `method` and fill in its defaults (JSON-serialisable)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if method == "mtcnn_box":
        for option, value in (("padding", padding), ("template", template), ("weights", weights)):
            if value is not None:
                raise ValueError(f"{option} applies to method='five_point', not 'mtcnn_box'")
        size = 160 if size is None else size
        margin = 32.0 if margin is None else float(margin)
        if margin < 0:
            raise ValueError(f"margin must be non-negative pixels, got {margin}")
        fraction = BOX_FALLBACK if fallback_fraction is None else fallback_fraction
        settings = {"method": method, "margin": margin}
    else:
        if margin is not None:
            raise ValueError("margin applies to method='mtcnn_box', not 'five_point'")
        points, size, weights = _template(template, size, padding, weights)
        span = np.linalg.norm(points[1] - points[0]) / (size - 1)
        dlib_span = np.linalg.norm(DLIB_150[1] - DLIB_150[0]) / (DLIB_SIZE - 1)
        fraction = fallback_fraction
        if fraction is None:
            fraction = FIVE_POINT_FALLBACK * dlib_span / span
        settings = {
            "method": method,
            "template": np.round(points, 4).tolist(),
            "weights": None if weights is None else [float(w) for w in weights],
        }
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    fraction = np.asarray(fraction, dtype=np.float64).reshape(-1)
    fraction = np.repeat(fraction, 2) if fraction.size == 1 else fraction
    if fraction.shape != (2,) or not np.all((fraction > 0) & (fraction <= 1)):
        raise ValueError(f"fallback_fraction must be in (0, 1], got {fallback_fraction!r}")
    return {**settings, "size": int(size), "fallback_fraction": fraction.tolist()}


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


def _align_one(image: np.ndarray, found: Detections, settings: dict) -> dict[str, np.ndarray]:
    size = settings["size"]
    if len(found) == 0:
        return {
            "chip": centre_crop(image, settings["fallback_fraction"], size),
            "box": np.array(centre_box(image.shape, settings["fallback_fraction"]), np.float32),
            "landmarks": np.full((5, 2), np.nan, np.float32),
            "confidence": np.float32(0.0),
            "fallback": np.bool_(True),
        }
    choice = select_face(found.boxes, image.shape)
    if settings["method"] == "mtcnn_box":
        chip = box_crop(image, found.boxes[choice], settings["margin"], size)
    else:
        template = np.asarray(settings["template"])
        chip = five_point_crop(image, found.landmarks[choice], template, size, settings["weights"])
    return {
        "chip": chip,
        "box": found.boxes[choice],
        "landmarks": found.landmarks[choice],
        "confidence": found.scores[choice],
        "fallback": np.bool_(False),
    }


def _as_items(images) -> list:
    if isinstance(images, (str, os.PathLike)):
        raise ValueError("images must be a list of paths or arrays; got a single path")
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(
                f"an array of images must be (N, H, W, C), got shape {images.shape}; "
                "pass a list to give one image"
            )
        return list(images)
    items = list(images)
    if not items:
        raise ValueError("images is empty")
    for index, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike, np.ndarray)):
            raise ValueError(f"image {index} must be a path or a numpy array, got {type(item)}")
    return items


def _name(item, index: int) -> str:
    return f"<array {index}>" if isinstance(item, np.ndarray) else os.fspath(item)


def _content_hash(item, name: str) -> str:
    digest = hashlib.sha256()
    if isinstance(item, np.ndarray):
        digest.update(f"{item.dtype.str}{item.shape}".encode())
        digest.update(np.ascontiguousarray(item).tobytes())
        return digest.hexdigest()
    if not os.path.isfile(name):
        raise FileNotFoundError(f"image file not found: {name}")
    with open(name, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decode(item, name: str) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return to_rgb_uint8(item, name)
    from keras_faceset.data.images import load_image

    return load_image(name).numpy()


def to_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a gray (H, W) / (H, W, 1), RGB or RGBA (alpha dropped) array of
    uint8 or uint16 (scaled by 255 / 65535); other dtypes raise ValueError naming `name`."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 (or uint16) pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected (H, W), (H, W, 1|3|4), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])

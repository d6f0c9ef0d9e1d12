"""`align_faces`: detect, choose one face, crop it the way a backbone's weights expect;
`find_faces`: every face of each image, cropped the same way."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keras_faceset.align.cache import ChipCache, settings_key
from keras_faceset.align.crop import centre_box, crop_face
from keras_faceset.align.detect import Detections, MtcnnDetector, select_face
from keras_faceset.align.spec import CropSpec
from keras_faceset.progress import progress

CACHE_VERSION = 2
"""Part of every cache key: bump it when a change to the code changes the chips."""

CHUNK = 256
"""Images decoded and detected at a time (bounds memory on a large list of paths)."""

ImageInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class AlignedBatch:
    """Aligned chips and, per image, what was found.

    chips: uint8 (N, size, size, 3) RGB. boxes: float32 (N, 4) x1, y1, x2, y2 of the chosen face
    (of the centre crop for a fallback). landmarks: float32 (N, 5, 2) MTCNN points (NaN for a
    fallback). confidence: float32 (N,) MTCNN's score (0 for a fallback). fallback: bool (N,),
    True when no face was found and the centre crop was used. face_count: int32 (N,), the faces
    MTCNN found in the image (the chosen one is `select_face`'s). names: the paths, or
    ``"<array i>"`` for arrays.
    """

    chips: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    confidence: np.ndarray
    fallback: np.ndarray
    face_count: np.ndarray
    names: list[str]

    ARRAYS = ("chips", "boxes", "landmarks", "confidence", "fallback", "face_count")

    def __len__(self) -> int:
        return len(self.names)

    def take(self, index: Sequence[int]) -> AlignedBatch:
        """The alignments of images `index` (e.g. the `like` of `crop_like`)."""
        index = np.asarray(index, np.int64)
        arrays = {key: getattr(self, key)[index] for key in self.ARRAYS}
        return AlignedBatch(**arrays, names=[self.names[i] for i in index])

    @classmethod
    def concatenate(cls, parts: Sequence[AlignedBatch]) -> AlignedBatch:
        """One batch of the images of `parts`, in order."""
        arrays = {key: np.concatenate([getattr(p, key) for p in parts]) for key in cls.ARRAYS}
        return cls(**arrays, names=[name for part in parts for name in part.names])

    @property
    def fallback_names(self) -> list[str]:
        return [name for name, used in zip(self.names, self.fallback, strict=True) if used]


@functools.cache
def default_detector(backend: str = "graph") -> MtcnnDetector:
    """The process-wide detector of `backend` that `align_faces` and `find_faces` use when none
    is passed (built once)."""
    return MtcnnDetector(backend=backend)


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
    spec = CropSpec.create(method, size, margin, padding, template, weights, fallback_fraction)
    detector = detector if detector is not None else default_detector()
    if cache is not None and not isinstance(cache, ChipCache):
        cache = ChipCache(cache)
    items = image_list(images)
    names = [_name(item, index) for index, item in enumerate(items)]
    key_settings = {**spec.as_dict(), "detector": detector.config, "version": CACHE_VERSION}
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
            records[index] = _align_one(image, found, spec)
            if cache is not None:
                cache.save(hashes[index], key, records[index], key_settings)
    return AlignedBatch(
        chips=np.stack([r["chip"] for r in records]).astype(np.uint8),
        boxes=np.stack([r["box"] for r in records]).astype(np.float32),
        landmarks=np.stack([r["landmarks"] for r in records]).astype(np.float32),
        confidence=np.array([r["confidence"] for r in records], dtype=np.float32),
        fallback=np.array([r["fallback"] for r in records], dtype=bool),
        face_count=np.array([r["face_count"] for r in records], dtype=np.int32),
        names=names,
    )


@dataclass(frozen=True)
class FoundFaces:
    """Every face found in a list of images, one row per face, largest first within an image.

    image: int64 (F,) which image each face is in. chips: uint8 (F, size, size, 3). boxes:
    float32 (F, 4) x1, y1, x2, y2. landmarks: float32 (F, 5, 2). scores: float32 (F,) the
    detector's. face_count: int32 (N,) the faces of each image (0: none found, no row)."""

    image: np.ndarray
    chips: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    face_count: np.ndarray

    def __len__(self) -> int:
        return len(self.image)


def find_faces(
    images: Sequence[ImageInput] | np.ndarray,
    spec: CropSpec,
    detector: MtcnnDetector | None = None,
    max_faces: int | None = None,
) -> FoundFaces:
    """Detect every face of each image (the `max_faces` largest, if given) and crop each as
    `spec` says (`crop_face`, as `align_faces` crops the chosen one). An image without a face
    has no row; nothing is cropped from its centre."""
    if max_faces is not None and (isinstance(max_faces, bool) or int(max_faces) < 1):
        raise ValueError(f"max_faces must be a positive int or None, got {max_faces!r}")
    detector = detector if detector is not None else default_detector()
    items = image_list(images)
    rows: dict[str, list] = {key: [] for key in ("image", "chips", "boxes", "landmarks")}
    rows["scores"], counts = [], []
    starts = range(0, len(items), CHUNK)
    for start in progress(starts, len(items), "detecting", lambda s: min(CHUNK, len(items) - s)):
        chunk = range(start, min(start + CHUNK, len(items)))
        decoded = [_decode(items[i], _name(items[i], i)) for i in chunk]
        for index, image, found in zip(chunk, decoded, detector.detect(decoded), strict=True):
            area = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
            keep = np.argsort(-area, kind="stable")[:max_faces]
            counts.append(len(keep))
            for face in keep:
                box, landmarks = found.boxes[face], found.landmarks[face]
                rows["image"].append(index)
                rows["chips"].append(crop_face(image, spec, box, landmarks))
                rows["boxes"].append(box)
                rows["landmarks"].append(landmarks)
                rows["scores"].append(found.scores[face])
    size = spec.size
    return FoundFaces(
        image=np.array(rows["image"], np.int64),
        chips=np.array(rows["chips"], np.uint8).reshape(-1, size, size, 3),
        boxes=np.array(rows["boxes"], np.float32).reshape(-1, 4),
        landmarks=np.array(rows["landmarks"], np.float32).reshape(-1, 5, 2),
        scores=np.array(rows["scores"], np.float32),
        face_count=np.array(counts, np.int32),
    )


def _align_one(image: np.ndarray, found: Detections, spec: CropSpec) -> dict[str, np.ndarray]:
    if len(found) == 0:
        return {
            "chip": crop_face(image, spec),
            "box": np.array(centre_box(image.shape, spec.fallback_fraction), np.float32),
            "landmarks": np.full((5, 2), np.nan, np.float32),
            "confidence": np.float32(0.0),
            "fallback": np.bool_(True),
            "face_count": np.int32(0),
        }
    choice = select_face(found.boxes, image.shape)
    box, landmarks = found.boxes[choice], found.landmarks[choice]
    return {
        "chip": crop_face(image, spec, box, landmarks),
        "box": box,
        "landmarks": landmarks,
        "confidence": found.scores[choice],
        "fallback": np.bool_(False),
        "face_count": np.int32(len(found)),
    }


def crop_like(
    images: Sequence[np.ndarray], like: AlignedBatch | None, spec: CropSpec
) -> np.ndarray:
    """uint8 chips of `images` cut where the faces of `like` were found (no detection), image i
    with ``like``'s alignment i: e.g. a degraded copy of a photo cropped with the clean photo's
    landmarks. A fallback of `like`, or no `like` at all, gives the centre crop."""
    if like is not None and len(like) != len(images):
        raise ValueError(f"{len(images)} images but {len(like)} alignments in like")
    chips = []
    for i, image in enumerate(images):
        found = () if like is None or like.fallback[i] else (like.boxes[i], like.landmarks[i])
        chips.append(crop_face(to_rgb_uint8(image), spec, *found))
    return np.stack(chips).astype(np.uint8)


def image_list(images) -> list:
    """`images` (a list of paths and/or arrays, or an (N, H, W, C) array) as a list; a single
    path or image is a ValueError saying to pass a list."""
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

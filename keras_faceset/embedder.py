"""Face images in, L2-normalised embeddings out: a preset's backbone fed the crop it was trained on.

`FaceEmbedder` is what the CLI and the LFW evaluation use. ``align="preset"`` detects the face
with MTCNN and crops it as the preset's `crop` says (FaceNet: box + 32 px margin; dlib: 5-point
similarity warp); ``align="center"`` skips detection and takes the fixed central crop that the
alignment module uses when it finds no face (for images that are already roughly centred).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_faceset import zoo
from keras_faceset.align.pipeline import AlignedBatch, ImageInput
from keras_faceset.models.fold import fold_batch_norm
from keras_faceset.models.task import frame_inputs_model
from keras_faceset.progress import progress

ALIGNMENTS = ("preset", "center")
PRECISIONS = ("float32", "bfloat16")
"""`precision="bfloat16"`: batch norm folded and bfloat16 compute (`fold_batch_norm(...,
dtype="mixed_bfloat16")`), ~1.9x images/s at batch 32 on CPUs with AVX512_BF16, LFW View 2
unchanged (docs/performance.md); slower at batch 1."""
ARRAYS = ("chips", "boxes", "landmarks", "confidence", "fallback")
"""The per-image arrays of an `AlignedBatch`."""


class FaceEmbedder:
    """Embed face images (paths or uint8 RGB arrays) and sets of them with a zoo preset.

    Also a NumPy callable ``(N, H, W, 3) uint8 -> (N, D)`` (`embed_images`), so it plugs into
    `keras_faceset.eval.evaluate_lfw` as the model. `fallbacks` counts the images in which
    alignment found no face and used the central crop. For a set preset (nan, qan, ...), `embed`
    gives its backbone's frame embeddings, `embed_sets` the head's set embeddings with per-frame
    weights, and `embed_images` each image as a set of one frame. An image preset embeds a set
    as the normalised mean of its unit frame embeddings (uniform weights). Loops over more than
    one chunk show a `keras_faceset.progress` bar on stderr.
    """

    def __init__(
        self,
        model: str = "dlib_resnet",
        align: str = "preset",
        weights: str | os.PathLike | None = "pretrained",
        chip_cache: str | os.PathLike | None = None,
        batch_size: int = 32,
        flip: bool = False,
        precision: str = "float32",
    ):
        if align not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {align!r}; expected one of {ALIGNMENTS}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        self.preset = zoo.get_preset(model)
        if flip and self.preset.head:
            raise ValueError(f"--flip applies to image presets; {model} is a set model")
        self.align = align
        self.chip_cache = chip_cache
        self.batch_size = batch_size
        self.flip = flip
        self.set_model = zoo.load(model, weights=weights) if self.preset.head else None
        self.model = self.set_model.backbone if self.set_model else zoo.load(model, weights)
        self.head = self.set_model.head if self.set_model else None
        self.frame_model = frame_inputs_model(self.model, self.head and self.head.feature_shape)
        if precision == "bfloat16":
            self.frame_model = fold_batch_norm(self.frame_model, dtype="mixed_bfloat16")
        self.fallbacks = 0
        self.__name__ = f"{model}[{self.description}]"

    @property
    def frame_key(self) -> str:
        """What the frame outputs depend on: backbone preset, crop, flip and head features
        (presets with the same key, e.g. nan and nan1, can share cached frame outputs)."""
        backbone = self.preset.head.backbone_preset if self.head else self.preset.name
        features = self.head.feature_shape if self.head else None
        return f"{backbone} | {self.description}" + (f" | features {features}" if features else "")

    @property
    def description(self) -> str:
        crop = self.preset.crop
        if self.align == "center":
            text = f"central crop (no detection) resized to {crop['size']}"
        elif crop["method"] == "mtcnn_box":
            text = f"MTCNN box + {crop['margin']} px margin resized to {crop['size']}"
        else:
            text = f"MTCNN 5-point similarity warp to dlib's {crop['size']} px chip"
        return text + (", + mirrored chip" if self.flip else "")

    def align_faces(self, images: Sequence[ImageInput] | np.ndarray) -> AlignedBatch:
        """`keras_faceset.align.align_faces` with the preset's crop and chip cache, in chunks
        (with a progress bar); adds the fallbacks to `fallbacks`."""
        from keras_faceset.align import align_faces
        from keras_faceset.align.pipeline import CHUNK

        chunks = [images[i : i + CHUNK] for i in range(0, len(images), CHUNK)]
        parts = [
            align_faces(chunk, **self.preset.crop, cache=self.chip_cache)
            for chunk in progress(chunks, len(images), "aligning", weight=len)
        ]
        aligned = AlignedBatch(
            **{key: np.concatenate([getattr(part, key) for part in parts]) for key in ARRAYS},
            names=[name for part in parts for name in part.names],
        )
        self.fallbacks += int(aligned.fallback.sum())
        return aligned

    def chips(
        self, images: Sequence[ImageInput] | np.ndarray, like: AlignedBatch | None = None
    ) -> np.ndarray:
        """uint8 (N, size, size, 3) crops for the backbone.

        With `like`, image i is cropped where the face of ``like`` image i was found (no
        detection): e.g. a degraded copy of an image cropped with the clean image's landmarks.
        """
        from keras_faceset.align import to_rgb_uint8
        from keras_faceset.data.images import load_image

        if self.align == "preset" and like is None:
            return self.align_faces(images).chips
        decoded = [
            to_rgb_uint8(item) if isinstance(item, np.ndarray) else load_image(item).numpy()
            for item in images
        ]
        if like is not None and len(like) != len(decoded):
            raise ValueError(f"{len(decoded)} images but {len(like)} alignments in like")
        return np.stack([self._crop(image, like, i) for i, image in enumerate(decoded)])

    def _crop(self, image: np.ndarray, like: AlignedBatch | None, i: int) -> np.ndarray:
        from keras_faceset.align import box_crop, centre_crop, dlib_template, five_point_crop
        from keras_faceset.align.pipeline import BOX_FALLBACK, FIVE_POINT_FALLBACK
        from keras_faceset.align.templates import DLIB_WEIGHTS

        crop = self.preset.crop
        if self.align == "center" or like is None or like.fallback[i]:
            box = crop["method"] == "mtcnn_box"
            fraction = BOX_FALLBACK if box else (FIVE_POINT_FALLBACK,) * 2
            return centre_crop(image, fraction, crop["size"])
        if crop["method"] == "mtcnn_box":
            return box_crop(image, like.boxes[i], crop["margin"], crop["size"])
        template = dlib_template(crop["size"], crop["padding"])
        return five_point_crop(image, like.landmarks[i], template, crop["size"], DLIB_WEIGHTS)

    def frame_outputs(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        """Backbone outputs of uint8 chips (N, size, size, 3), in batches: "frame_embeddings"
        (N, D), raw (with `flip`, plus the mirrored chip's), and "frame_features" when the head
        takes them."""
        chips = np.asarray(chips)
        size, outputs = self.batch_size, {}
        batches = range(0, len(chips), size)
        steps = progress(
            batches, len(chips), "embedding", lambda start: min(size, len(chips) - start)
        )
        for start in steps:
            batch = chips[start : start + size].astype("float32")
            out = self.frame_model.predict_on_batch(batch)
            if self.flip:
                mirrored = self.frame_model.predict_on_batch(batch[:, :, ::-1])
                out = {key: out[key] + mirrored[key] for key in out}
            for key, value in out.items():
                outputs.setdefault(key, []).append(np.asarray(value, "float32"))
        return {key: np.concatenate(value) for key, value in outputs.items()}

    def embed(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """L2-normalised float32 (N, D) embeddings of the backbone (frame embeddings).

        With `flip`, the embedding of the chip and of its mirror image are summed before
        normalisation (test-time augmentation, as facenet's `validate_on_lfw --use_flipped_images`).
        """
        return _unit(self.frame_outputs(self.chips(images))["frame_embeddings"])

    def set_embeddings(
        self, frames: dict[str, np.ndarray], rows: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Set embeddings (N, D), per-frame weights (N, T) and mask (N, T) from `frame_outputs`
        `frames` and each set's rows into them: the head's, or for an image preset the
        normalised mean of the unit frame embeddings (weights 1/K)."""
        from keras_faceset.eval.sets import head_sets, pad_sets, pool_sets

        embeddings = frames["frame_embeddings"]
        if self.head is not None:
            features = frames.get("frame_features")
            return head_sets(self.head, embeddings, rows, features, self.batch_size)
        _, mask = pad_sets(rows)
        weights = mask / mask.sum(axis=1, keepdims=True)
        return pool_sets(embeddings, rows, "mean").astype("float32"), weights, mask

    def embed_sets(
        self, sets: Sequence[Sequence[ImageInput]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Sets of images -> their unit embeddings (N, D) and each set's frame weights (T_i,),
        which sum to 1. All frames are aligned and embedded together."""
        sizes = [len(frames) for frames in sets]
        if not sets or min(sizes) < 1:
            raise ValueError("give at least one set, each of at least one frame")
        chips = self.chips([frame for frames in sets for frame in frames])
        ends = np.cumsum(sizes)
        rows = [list(range(end - size, end)) for size, end in zip(sizes, ends, strict=True)]
        embeddings, weights, _ = self.set_embeddings(self.frame_outputs(chips), rows)
        return embeddings, [w[:size] for w, size in zip(weights, sizes, strict=True)]

    def embed_set(self, images: Sequence[ImageInput] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One set of frames -> (its L2-normalised embedding (D,), per-frame weights (T,))."""
        embeddings, weights = self.embed_sets([list(images)])
        return embeddings[0], weights[0]

    def embed_images(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """One unit embedding per image (N, D): `embed` for an image preset; for a set preset
        each image is a set of one frame (the head's output)."""
        if self.head is None:
            return self.embed(images)
        frames = self.frame_outputs(self.chips(images))
        return self.set_embeddings(frames, [[i] for i in range(len(images))])[0]

    __call__ = embed_images


def take_aligned(aligned: AlignedBatch, index: Sequence[int]) -> AlignedBatch:
    """The alignments of images `index` of `aligned` (e.g. to pass as `FaceEmbedder.chips`'s
    `like`)."""
    return dataclasses.replace(
        aligned,
        **{key: getattr(aligned, key)[np.asarray(index, np.int64)] for key in ARRAYS},
        names=[aligned.names[i] for i in index],
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype("float32")


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos between rows of L2-normalised embeddings (0 = same direction, 2 = opposite)."""
    return 1.0 - np.sum(np.asarray(a) * np.asarray(b), axis=-1)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
Frame = str | tuple[str, int]
"""An image path, or (video path, frame index)."""


def image_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their images (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{item} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist")
    return paths


def input_sets(
    inputs: Sequence[str | os.PathLike], max_frames: int | None = 16
) -> list[tuple[str, list[Frame]]]:
    """Each input as a named set of frames: a folder -> its images (`image_paths`), a video ->
    `max_frames` frames sampled evenly (`keras_faceset.data.folders.even_indices`), an image ->
    a set of one frame."""
    from keras_faceset.data.folders import VIDEO_EXTENSIONS, even_indices, video_frame_count

    sets: list[tuple[str, list[Frame]]] = []
    for item in map(Path, inputs):
        if item.is_file() and item.suffix.lower() in VIDEO_EXTENSIONS:
            indices = even_indices(video_frame_count(item), max_frames)
            if not indices:
                raise ValueError(f"{item} has no frames")
            sets.append((str(item), [(str(item), i) for i in indices]))
        else:
            sets.append((str(item), [str(p) for p in image_paths([item])]))
    return sets


def set_inputs(frames: Sequence[Frame]) -> list[ImageInput]:
    """A set's frames as `FaceEmbedder` inputs: image paths as they are (the chip cache keys
    files), video frames decoded to arrays."""
    from keras_faceset.data.folders import load_frames

    if all(isinstance(frame, str) for frame in frames):
        return list(frames)
    return list(load_frames(frames))


def frame_label(frame: Frame) -> str:
    """A frame's name in outputs: its path, or ``video.mp4#12`` for frame 12 of a video."""
    return frame if isinstance(frame, str) else f"{frame[0]}#{frame[1]}"

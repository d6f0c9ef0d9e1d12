"""Face images in, L2-normalised embeddings out: a preset's backbone fed the crop it was trained on.

`FaceEmbedder` is what the CLI and the LFW evaluation use. ``align="preset"`` detects the face
with MTCNN and crops it as the preset's `crop` says (FaceNet: box + 32 px margin; dlib: 5-point
similarity warp); ``align="center"`` skips detection and takes the fixed central crop that the
alignment module uses when it finds no face (for images that are already roughly centred).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_faceset import zoo

ALIGNMENTS = ("preset", "center")


class FaceEmbedder:
    """Embed face images (paths or uint8 RGB arrays) with a zoo preset.

    Also a NumPy callable ``(N, H, W, 3) uint8 -> (N, D)``, so it plugs into
    `keras_faceset.eval.evaluate_lfw` as the model. `fallbacks` counts the images in which
    alignment found no face and used the central crop. For a set preset (nan, qan), `embed`
    gives its backbone's frame embeddings and `embed_set` the set embedding with per-frame
    weights.
    """

    def __init__(
        self,
        model: str = "dlib_resnet",
        align: str = "preset",
        weights: str | os.PathLike | None = "pretrained",
        chip_cache: str | os.PathLike | None = None,
        batch_size: int = 32,
        flip: bool = False,
    ):
        if align not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {align!r}; expected one of {ALIGNMENTS}")
        self.preset = zoo.get_preset(model)
        self.align = align
        self.chip_cache = chip_cache
        self.batch_size = batch_size
        self.flip = flip
        self.set_model = zoo.load(model, weights=weights) if self.preset.head else None
        self.model = self.set_model.backbone if self.set_model else zoo.load(model, weights)
        self.fallbacks = 0
        self.__name__ = f"{model}[{self.description}]"

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

    def chips(self, images: Sequence[str | os.PathLike | np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, 3) crops for the backbone."""
        from keras_faceset.align import align_faces, centre_crop, to_rgb_uint8
        from keras_faceset.align.pipeline import BOX_FALLBACK, FIVE_POINT_FALLBACK
        from keras_faceset.data.images import load_image

        crop = self.preset.crop
        if self.align == "preset":
            aligned = align_faces(images, **crop, cache=self.chip_cache)
            self.fallbacks += int(aligned.fallback.sum())
            return aligned.chips
        fraction = BOX_FALLBACK if crop["method"] == "mtcnn_box" else (FIVE_POINT_FALLBACK,) * 2
        decoded = (
            to_rgb_uint8(item) if isinstance(item, np.ndarray) else load_image(item).numpy()
            for item in images
        )
        return np.stack([centre_crop(image, fraction, crop["size"]) for image in decoded])

    def embed(self, images: Sequence[str | os.PathLike | np.ndarray] | np.ndarray) -> np.ndarray:
        """L2-normalised float32 (N, D) embeddings.

        With `flip`, the embedding of the chip and of its mirror image are summed before
        normalisation (test-time augmentation, as facenet's `validate_on_lfw --use_flipped_images`).
        """
        chips = self.chips(images).astype("float32")
        raw = self.model.predict(chips, batch_size=self.batch_size, verbose=0)
        if self.flip:
            raw = raw + self.model.predict(chips[:, :, ::-1], batch_size=self.batch_size, verbose=0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype("float32")

    __call__ = embed

    def embed_set(
        self, images: Sequence[str | os.PathLike | np.ndarray] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One set of frames -> (its L2-normalised embedding (D,), per-frame weights (T,))."""
        if self.set_model is None:
            raise ValueError(f"{self.preset.name} is an image model; use a set preset (nan, qan)")
        chips = self.chips(images).astype("float32")[None]
        out = self.set_model.predict(
            {"images": chips, "mask": np.ones(chips.shape[:2], bool)}, verbose=0
        )
        return out["embedding"][0], out["weights"][0]


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos between rows of L2-normalised embeddings (0 = same direction, 2 = opposite)."""
    return 1.0 - np.sum(np.asarray(a) * np.asarray(b), axis=-1)



IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


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

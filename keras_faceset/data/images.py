"""Image decoding, center crop + resize, and a deterministic tf.data pipeline over file paths."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def decode_bytes(data: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG, PNG, GIF or BMP bytes as a uint8 (H, W, 3) image, in the graph (JPEG with
    libjpeg's default integer DCT, the one PIL uses)."""
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of encoded image bytes; 1 (as stored) without one. Only
    the EXIF block read with the header is looked at (JPEG APP1, PNG eXIf before the pixels),
    so nothing is decoded twice."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            block = image.info.get("exif")
            if not block:
                return 1
            exif = Image.Exif()
            exif.load(block)
            orientation = int(exif.get(0x0112, 1))
    except Exception:  # not an image PIL reads, or a damaged EXIF block: pixels as stored
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _turns(image: tf.Tensor) -> list:
    """The 8 EXIF orientations (1-8) undone, as `PIL.ImageOps.exif_transpose` does: 2 mirrored,
    3 rotated 180, 4 flipped, 5 transposed, 6 turned 90 clockwise, 7 transversed, 8 turned 90
    counter-clockwise."""
    return [
        lambda: image,
        lambda: tf.image.flip_left_right(image),
        lambda: tf.image.rot90(image, 2),
        lambda: tf.image.flip_up_down(image),
        lambda: tf.image.transpose(image),
        lambda: tf.image.rot90(image, 3),
        lambda: tf.image.rot90(tf.image.transpose(image), 2),
        lambda: tf.image.rot90(image, 1),
    ]


def load_image(path: str | os.PathLike | tf.Tensor) -> tf.Tensor:
    """Decode a JPEG/PNG/BMP/GIF file to a uint8 RGB tensor of shape (H, W, 3), upright.

    Grayscale is repeated to 3 channels, CMYK converted to RGB, an alpha channel is dropped, and
    a GIF gives its first frame. An EXIF orientation tag (a phone photo taken sideways) is
    applied, as `PIL.ImageOps.exif_transpose` and image viewers do. JPEGs use the accurate
    integer IDCT, so pixels equal PIL's (TensorFlow's default fast IDCT is off by a few levels,
    tens on noisy images). A Python path raises `FileNotFoundError`, `PermissionError` or
    `ValueError` naming the file when it is missing, unreadable or cannot be decoded (e.g. a
    truncated JPEG); a string tensor (inside `tf.data`) raises TensorFlow's errors.
    """
    if isinstance(path, tf.Tensor):
        data = tf.io.read_file(path)
        orientation = tf.numpy_function(
            lambda encoded: np.int32(_exif_orientation(encoded)), [data], tf.int32, stateful=False
        )
        upright = tf.switch_case(orientation - 1, _turns(decode_bytes(data)))
        upright.set_shape([None, None, 3])
        return upright
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"image file not found: {name}")
    try:
        data = Path(name).read_bytes()
    except PermissionError as err:
        raise PermissionError(
            err.errno, f"cannot read image {name}: permission denied; make it readable"
        ) from err
    try:
        image = decode_bytes(tf.constant(data))
    except tf.errors.OpError as err:
        reason = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:.*$", "", err.message).strip()
        raise ValueError(f"cannot decode image {name}: {reason}") from err
    return _turns(image)[_exif_orientation(data) - 1]()


def _crop_side(crop_size: int | float, height, width):
    """Side of the central square: `crop_size` pixels, or that fraction of min(H, W), rounded."""
    if isinstance(crop_size, (bool, np.bool_)) or not isinstance(
        crop_size, (int, float, np.integer, np.floating)
    ):
        raise ValueError(
            f"crop_size must be an int (pixels) or a float in (0, 1], got {crop_size!r}"
        )
    if isinstance(crop_size, (int, np.integer)):
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        return tf.constant(int(crop_size))
    if not 0.0 < crop_size <= 1.0:
        raise ValueError(f"a float crop_size is a fraction in (0, 1], got {crop_size}")
    short = tf.cast(tf.minimum(height, width), tf.float64)
    return tf.maximum(tf.cast(tf.round(short * float(crop_size)), tf.int32), 1)


def _check_output_size(output_size: int) -> None:
    if isinstance(output_size, (bool, np.bool_)) or not isinstance(output_size, (int, np.integer)):
        raise ValueError(f"output_size must be an int, got {output_size!r}")
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")


def center_crop_resize(
    image: tf.Tensor | np.ndarray, crop_size: int | float, output_size: int
) -> tf.Tensor:
    """Crop the central square of `image` and resize it to ``output_size x output_size``.

    `image` is (H, W, C) or a batch (N, H, W, C) of any real dtype. The crop side is
    ``s = crop_size`` pixels for an int, or ``s = round(crop_size * min(H, W))`` for a float
    fraction; its top-left corner is ``((H - s) // 2, (W - s) // 2)``, so an odd margin leaves
    the extra row/column at the bottom/right. The square is then resized with
    ``tf.image.resize(method="bilinear", antialias=True)`` (half-pixel centres; a triangle
    filter widened by the downscale factor, so downsizing averages rather than aliases).
    Returns float32 in the input's value range (not rounded). A crop larger than the image
    raises `ValueError` (`tf.errors.InvalidArgumentError` at run time for unknown shapes).
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank not in (3, 4):
        raise ValueError(f"image must be (H, W, C) or (N, H, W, C), got shape {image.shape}")
    _check_output_size(output_size)
    height, width = tf.shape(image)[-3], tf.shape(image)[-2]
    side = _crop_side(crop_size, height, width)
    static_h, static_w = image.shape[-3], image.shape[-2]
    if isinstance(crop_size, (int, np.integer)) and None not in (static_h, static_w):
        if crop_size > min(static_h, static_w):
            raise ValueError(f"crop_size {crop_size} exceeds the {static_h}x{static_w} image")
    with tf.control_dependencies(
        [
            tf.debugging.assert_less_equal(
                side, tf.minimum(height, width), message="crop_size exceeds the image size"
            )
        ]
    ):
        top, left = (height - side) // 2, (width - side) // 2
    crop = image[..., top : top + side, left : left + side, :]
    return tf.image.resize(
        tf.cast(crop, tf.float32), (output_size, output_size), method="bilinear", antialias=True
    )


class CenterCropResize:
    """Preprocessing callable ``uint8 image -> center_crop_resize(...) * scale + offset``.

    E.g. ``CenterCropResize(150, 112, scale=1 / 128, offset=-127.5 / 128)`` maps a 250x250 LFW
    image to a 112x112 float image in [-1, 1]. `description` spells the exact transformation
    (reported by `keras_faceset.eval.lfw.evaluate_lfw`).
    """

    def __init__(
        self, crop_size: int | float, output_size: int, scale: float = 1.0, offset: float = 0.0
    ):
        _crop_side(crop_size, 1, 1)  # validates the type and range
        _check_output_size(output_size)
        self.crop_size = crop_size
        self.output_size = output_size
        self.scale = float(scale)
        self.offset = float(offset)

    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        resized = center_crop_resize(image, self.crop_size, self.output_size)
        return resized * self.scale + self.offset

    @property
    def description(self) -> str:
        crop = (
            f"{self.crop_size} px"
            if isinstance(self.crop_size, (int, np.integer))
            else f"{self.crop_size:g} of the short side"
        )
        text = (
            f"center crop {crop}, bilinear antialiased resize to "
            f"{self.output_size}x{self.output_size}"
        )
        if (self.scale, self.offset) != (1.0, 0.0):
            text += f", x * {self.scale:g} + {self.offset:g}"
        return text

    def __repr__(self) -> str:
        return (
            f"CenterCropResize(crop_size={self.crop_size!r}, output_size={self.output_size}, "
            f"scale={self.scale:g}, offset={self.offset:g})"
        )


def image_dataset(
    paths: Sequence[str | os.PathLike],
    preprocess_fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
    batch_size: int = 32,
    num_parallel_calls: int = AUTOTUNE,
) -> tf.data.Dataset:
    """Batches of ``preprocess_fn(load_image(path))`` in the order of `paths`, prefetched.

    Decoding runs in parallel but the output order is deterministic. Without `preprocess_fn` the
    uint8 images must all have the same size. Missing files raise `FileNotFoundError` here,
    naming them; a file that exists but cannot be decoded fails when iterating (use
    `load_image` on the batch's paths to name it, as `keras_faceset.eval.lfw.embed_paths` does).
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise FileNotFoundError(f"image file not found: {missing[0]}{more}")

    def load(path):
        image = load_image(path)
        return image if preprocess_fn is None else preprocess_fn(image)

    dataset = tf.data.Dataset.from_tensor_slices(paths)
    dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.batch(batch_size).prefetch(AUTOTUNE)

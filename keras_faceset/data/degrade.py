"""Image degradations with a severity in [0, 1] and stateless seeds, for robustness and set studies.

Each degradation maps a uint8 or float (0..255) RGB image (H, W, 3), or a batch (N, H, W, 3), to
an image of the same shape and dtype. Severity 0 returns the input unchanged (exactly); severity 1
is the strongest setting below. Randomness comes only from `seed`, a shape-(2,) integer tensor fed
to `tf.random.stateless_*`, so the same (image, severity, seed) gives the same pixels bit for bit,
eagerly or inside `tf.data.Dataset.map`. Frames of a batch draw independent random values.

========== ============================================================= ====================
kind       severity s in (0, 1]                                           random (from seed)
========== ============================================================= ====================
blur       Gaussian blur, sigma = 4 s px (separable, reflect padding)     -
noise      additive Gaussian noise, std = 0.15 * 255 s                    the noise
occlusion  rectangle of area 0.5 s * H * W, gray (128) or uniform noise   aspect, place, fill
downscale  bilinear (antialiased) down to 8^-s of the size, bilinear up   -
jpeg       JPEG re-encoding at quality round(95 - 90 s)                   -
gamma      255 (x / 255)^g with g = 3^(+s) (darker) or 3^(-s) (brighter) the direction
========== ============================================================= ====================

Sizes are absolute pixels: LFW's 250x250 images are degraded before a 150 px centre crop, so the
blur sigma is 4 px on the chip. Floats are clipped to [0, 255]; uint8 results are rounded. JPEG
is not differentiable, works on the uint8-rounded image and already re-encodes at quality 95 for
s just above 0 (every other kind tends to the identity as s -> 0). The occlusion rectangle's
top-left corner is u * (H - h, W - w) for a seeded u, so for one seed a larger rectangle contains
the smaller one; the damage (e.g. PSNR loss) grows with severity for every kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

KINDS = ("blur", "noise", "occlusion", "downscale", "jpeg", "gamma")
MAX_BLUR_SIGMA = 4.0
MAX_NOISE_STD = 0.15 * 255.0
MAX_OCCLUSION_AREA = 0.5
OCCLUSION_GRAY = 128.0
MAX_OCCLUSION_ASPECT = 2.0
MIN_SCALE = 1.0 / 8.0
JPEG_QUALITY_RANGE = (95, 5)
MAX_GAMMA = 3.0

Image = tf.Tensor | np.ndarray
Severity = float | tf.Tensor
Seed = Sequence[int] | tf.Tensor | np.ndarray


def _check_image(image: tf.Tensor) -> None:
    if image.shape.rank not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) or (N, H, W, 3), got shape {image.shape}")
    if image.dtype != tf.uint8 and not image.dtype.is_floating:
        raise ValueError(f"image must be uint8 or float (0..255), got dtype {image.dtype.name}")


def _severity(severity: Severity) -> tf.Tensor:
    if isinstance(severity, (bool, np.bool_)):
        raise ValueError(f"severity must be a number in [0, 1], got {severity!r}")
    if isinstance(severity, (int, float, np.integer, np.floating)):
        if not 0.0 <= float(severity) <= 1.0:
            raise ValueError(f"severity must be in [0, 1], got {severity}")
    severity = tf.convert_to_tensor(severity)
    real = severity.dtype.is_floating or severity.dtype.is_integer
    if severity.shape.rank != 0 or not real:
        raise ValueError(
            f"severity must be a real scalar, got {severity.dtype.name} {severity.shape}"
        )
    return tf.cast(severity, tf.float32)


def _seed(seed: Seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] not in (2, None):
        raise ValueError(
            f"seed must be an integer tensor of shape (2,), got {seed.dtype.name}{seed.shape}"
        )
    return tf.cast(seed, tf.int64)


def frame_seed(seed: Seed, index: int | tf.Tensor) -> tf.Tensor:
    """The seed of frame `index` of a batch: `stateless_fold_in(seed, index)` with int64 data."""
    return tf.random.experimental.stateless_fold_in(_seed(seed), tf.cast(index, tf.int64))


def _split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def _to_dtype(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    x = tf.clip_by_value(x, 0.0, 255.0)
    return tf.cast(tf.round(x) if dtype == tf.uint8 else x, dtype)


def _blur(x: tf.Tensor, s: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    sigma = tf.maximum(s * MAX_BLUR_SIGMA, 1e-3)
    radius = tf.cast(tf.math.ceil(3.0 * sigma), tf.int32)
    taps = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = tf.tile((kernel / tf.reduce_sum(kernel))[:, None, None], [1, 3, 1])  # (k, 3, 1)
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    strides = [1, 1, 1, 1]
    rows = tf.nn.depthwise_conv2d(padded, kernel[:, None], strides, "VALID")
    return tf.nn.depthwise_conv2d(rows, kernel[None], strides, "VALID")


def _noise(x: tf.Tensor, s: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return x + s * MAX_NOISE_STD * tf.random.stateless_normal(tf.shape(x), seed)


def _occlusion(x: tf.Tensor, s: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(x)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    place_seed, fill_seed = _split(seed, 2)
    u = tf.random.stateless_uniform([shape[0], 4], place_seed)  # aspect, top, left, fill kind
    aspect = tf.exp((2.0 * u[:, 0] - 1.0) * math.log(MAX_OCCLUSION_ASPECT))  # h / w
    area = MAX_OCCLUSION_AREA * s * height * width
    h = tf.minimum(height, tf.sqrt(area * aspect))
    w = tf.minimum(width, area / h)
    # top = u (H - h): a larger rectangle for the same u contains the smaller one.
    top, left = u[:, 1] * (height - h), u[:, 2] * (width - w)
    rows = tf.range(height)[None, :, None] + 0.5
    cols = tf.range(width)[None, None, :] + 0.5
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + w)[:, None, None])
    )[..., None]
    noise = tf.random.stateless_uniform(shape, fill_seed, maxval=255.0)
    fill = tf.where(u[:, 3, None, None, None] < 0.5, OCCLUSION_GRAY, noise)
    return tf.where(inside, fill, x)


def _downscale(x: tf.Tensor, s: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    size = tf.shape(x)[1:3]
    factor = tf.pow(MIN_SCALE, s)
    small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32), 1)
    down = tf.image.resize(x, small, method="bilinear", antialias=True)
    return tf.image.resize(down, size, method="bilinear")


def _jpeg(x: tf.Tensor, s: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    best, worst = JPEG_QUALITY_RANGE
    quality = tf.cast(tf.round(best - (best - worst) * s), tf.int32)
    encoded = tf.map_fn(
        lambda frame: tf.image.adjust_jpeg_quality(frame, quality),
        _to_dtype(x, tf.uint8),
        fn_output_signature=tf.uint8,
    )
    return tf.cast(encoded, tf.float32)


def _gamma(x: tf.Tensor, s: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    darker = tf.random.stateless_uniform([tf.shape(x)[0]], seed) < 0.5
    exponent = tf.pow(MAX_GAMMA, tf.where(darker, s, -s))[:, None, None, None]
    return 255.0 * tf.pow(x / 255.0, exponent)


_OPS: dict[str, Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "blur": _blur,
    "noise": _noise,
    "occlusion": _occlusion,
    "downscale": _downscale,
    "jpeg": _jpeg,
    "gamma": _gamma,
}


def _apply(op: Callable, image: tf.Tensor, severity: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`op` on the float32 batch of `image`, back to its rank and dtype; identity when s == 0."""
    batch = image if image.shape.rank == 4 else image[None]

    def degraded():
        return _to_dtype(op(tf.cast(batch, tf.float32), severity, seed), image.dtype)

    out = tf.cond(severity > 0.0, degraded, lambda: batch)
    out = tf.ensure_shape(out, batch.shape)
    return out if image.shape.rank == 4 else out[0]


def _kind_index(kind: str) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; expected one of {list(KINDS)}")
    return KINDS.index(kind)


def _apply_id(image: tf.Tensor, kind_id: tf.Tensor, severity: tf.Tensor, seed: tf.Tensor):
    """`_apply` with the kind chosen at run time by an int32 index into `KINDS`."""
    message = f"degradation kind index must be in [0, {len(KINDS)})"
    checks = [
        tf.debugging.assert_non_negative(kind_id, message=message),
        tf.debugging.assert_less(kind_id, len(KINDS), message=message),
    ]
    with tf.control_dependencies(checks):
        kind_id = tf.identity(kind_id)
    branches = [lambda op=_OPS[name]: _apply(op, image, severity, seed) for name in KINDS]
    return tf.ensure_shape(tf.switch_case(kind_id, branches), image.shape)


def degrade(
    image: Image, kind: str | tf.Tensor, severity: Severity, seed: Seed = (0, 0)
) -> tf.Tensor:
    """Apply degradation `kind` at `severity` in [0, 1] with stateless `seed`.

    `kind` is a name from `KINDS`, or an integer tensor indexing `KINDS` (picked at run time,
    e.g. read from a protocol table inside `tf.data`; the result is the same).
    """
    image = tf.convert_to_tensor(image)
    _check_image(image)
    severity, seed = _severity(severity), _seed(seed)
    if isinstance(kind, str):
        return _apply(_OPS[KINDS[_kind_index(kind)]], image, severity, seed)
    kind = tf.convert_to_tensor(kind)
    if not kind.dtype.is_integer or kind.shape.rank != 0:
        raise ValueError(f"kind must be a name or an integer scalar, got {kind.dtype.name}")
    return _apply_id(image, tf.cast(kind, tf.int32), severity, seed)


def random_degradation(
    image: Image,
    seed: Seed,
    severity: Severity | None = None,
    kinds: Sequence[str] = KINDS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Degrade with a kind drawn uniformly from `kinds` and (if None) a severity ~ U[0, 1).

    Returns ``(image, kind_id, severity)``: `kind_id` indexes `KINDS` (int32), severity is
    float32; scalars for one image, shape (N,) for a batch, where frame i uses the seed
    ``frame_seed(seed, i)`` (so it equals degrading that frame alone with that seed). Each
    frame's seed is split into a kind, a severity and an operation seed.
    """
    if isinstance(kinds, str) or not kinds:
        raise ValueError(f"kinds must be a non-empty sequence of names from {list(KINDS)}")
    kind_ids = tf.constant([_kind_index(kind) for kind in kinds], tf.int32)
    image = tf.convert_to_tensor(image)
    _check_image(image)
    seed = _seed(seed)
    fixed = None if severity is None else _severity(severity)

    def one(frame: tf.Tensor, own_seed: tf.Tensor):
        kind_seed, severity_seed, op_seed = _split(own_seed, 3)
        pick = tf.random.stateless_uniform(
            [], kind_seed, minval=0, maxval=len(kinds), dtype=tf.int32
        )
        s = tf.random.stateless_uniform([], severity_seed) if fixed is None else fixed
        kind_id = tf.gather(kind_ids, pick)
        return _apply_id(frame, kind_id, s, op_seed), kind_id, s

    if image.shape.rank == 3:
        return one(image, seed)
    indices = tf.range(tf.shape(image, out_type=tf.int64)[0])
    return tf.map_fn(
        lambda args: one(args[0], frame_seed(seed, args[1])),
        (image, indices),
        fn_output_signature=(
            tf.TensorSpec(image.shape[1:], image.dtype),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.float32),
        ),
    )

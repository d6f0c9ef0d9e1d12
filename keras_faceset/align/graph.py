"""Alignment in TensorFlow ops: `FaceChips` cuts `crop_face`'s chips inside a graph.

The chips match `keras_faceset.align.crop_face` (same `CropSpec`, same geometry): ``mtcnn_box``
and the centre fallback are PIL's bilinear resize of the same integer rectangle (a triangle
filter widened when downscaling, its fixed-point weights, horizontal pass first, each pass
rounded to uint8 levels; Pillow 13 runs the vertical pass first for some shapes, where about a
fifth of the pixels then differ by one level);
``five_point`` warps by the same least-squares similarity with `ImageProjectiveTransformV3`
(bilinear, pixel centres at integers, 0 outside the image, as ``cv2.warpAffine``). Every op
runs under `tf.function` on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_faceset.align.spec import CropSpec


def similarity_to_template(
    landmarks: tf.Tensor,
    template: np.ndarray | Sequence[Sequence[float]],
    weights: Sequence[float] | None = None,
) -> tf.Tensor:
    """The (N, 2, 3) similarities ``template ~ c R x + t`` of (N, K, 2) `landmarks` x, as
    `keras_faceset.align.umeyama`, in closed form.

    In 2-D the weighted least squares over ``c R = [[p, -q], [q, p]]`` is linear: with the
    weighted centred points s (landmarks) and d (template), ``p = sum_i w_i s_i . d_i / v``,
    ``q = sum_i w_i s_i x d_i / v``, ``v = sum_i w_i |s_i|^2`` and ``t = mu_d - c R mu_s``;
    ``c = sqrt(p^2 + q^2)`` equals Umeyama's ``tr(D S) / sigma^2`` (eq. 42), so the fit is a
    rotation, never a reflection. Computed in float64; returned in the landmarks' float dtype
    (float32 for other dtypes). Coincident landmarks (v = 0) give non-finite matrices.
    """
    landmarks = tf.convert_to_tensor(landmarks)
    dtype = landmarks.dtype if landmarks.dtype.is_floating else tf.float32
    points = np.asarray(template, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"template must be (K, 2) points, got shape {points.shape}")
    _check_shape("landmarks", landmarks, ("N", len(points), 2), "similarity_to_template")
    w = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(points),) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() == 0:
        raise ValueError(
            f"weights must be {len(points)} non-negative values, not all 0, got {weights}"
        )
    w = w / w.sum()
    source = tf.cast(landmarks, tf.float64)
    mean_source = tf.einsum("k,nkd->nd", w, source)
    mean_target = w @ points
    s = source - mean_source[:, None, :]
    d = tf.constant(points - mean_target)
    variance = tf.einsum("k,nk->n", w, tf.reduce_sum(s**2, axis=-1))
    dot = tf.einsum("k,nk->n", w, s[..., 0] * d[:, 0] + s[..., 1] * d[:, 1])
    cross = tf.einsum("k,nk->n", w, s[..., 0] * d[:, 1] - s[..., 1] * d[:, 0])
    p, q = dot / variance, cross / variance
    rotation = tf.reshape(tf.stack([p, -q, q, p], axis=-1), (-1, 2, 2))
    shift = mean_target - tf.einsum("nij,nj->ni", rotation, mean_source)
    return tf.cast(tf.concat([rotation, shift[..., None]], axis=-1), dtype)


def margin_rects(
    boxes: tf.Tensor, margin: float, heights: tf.Tensor, widths: tf.Tensor
) -> tf.Tensor:
    """`keras_faceset.align.crop.margin_box` of (N, 4) x1, y1, x2, y2 `boxes` in images of
    `heights` x `widths` (N,): int32 (N, 4) x0, y0, x1, y1 (empty where a box misses its image)."""
    boxes = tf.cast(boxes, tf.float64)
    half = float(margin) / 2.0
    x0 = tf.maximum(boxes[:, 0] - half, 0.0)
    y0 = tf.maximum(boxes[:, 1] - half, 0.0)
    x1 = tf.minimum(boxes[:, 2] + half, tf.cast(widths, tf.float64))
    y1 = tf.minimum(boxes[:, 3] + half, tf.cast(heights, tf.float64))
    # int() truncates towards 0, as the cast does; clip first so that no value overflows int32
    limit = float(np.iinfo(np.int32).max)
    rect = tf.clip_by_value(tf.stack([x0, y0, x1, y1], axis=-1), -limit, limit)
    return tf.cast(rect, tf.int32)


def centre_rects(heights: tf.Tensor, widths: tf.Tensor, fraction: Sequence[float]) -> tf.Tensor:
    """`keras_faceset.align.crop.centre_box` of images of `heights` x `widths` (N,): int32
    (N, 4) x0, y0, x1, y1 of the central ``round(fw S) x round(fh S)`` rectangle."""
    heights, widths = tf.cast(heights, tf.int32), tf.cast(widths, tf.int32)
    short = tf.cast(tf.minimum(heights, widths), tf.float64)
    # tf.round rounds halves to even, as Python's round()
    crop_w = tf.clip_by_value(tf.cast(tf.round(fraction[0] * short), tf.int32), 1, widths)
    crop_h = tf.clip_by_value(tf.cast(tf.round(fraction[1] * short), tf.int32), 1, heights)
    x0, y0 = (widths - crop_w) // 2, (heights - crop_h) // 2
    return tf.stack([x0, y0, x0 + crop_w, y0 + crop_h], axis=-1)


def _windows(images, image_index, sizes, x0, y0, width, height) -> tf.Tensor:
    """float32 (N, height, width, C) pixels of image `image_index[n]` from (x0[n], y0[n]);
    0 outside the image's true size `sizes[image_index[n]]` (height, width)."""
    rows = y0[:, None] + tf.range(height)[None]
    cols = x0[:, None] + tf.range(width)[None]
    face_sizes = tf.gather(sizes, image_index)
    inside = ((rows >= 0) & (rows < face_sizes[:, :1]))[:, :, None, None] & (
        (cols >= 0) & (cols < face_sizes[:, 1:])
    )[:, None, :, None]
    shape = tf.shape(images)
    rows = tf.clip_by_value(rows, 0, shape[1] - 1)
    cols = tf.clip_by_value(cols, 0, shape[2] - 1)
    # two gathers of whole rows then columns: much faster than one gather_nd of every pixel
    flat = tf.reshape(images, (-1, shape[2], shape[3]))
    pixels = tf.gather(flat, image_index[:, None] * shape[1] + rows)
    pixels = tf.cast(tf.gather(pixels, cols, axis=2, batch_dims=1), tf.float32)
    return tf.where(inside, pixels, 0.0)


def _resample(values: tf.Tensor, lengths: tf.Tensor, size: int) -> tf.Tensor:
    """Axis 1 of float32 `values` (N, L, M) resampled from its first `lengths` (N,) entries
    to `size` (N, size, M) by PIL's bilinear filter (``Resample.c``'s ``precompute_coeffs``).

    Output i is centred at ``c = (i + 0.5) s`` (``s = length / size``) and weighs source j by
    the triangle ``max(0, 1 - |j + 0.5 - c| / max(s, 1))``, normalised over ``j < length``, in
    PIL's 8-bit fixed point (units of 2^-22, exact in float32); only the ``2 ceil(max(s, 1)) + 1``
    taps from ``floor(c - max(s, 1) + 0.5)`` can be non-zero, so they are gathered as rows.
    """
    lengths = tf.cast(lengths, tf.float64)
    scale = lengths / size
    support = tf.maximum(scale, 1.0)[:, None, None]
    widest = tf.maximum(tf.reduce_max(support), 1.0)  # 1 for no faces
    taps = 2 * tf.cast(tf.math.ceil(widest), tf.int32) + 1
    centre = ((tf.range(size, dtype=tf.float64) + 0.5)[None] * scale[:, None])[..., None]
    first = tf.maximum(tf.floor(centre - support + 0.5), 0.0)
    source = first + tf.cast(tf.range(taps), tf.float64)
    weights = tf.maximum(1.0 - tf.abs(source + 0.5 - centre) / support, 0.0)
    weights = tf.where(source < lengths[:, None, None], weights, 0.0)
    weights = weights / tf.reduce_sum(weights, axis=-1, keepdims=True)
    weights = tf.cast(tf.floor(weights * 2.0**22 + 0.5) / 2.0**22, tf.float32)
    last = tf.cast(tf.shape(values)[1] - 1, tf.float64)
    rows = tf.gather(values, tf.cast(tf.minimum(source, last), tf.int32), axis=1, batch_dims=1)
    return tf.einsum("nsk,nskm->nsm", weights, rows)


def _to_levels(values: tf.Tensor) -> tf.Tensor:
    """Round half up to uint8 levels 0..255 (PIL's and OpenCV's fixed-point rounding)."""
    return tf.clip_by_value(tf.floor(values + 0.5), 0.0, 255.0)


def resize_rects(
    images: tf.Tensor, image_index: tf.Tensor, rects: tf.Tensor, size: int, sizes: tf.Tensor
) -> tf.Tensor:
    """`keras_faceset.align.crop.resize_bilinear` of each face's int32 rectangle `rects`
    (N, 4) x0, y0, x1, y1 (non-empty, inside its image of true height, width `sizes` (B, 2)):
    float32 (N, size, size, C) levels."""
    x0, y0 = rects[:, 0], rects[:, 1]
    widths, heights = rects[:, 2] - x0, rects[:, 3] - y0
    window_w = tf.maximum(tf.reduce_max(widths), 1)
    window_h = tf.maximum(tf.reduce_max(heights), 1)
    pixels = _windows(images, image_index, sizes, x0, y0, window_w, window_h)
    faces, channels = tf.shape(pixels)[0], tf.shape(pixels)[3]
    # horizontal pass first (as PIL), each on whole rows of a (N, length, rest) layout
    columns = tf.reshape(tf.transpose(pixels, [0, 2, 1, 3]), (faces, window_w, -1))
    across = _to_levels(_resample(columns, widths, size))
    across = tf.reshape(across, (faces, size, window_h, channels))
    across = tf.reshape(tf.transpose(across, [0, 2, 1, 3]), (faces, window_h, -1))
    chips = _to_levels(_resample(across, heights, size))
    return tf.reshape(chips, (faces, size, size, channels))


def warp_similarities(
    images: tf.Tensor, image_index: tf.Tensor, matrices: tf.Tensor, size: int, sizes: tf.Tensor
) -> tf.Tensor:
    """`keras_faceset.align.warp_affine` of each face by its (N, 2, 3) image-to-chip
    `matrices`: ``chip[y, x] = image[M^-1 (x, y)]``, bilinear, 0 outside the image's true
    height, width `sizes` (B, 2); float32 (N, size, size, C) levels. Only the window of the
    image the chip covers is read."""
    matrices = tf.cast(matrices, tf.float64)
    p, q = matrices[:, 0, 0], matrices[:, 1, 0]
    norm = p**2 + q**2
    inverse = tf.reshape(tf.stack([p, q, -q, p], axis=-1), (-1, 2, 2)) / norm[:, None, None]
    offset = -tf.einsum("nij,nj->ni", inverse, matrices[:, :, 2])
    last = float(size - 1)
    corners = tf.constant([[0.0, 0.0], [last, 0.0], [0.0, last], [last, last]], tf.float64)
    reach = tf.einsum("nij,kj->nki", inverse, corners) + offset[:, None, :]
    face_sizes = tf.gather(sizes, image_index)
    low = tf.cast(tf.floor(tf.reduce_min(reach, axis=1)), tf.int64) - 1
    high = tf.cast(tf.floor(tf.reduce_max(reach, axis=1)), tf.int64) + 3
    extent = tf.cast(face_sizes[:, ::-1], tf.int64)  # (width, height)
    # the window: the pixels bilinear sampling reads (1 px of slack), clipped to the image
    start = tf.clip_by_value(low, 0, extent - 1)
    stop = tf.maximum(tf.minimum(high, extent), start + 1)
    start, span = tf.cast(start, tf.int32), tf.cast(stop - start, tf.int32)
    window = tf.maximum(tf.reduce_max(span, axis=0), 1)
    pixels = _windows(images, image_index, sizes, start[:, 0], start[:, 1], window[0], window[1])
    offset = offset - tf.cast(start, tf.float64)
    zeros = tf.zeros_like(p)
    transforms = tf.stack(
        [
            inverse[:, 0, 0],
            inverse[:, 0, 1],
            offset[:, 0],
            inverse[:, 1, 0],
            inverse[:, 1, 1],
            offset[:, 1],
            zeros,
            zeros,
        ],
        axis=-1,
    )
    chips = tf.raw_ops.ImageProjectiveTransformV3(
        images=pixels,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=tf.constant([size, size], tf.int32),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return _to_levels(chips)


def _check_shape(name: str, tensor: tf.Tensor, expected: tuple, owner: str = "FaceChips") -> None:
    """Raise ValueError when `tensor`'s static shape contradicts `expected` (ints, or names
    of free dimensions)."""
    shape = tensor.shape
    if shape.rank is None:
        return
    ok = shape.rank == len(expected) and all(
        isinstance(want, str) or got is None or got == want
        for got, want in zip(shape.as_list(), expected, strict=True)
    )
    if not ok:
        wanted = "(" + ", ".join(str(d) for d in expected) + ("," if len(expected) == 1 else "")
        raise ValueError(f"{owner}: {name} must have shape {wanted}), got {tuple(shape)}")


PER_FACE = {"image_index": ("N",), "boxes": ("N", 4), "landmarks": ("N", 5, 2), "found": ("N",)}


def _checked(images, faces: dict, image_sizes):
    """`images`, the per-face tensors of `faces` (`PER_FACE`'s names) and `image_sizes` (B, 2),
    with static shape checks (ValueError) and in-graph ones (InvalidArgumentError) that run
    before any op reads them."""
    images = tf.convert_to_tensor(images)
    _check_shape("images", images, ("B", "H", "W", 3))
    for name, expected in PER_FACE.items():
        _check_shape(name, faces[name], expected)
    counts = {name: t.shape[0] for name, t in faces.items() if t.shape.rank}
    if len({n for n in counts.values() if n is not None}) > 1:
        raise ValueError(f"FaceChips: {', '.join(PER_FACE)} need one row per face, got {counts}")
    shape = tf.shape(images)
    if image_sizes is None:
        image_sizes = tf.broadcast_to(shape[1:3][None], (shape[0], 2))
    image_sizes = tf.cast(image_sizes, tf.int32)
    _check_shape("image_sizes", image_sizes, ("B", 2))
    index = faces["image_index"]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(faces[name])[0],
            tf.shape(index)[0],
            message=f"FaceChips: {name} and image_index need one row per face",
        )
        for name in ("boxes", "landmarks", "found")
    ]
    checks += [
        tf.debugging.assert_equal(
            tf.shape(image_sizes)[0],
            shape[0],
            message="FaceChips: image_sizes needs one (height, width) row per image",
        ),
        tf.debugging.assert_less_equal(
            image_sizes,
            shape[1:3][None],
            message="FaceChips: image_sizes exceed the images' padded height, width",
        ),
        tf.debugging.assert_positive(image_sizes, message="FaceChips: an image size is 0"),
        tf.debugging.assert_non_negative(index, message="FaceChips: image_index < 0"),
        tf.debugging.assert_less(
            index, shape[0], message="FaceChips: image_index past the batch of images"
        ),
    ]
    with tf.control_dependencies(checks):  # nothing reads an input before the checks pass
        faces = {name: tf.identity(tensor) for name, tensor in faces.items()}
        return tf.identity(images), faces, tf.identity(image_sizes)


@keras.saving.register_keras_serializable(package="keras_faceset")
class FaceChips(keras.layers.Layer):
    """The chips of a `CropSpec` (a preset's ``crop_spec``) cut in the graph, one per face.

    Call: ``layer(images, image_index, boxes, landmarks, found, image_sizes=None)`` with
    images (B, H, W, 3) RGB, uint8 or float 0..255 (a padded batch: `image_sizes` (B, 2)
    int32 true height, width; default the full H, W); per face (N faces, any number per
    image): `image_index` (N,) int, `boxes` (N, 4) x1, y1, x2, y2 and `landmarks` (N, 5, 2)
    (x, y) in image pixels, pixel centres at integers (as MTCNN gives them) and `found` (N,)
    bool. Returns float32 (N, size, size, 3) chips holding `crop_face`'s uint8 levels.

    A face not `found`, or one whose box misses its image (``mtcnn_box``) or whose landmarks
    are not finite or coincide (``five_point``), gets the spec's centre crop of its image, where
    `crop_face` would raise. TensorFlow backend only.
    """

    def __init__(self, spec: CropSpec | dict, **kwargs):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "FaceChips runs TensorFlow ops; set KERAS_BACKEND=tensorflow to use it "
                f"(the backend is {keras.backend.backend()!r})"
            )
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "float32")  # pixel geometry, never in a low precision
        super().__init__(autocast=False, **kwargs)
        if isinstance(spec, dict):
            spec = CropSpec.create(**spec)
        if not isinstance(spec, CropSpec):
            raise TypeError(f"spec must be a CropSpec or its as_dict(), got {type(spec)}")
        self.spec = spec

    def call(self, images, image_index, boxes, landmarks, found, image_sizes=None):
        faces = {
            "image_index": tf.cast(image_index, tf.int32),
            "boxes": tf.cast(boxes, tf.float32),
            "landmarks": tf.cast(landmarks, tf.float32),
            "found": tf.cast(found, tf.bool),
        }
        images, faces, image_sizes = _checked(images, faces, image_sizes)
        index, found = faces["image_index"], faces["found"]
        if self.spec.method == "mtcnn_box":
            return self._box_chips(images, image_sizes, index, faces["boxes"], found)
        return self._warped_chips(images, image_sizes, index, faces["landmarks"], found)

    def _box_chips(self, images, sizes, image_index, boxes, found):
        spec = self.spec
        face_sizes = tf.gather(sizes, image_index)
        rects = margin_rects(boxes, spec.margin, face_sizes[:, 0], face_sizes[:, 1])
        usable = (
            found
            & tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
            & (rects[:, 2] > rects[:, 0])
            & (rects[:, 3] > rects[:, 1])
        )
        centre = centre_rects(face_sizes[:, 0], face_sizes[:, 1], spec.fallback_fraction)
        rects = tf.where(usable[:, None], rects, centre)
        return resize_rects(images, image_index, rects, spec.size, sizes)

    def _warped_chips(self, images, sizes, image_index, landmarks, found):
        spec = self.spec
        template = np.asarray(spec.template, dtype=np.float64)
        weights = np.ones(len(template)) if spec.weights is None else np.asarray(spec.weights)
        fitted = tf.gather(landmarks, np.flatnonzero(weights > 0), axis=1)
        spread = fitted - tf.reduce_mean(fitted, axis=1, keepdims=True)
        usable = (
            found
            & tf.reduce_all(tf.math.is_finite(landmarks), axis=[1, 2])
            & tf.reduce_any(spread != 0, axis=[1, 2])
        )
        safe = tf.where(usable[:, None, None], landmarks, tf.constant(template, tf.float32))
        matrices = similarity_to_template(safe, template, spec.weights)
        chips = warp_similarities(images, image_index, matrices, spec.size, sizes)
        missing = tf.where(~usable)[:, 0]
        missing_index = tf.gather(image_index, missing)
        missing_sizes = tf.gather(sizes, missing_index)
        centre = centre_rects(missing_sizes[:, 0], missing_sizes[:, 1], spec.fallback_fraction)
        centre_chips = resize_rects(images, missing_index, centre, spec.size, sizes)
        return tf.tensor_scatter_nd_update(chips, missing[:, None], centre_chips)

    def compute_output_shape(self, images_shape, image_index_shape, *args, **kwargs):
        return (image_index_shape[0], self.spec.size, self.spec.size, images_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "spec": self.spec.as_dict()}

"""The MTCNN cascade (Zhang et al. 2016) in TensorFlow ops, with the `mtcnn` package's rules.

One compiled graph (`tf.function`, dynamic batch and image size) does, per image of true size
``(h, w)`` inside a padded batch:

1. Normalise ``(x - 127.5) / 128``. Pyramid: ``n = round(log(min(h, w) / 12) / log(1 / f) - 1)``
   scales ``s_k = (12 / min_face_size) * f^k`` (``f`` = `scale_factor`), level k the image
   resized to ``(floor(h s_k), floor(w s_k))`` (area filter); levels under 12 px are skipped.
   A ``tf.while_loop`` runs over the levels, so their number follows the image (no retrace).
2. P-Net on every level; each cell (i, j) with face probability > ``thresholds[0]`` gives the
   box ``((2j + 1, 2i + 1, 2j + 12, 2i + 12) + 11 (dx1, dy1, dx2, dy2)) / s_k``. NMS per level
   (IoU 0.5), then over all levels (IoU 0.7), then each box is made square about its centre
   (side ``max(w, h)``).
3. R-Net on 24x24 crops (`tf.image.crop_and_resize` of the normalised image, box corners at
   ``(x1 / w, y1 / h)``, samples outside the image 0): boxes move by ``(dx1, dy1, dx2, dy2)``
   times ``(w + 1, h + 1, w + 1, h + 1)``, the score becomes R-Net's; score > ``thresholds[1]``,
   NMS (IoU 0.7), squared.
4. O-Net on 48x48 crops: the same regression, landmarks ``(w + 1) l_x + x1 - 1`` and
   ``(h + 1) l_y + y1 - 1`` in the input box; score > ``thresholds[2]``; NMS by the
   intersection over the smaller box ("Min", 0.7). Boxes are not clipped to the image.

Every NMS is the package's: a box is dropped when a higher-scored box overlaps it by more than
the threshold, whether or not that box was itself dropped (a "fast" NMS, in matrix form; greedy
`tf.image.non_max_suppression` keeps more). At most `max_proposals` boxes enter each NMS (the
highest scored); the package has no such bound.

The batch goes through the cascade in chunks of about `chunk_pixels` pixels, one after
another, so memory follows the chunk (a ``tf.while_loop``). Within a chunk P-Net runs batched
when every image has the padded size, else one image at a time (`tf.map_fn`); R-Net and
O-Net run over the crops of every image, at most `CROPS_AT_ONCE` pixels of crops per call; each
image's NMS sees only its own boxes: an image in a padded batch gets exactly what it gets
alone.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_faceset.detect.convert import mtcnn_network
from keras_faceset.detect.networks import bound_slopes

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""MTCNN's five points in order; "left" is the image's left (the subject's right eye)."""

PNET_WINDOW = 12
"""P-Net's window side in pixels; its cells are 2 px apart."""

NMS_PNET_LEVEL = 0.5
NMS_PNET = 0.7
NMS_RNET = 0.7
NMS_ONET = 0.7
"""The `mtcnn` package's NMS thresholds (IoU; O-Net's over the smaller box)."""

PNET_LOGIT_MARGIN = 0.1
"""How far below the threshold's logit difference ``log(t / (1 - t))`` a P-Net cell still gets
its exact softmax (`Mtcnn._pnet_cells`): far more than float32's rounding of the softmax
(1e-6 of the probability), so no cell whose probability exceeds the threshold is left out."""

CROPS_AT_ONCE = 1 << 16
"""The most pixels of R-Net's / O-Net's crops per network call (113 crops of 24 x 24, 28 of
48 x 48): feature maps that stay in the CPU's caches make these stages about a third faster on
2 cores than one call on every crop of the batch."""


class Mtcnn(tf.Module):
    """MTCNN face detector: uint8 images in, boxes, scores and five landmarks out, in one graph.

    The defaults are those `keras_faceset.align.MtcnnDetector` gives the `mtcnn` package
    (davidsandberg/facenet's: min face 20 px, thresholds 0.6/0.7/0.7, pyramid factor 0.709).
    `max_faces` faces per image are returned; when more are found the largest are kept.
    `retry_padding`: an image where nothing was found is searched again with a border of that
    fraction of its longer side on every side, filled with grey (a face that fills the frame
    gives the detector no context); 0 turns the retry off. `max_proposals` bounds the boxes
    that enter each NMS (and so memory). `weights_dir`: a folder holding the `mtcnn` package's
    ``pnet.lz4``, ``rnet.lz4``, ``onet.lz4`` (default: the installed package's).
    `chunk_pixels`: the cascade runs on consecutive chunks of a batch of about that many pixels
    (at least one image; the default takes 32 LFW photos, or 2 frames of 1280 x 720, at once),
    so its memory follows the chunk, not the batch; it does not change what is found.
    """

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_faces: int = 16,
        retry_padding: float = 0.25,
        max_proposals: int = 2000,
        weights_dir: str | os.PathLike | None = None,
        chunk_pixels: int = 1 << 21,
    ):
        super().__init__(name="mtcnn")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be 3 values in [0, 1], got {thresholds!r}")
        if min_face_size < PNET_WINDOW:
            raise ValueError(
                f"min_face_size must be at least {PNET_WINDOW} (P-Net's window), "
                f"got {min_face_size}"
            )
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if max_faces < 1 or max_proposals < 1 or chunk_pixels < 1:
            raise ValueError(
                "max_faces, max_proposals and chunk_pixels must be positive, got "
                f"{max_faces}, {max_proposals}, {chunk_pixels}"
            )
        if retry_padding < 0:
            raise ValueError(f"retry_padding must be >= 0, got {retry_padding}")
        self.min_face_size = float(min_face_size)
        self.thresholds = thresholds
        self.scale_factor = float(scale_factor)
        self.max_faces = int(max_faces)
        self.retry_padding = float(retry_padding)
        self.max_proposals = int(max_proposals)
        self.chunk_pixels = int(chunk_pixels)
        # the networks' PReLUs in their two-pass form where the slopes allow it (the same values)
        self.pnet = bound_slopes(mtcnn_network("pnet", weights_dir))
        self.rnet = bound_slopes(mtcnn_network("rnet", weights_dir))
        self.onet = bound_slopes(mtcnn_network("onet", weights_dir))
        self.pnet_on_candidates = True
        """False: P-Net's softmax and regression on every cell (the reference for tests)."""
        self._pnet_trunk = keras.Model(self.pnet.input, self.pnet.get_layer("prelu3").output)
        threshold = self.thresholds[0]
        self._pnet_logit_bound = (
            -math.inf
            if threshold <= 0
            else math.inf
            if threshold >= 1
            else math.log(threshold / (1 - threshold)) - PNET_LOGIT_MARGIN
        )
        self.detect_graph = tf.function(
            self._detect,
            input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
                tf.TensorSpec([None, 2], tf.int32, name="sizes"),
            ],
            autograph=False,
        )

    @property
    def config(self) -> dict:
        """The settings that change detections."""
        return {
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "scale_factor": self.scale_factor,
            "max_faces": self.max_faces,
            "retry_padding": self.retry_padding,
            "max_proposals": self.max_proposals,
        }

    def detect(self, images, sizes=None) -> dict[str, tf.Tensor]:
        """Faces in a batch of RGB images, uint8 ``(B, H, W, 3)``.

        Gray ``(B, H, W, 1)`` images are repeated to RGB and RGBA ones lose their alpha; other
        shapes and dtypes raise ValueError. For images of several sizes, pad them into one
        batch (at the top left) and give their true ``(h, w)`` as `sizes` ``(B, 2)``: each image
        then gets exactly what it gets alone. Returns a dict of tensors, faces in each image
        sorted by score (padded slots 0): ``boxes`` (B, F, 4) x1, y1, x2, y2 in pixels (pixel
        centres at integers), ``scores`` (B, F), ``landmarks`` (B, F, 5, 2) (x, y) in
        `LANDMARK_NAMES` order, ``counts`` (B,) int32, ``found`` (B,) bool (False: no face,
        the caller falls back to a centre crop) and ``retried`` (B,) bool (found only with the
        border of `retry_padding`). F is `max_faces`. An image smaller than 20 px on its
        shorter side has no face (count 0).
        """
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            raise ValueError(
                f"images must be uint8 pixels 0..255, got {images.dtype.name}: convert first "
                "(e.g. tf.image.convert_image_dtype(images, tf.uint8, saturate=True))"
            )
        if images.shape.rank != 4 or images.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"images must be a batch (B, H, W, 3) of RGB (or 1-channel gray, RGBA) images, "
                f"got shape {images.shape}; add a batch axis for one image"
            )
        if images.shape[-1] == 1:
            images = tf.image.grayscale_to_rgb(images)
        images = images[..., :3]
        if sizes is None:
            sizes = tf.tile(tf.shape(images)[None, 1:3], [tf.shape(images)[0], 1])
        sizes = tf.convert_to_tensor(sizes, tf.int32)
        if sizes.shape.rank != 2 or sizes.shape[-1] != 2:
            raise ValueError(f"sizes must be (B, 2) true (h, w) per image, got {sizes.shape}")
        return self.detect_graph(images, sizes)

    def _detect(self, images: tf.Tensor, sizes: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = tf.shape(images)[0]
        checks = [
            tf.debugging.assert_equal(
                tf.shape(sizes)[0], batch, message="sizes must have one (h, w) row per image"
            ),
            tf.debugging.assert_non_negative(sizes, message="sizes must be >= 0"),
            tf.debugging.assert_less_equal(
                sizes,
                tf.shape(images)[1:3][None],
                message="sizes must not exceed the padded images' (H, W)",
            ),
        ]
        with tf.control_dependencies(checks):
            # at least 1 x 1 (crop_and_resize refuses an empty image, even with no box)
            grow = tf.maximum(1 - tf.shape(images)[1:3], 0)
            images = tf.pad(images, [[0, 0], [0, grow[0]], [0, grow[1]], [0, 0]])
        nothing = {
            "boxes": tf.zeros([batch, self.max_faces, 4]),
            "scores": tf.zeros([batch, self.max_faces]),
            "landmarks": tf.zeros([batch, self.max_faces, 5, 2]),
            "counts": tf.zeros([batch], tf.int32),
        }
        # tf.map_fn cannot stack zero results of a dynamic shape: an empty batch skips it
        found = tf.cond(batch > 0, lambda: self._cascade(images, sizes), lambda: nothing)
        found["retried"] = tf.zeros([batch], tf.bool)
        if self.retry_padding > 0:
            missing = (found["counts"] == 0) & (tf.reduce_min(sizes, axis=1) > 0)
            found = tf.cond(
                tf.reduce_any(missing),
                lambda: self._retry(images, sizes, missing, found),
                lambda: found,
            )
        found["found"] = found["counts"] > 0
        return found

    def _retry(self, images, sizes, missing, found) -> dict[str, tf.Tensor]:
        """`found` with the images flagged `missing` searched again inside a grey border."""
        index = tf.where(missing)[:, :1]
        sizes = tf.gather_nd(sizes, index)
        pads = tf.cast(
            tf.round(self.retry_padding * tf.cast(tf.reduce_max(sizes, 1), tf.float32)), tf.int32
        )
        padded, padded_sizes = _pad_border(tf.gather_nd(images, index), sizes, pads)
        again = self._cascade(padded, padded_sizes)
        shift = tf.cast(pads, tf.float32)[:, None, None]
        slots = tf.sequence_mask(again["counts"], self.max_faces)[..., None]
        again["boxes"] = tf.where(slots, again["boxes"] - shift, 0.0)
        again["landmarks"] = tf.where(slots[..., None], again["landmarks"] - shift[..., None], 0.0)
        again["retried"] = again["counts"] > 0
        return {key: tf.tensor_scatter_nd_update(found[key], index, again[key]) for key in found}

    def _cascade(self, images: tf.Tensor, sizes: tf.Tensor) -> dict[str, tf.Tensor]:
        """`_faces` of a non-empty batch, one chunk of `chunk_pixels` (at least one image)
        after another: only one chunk's pyramid, maps and crops are alive at a time."""
        images = tf.ensure_shape(images, [None, None, None, 3])
        sizes = tf.ensure_shape(sizes, [None, 2])
        batch = tf.shape(images)[0]
        step = tf.maximum(self.chunk_pixels // tf.reduce_prod(tf.shape(images)[1:3]), 1)
        faces = self.max_faces
        shapes = {"boxes": [faces, 4], "scores": [faces], "landmarks": [faces, 5, 2], "counts": []}
        parts = tuple(
            tf.TensorArray(
                tf.int32 if key == "counts" else tf.float32,
                size=0,
                dynamic_size=True,
                infer_shape=False,
                element_shape=[None, *shape],
            )
            for key, shape in shapes.items()
        )
        keys = tuple(shapes)

        def chunk(start, parts):
            found = self._faces(images[start : start + step], sizes[start : start + step])
            index = start // step
            return start + step, tuple(
                part.write(index, found[key]) for part, key in zip(parts, keys, strict=True)
            )

        _, parts = tf.while_loop(
            lambda start, _: start < batch, chunk, (tf.constant(0), parts), parallel_iterations=1
        )
        return {key: part.concat() for key, part in zip(keys, parts, strict=True)}

    def _faces(self, images: tf.Tensor, sizes: tf.Tensor) -> dict[str, tf.Tensor]:
        """The whole cascade on a batch: `_largest`'s faces of each image."""
        x = (tf.cast(images, tf.float32) - 127.5) / 128.0
        extent = tf.shape(x)[1:3]

        def one(args):
            image, size = args
            rows, counts = self._proposals(image[None, : size[0], : size[1]], size)
            return _pad_rows(rows[0], self.max_proposals)[0], counts[0]

        def each():
            spec = tf.TensorSpec([self.max_proposals, 5], tf.float32)
            return tf.map_fn(one, (x, sizes), fn_output_signature=(spec, tf.int32))

        # images of the padded size go through P-Net together; the others one at a time
        rows, counts = tf.cond(
            tf.reduce_all(sizes == extent), lambda: self._proposals(x, extent), each
        )
        rows, counts = self._refine(x, sizes, rows, counts)
        rows, counts = self._output(x, sizes, rows, counts)
        return self._largest(rows, counts)

    def _scales(self, h: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        """The package's pyramid scales (float64) for an h x w image, levels >= 12 px only."""
        h, w = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
        shorter = tf.maximum(tf.minimum(h, w), 1.0)
        count = tf.round(-(tf.math.log(shorter / PNET_WINDOW) / math.log(self.scale_factor) + 1))
        steps = tf.range(tf.maximum(count, 0.0), dtype=tf.float64)
        scales = (PNET_WINDOW / self.min_face_size) * tf.pow(
            tf.constant(self.scale_factor, tf.float64), steps
        )
        large = tf.minimum(tf.floor(h * scales), tf.floor(w * scales)) >= PNET_WINDOW
        return tf.boolean_mask(scales, large)

    def _proposals(self, x: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """P-Net stage of images `x` (B, h, w, 3) of true size `size` (h, w): rows (B, M, 5)
        x1, y1, x2, y2, score of squared boxes (at most `max_proposals`), and their counts."""
        scales = self._scales(size[0], size[1])

        def level(k, rows):
            scale = scales[k]
            shape = tf.cast(tf.floor(tf.cast(size, tf.float64) * scale), tf.int32)
            regression, probability = self._pnet_cells(tf.image.resize(x, shape, method="area"))
            found = _pnet_boxes(
                regression,
                probability,
                tf.cast(scale, tf.float32),
                self.thresholds[0],
                self.max_proposals,
            )
            keep = _suppress(found, found[..., 4] >= 0, NMS_PNET_LEVEL)
            return k + 1, tf.concat([rows, tf.where(keep[..., None], found, _empty(5))], axis=1)

        _, rows = tf.while_loop(
            lambda k, _: k < tf.size(scales),
            level,
            (tf.constant(0), tf.zeros([tf.shape(x)[0], 0, 5])),
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None, 5])),
        )
        valid = rows[..., 4] >= 0
        width = tf.reduce_max(tf.reduce_sum(tf.cast(valid, tf.int32), axis=1))
        width = tf.minimum(width, self.max_proposals)
        rows, counts = _compact(rows, valid, width)
        rows, counts = _compact(rows, _suppress(rows, rows[..., 4] >= 0, NMS_PNET), width)
        return tf.concat([_square(rows[..., :4]), rows[..., 4:]], axis=-1), counts

    def _pnet_cells(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """P-Net's box regression (B, h, w, 4) and face probability (B, h, w) on one pyramid
        level, exact where the probability exceeds ``thresholds[0]`` (all `_pnet_boxes` reads):
        the softmax and the regression only on the cells whose logits could pass it.

        The face probability is ``softmax(l0, l1)[1]``, increasing in ``l1 - l0``, above t only
        when ``l1 - l0 > log(t / (1 - t))``; cells within `PNET_LOGIT_MARGIN` of that bound or
        above it (a few hundred of each level's thousands) go through the same softmax and,
        as rows of a matrix product, the same 1 x 1 convolution as in the whole map: the same
        values bit for bit (calls of at least 2 rows, as a product of one row rounds
        otherwise). Every other cell gets probability 0 and regression 0, never read."""
        if not self.pnet_on_candidates:
            regression, probability = self.pnet(image, training=False)
            return regression, probability[..., 1]
        features = self._pnet_trunk(image, training=False)
        head, logit = self.pnet.get_layer("conv4_1"), self.pnet.get_layer("conv4_2")
        logits = tf.nn.conv2d(features, logit.kernel, 1, "VALID") + logit.bias
        cells = tf.shape(logits)[:3]
        flat = tf.reshape(logits, [-1, 2])
        index = tf.where(flat[:, 1] - flat[:, 0] > self._pnet_logit_bound)
        count = tf.shape(index)[0]
        # at least 2 rows per call (a row gathered twice more, its copies dropped)
        rows = tf.concat([index[:, 0], tf.zeros([tf.maximum(2 - count, 0)], tf.int64)], axis=0)
        probability = tf.nn.softmax(tf.gather(flat, rows))[:count, 1]
        vectors = tf.gather(tf.reshape(features, [-1, tf.shape(features)[-1]]), rows)
        offsets = (tf.matmul(vectors, head.kernel[0, 0]) + head.bias)[:count]
        total = tf.cast(tf.reduce_prod(cells)[None], tf.int64)
        probability = tf.scatter_nd(index, probability, total)
        offsets = tf.scatter_nd(index, offsets, tf.concat([total, [4]], axis=0))
        return tf.reshape(offsets, tf.concat([cells, [4]], axis=0)), tf.reshape(probability, cells)

    def _refine(self, x, sizes, rows, counts) -> tuple[tf.Tensor, tf.Tensor]:
        """R-Net stage: rows (B, M, 5) of squared boxes and R-Net's scores."""

        def decode(boxes, outputs):
            regression, probability = outputs
            return tf.concat([_regress(boxes, regression), probability[:, 1:]], axis=1)

        rows, counts = _network_stage(
            self.rnet, 24, decode, x, sizes, rows, counts, self.thresholds[1], NMS_RNET, "union"
        )
        return tf.concat([_square(rows[..., :4]), rows[..., 4:]], axis=-1), counts

    def _output(self, x, sizes, rows, counts) -> tuple[tf.Tensor, tf.Tensor]:
        """O-Net stage: rows (B, M, 15): box, score, the landmarks' 5 x's then 5 y's."""

        def decode(boxes, outputs):
            regression, landmarks, probability = outputs
            x1, y1, x2, y2 = (v[:, None] for v in tf.unstack(boxes, axis=1))
            points = [(x2 - x1 + 1) * landmarks[:, :5] + x1 - 1]
            points.append((y2 - y1 + 1) * landmarks[:, 5:] + y1 - 1)
            return tf.concat([_regress(boxes, regression), probability[:, 1:], *points], axis=1)

        return _network_stage(
            self.onet, 48, decode, x, sizes, rows, counts, self.thresholds[2], NMS_ONET, "min"
        )

    def _largest(self, rows: tf.Tensor, counts: tf.Tensor) -> dict[str, tf.Tensor]:
        """The `max_faces` largest faces of each image, sorted by score, zero-padded."""
        rows = tf.pad(
            rows, [[0, 0], [0, tf.maximum(self.max_faces - tf.shape(rows)[1], 0)], [0, 0]]
        )
        valid = tf.sequence_mask(counts, tf.shape(rows)[1])
        area = (rows[..., 2] - rows[..., 0]) * (rows[..., 3] - rows[..., 1])
        _, pick = tf.math.top_k(tf.where(valid, area, -np.inf), self.max_faces)
        rows = tf.gather(rows, pick, batch_dims=1)
        valid = tf.gather(valid, pick, batch_dims=1)
        order = tf.argsort(tf.where(valid, rows[..., 4], -1.0), direction="DESCENDING", stable=True)
        rows = tf.where(
            tf.gather(valid, order, batch_dims=1)[..., None],
            tf.gather(rows, order, batch_dims=1),
            0.0,
        )
        return {
            "boxes": rows[..., :4],
            "scores": rows[..., 4],
            "landmarks": tf.stack([rows[..., 5:10], rows[..., 10:15]], axis=-1),
            "counts": tf.minimum(counts, self.max_faces),
        }


def _network_stage(network, side, decode, x, sizes, rows, counts, threshold, overlap, method):
    """Run `network` on the side x side crops of every image's boxes (rows (B, M, >=4), the
    first `counts` valid), `decode` its outputs into rows (box, score, ...), then per image keep
    those scoring above `threshold`, sorted by score and NMS'd: rows (B, M', C), counts (B,)."""
    width = tf.reduce_max(tf.concat([counts, [0]], axis=0))
    valid = tf.sequence_mask(counts, width)
    where = tf.where(valid)
    boxes = tf.ensure_shape(tf.gather_nd(rows[:, :width, :4], where), [None, 4])
    crops = _crops(x, sizes, boxes, where[:, 0], side)
    found = decode(boxes, _in_chunks(network, crops, side))
    shape = tf.stack([tf.shape(rows)[0], width, tf.shape(found)[1]])
    dense = tf.scatter_nd(where, found, tf.cast(shape, tf.int64))
    rows, counts = _compact(dense, valid & (dense[..., 4] > threshold), width)
    kept = tf.range(width) < counts[:, None]
    return _compact(rows, _suppress(rows, kept, overlap, method), width)


def _in_chunks(network, crops: tf.Tensor, side: int) -> list[tf.Tensor]:
    """`network`'s outputs on `crops` (N, side, side, 3), in the fewest calls of at most
    `CROPS_AT_ONCE` pixels of crops, of equal size, two in flight (the last padded with blank
    crops, dropped from the outputs). Every call has at least 2 crops: TensorFlow's CPU
    `MatMul` of one row takes another path (different rounding) from that of several, so a crop
    gets the same outputs whatever the call's size; and at least one call, as its CPU
    convolution mishandles an empty batch."""
    most = max(CROPS_AT_ONCE // side**2, 2)
    count = tf.shape(crops)[0]
    chunks = tf.maximum((count + most - 1) // most, 1)
    size = tf.maximum((count + chunks - 1) // chunks, 2)
    # blank crops concatenated, not tf.pad: Grappler would fold a pad into the convolution's
    # own padding, and lose it
    blank = tf.zeros(tf.stack([chunks * size - count, side, side, 3]))
    grouped = tf.reshape(tf.concat([crops, blank], axis=0), [chunks, size, side, side, 3])
    outputs = tf.map_fn(
        lambda chunk: tuple(network(chunk, training=False)),
        grouped,
        fn_output_signature=tuple(
            tf.TensorSpec([None, *output.shape[1:]], tf.float32) for output in network.outputs
        ),
        parallel_iterations=2,
    )
    return [tf.reshape(output, [-1, *output.shape[2:]])[:count] for output in outputs]


def _pnet_boxes(regression, probability, scale, threshold, limit) -> tf.Tensor:
    """Rows x1, y1, x2, y2, score (B, n, 5), n <= `limit`, sorted by score, of each image's P-Net
    cells of one level whose face probability exceeds `threshold`, in image pixels; an image
    with fewer than n such cells gets empty rows (`_empty`)."""
    batch, columns = tf.shape(probability)[0], tf.shape(probability)[2]
    flat = tf.reshape(probability, [batch, -1])
    above = tf.reduce_max(tf.reduce_sum(tf.cast(flat > threshold, tf.int32), axis=1))
    scores, index = tf.math.top_k(flat, tf.minimum(above, limit))
    cell = tf.cast(tf.stack([index % columns, index // columns], axis=-1), tf.float32) * 2.0
    offsets = tf.gather(tf.reshape(regression, [batch, -1, 4]), index, batch_dims=1)
    corners = tf.concat([cell + 1, cell + PNET_WINDOW], axis=-1) + offsets * (PNET_WINDOW - 1)
    rows = tf.concat([corners / scale, scores[..., None]], axis=-1)
    return tf.where((scores > threshold)[..., None], rows, _empty(5))


def _empty(columns) -> tf.Tensor:
    """An empty row: zeros, score (column 4) -1 (scores are probabilities, valid ones >= 0)."""
    return tf.one_hot(4, columns, on_value=-1.0, off_value=0.0)


def _compact(rows: tf.Tensor, keep: tf.Tensor, width) -> tuple[tf.Tensor, tf.Tensor]:
    """The kept rows (..., n, C) first, sorted by score (column 4), then empty rows, `width`
    rows in all (at least the kept count); and how many were kept (...)."""
    _, index = tf.math.top_k(tf.where(keep, rows[..., 4], -1.0), width)
    rows = tf.gather(rows, index, batch_dims=index.shape.rank - 1)
    kept = tf.gather(keep, index, batch_dims=index.shape.rank - 1)
    empty = _empty(tf.shape(rows)[-1])
    return tf.where(kept[..., None], rows, empty), tf.reduce_sum(tf.cast(keep, tf.int32), -1)


def _suppress(rows: tf.Tensor, valid: tf.Tensor, threshold: float, method="union") -> tf.Tensor:
    """Which `valid` rows (..., n, >=4), sorted by score, no higher-scored valid row overlaps by
    more than `threshold`: IoU (``"union"``) or intersection over the smaller area (``"min"``),
    areas (x2 - x1)(y2 - y1). A row is dropped even when the one that overlaps it is dropped
    too (the `mtcnn` package's rule)."""
    x1, y1, x2, y2 = (rows[..., i] for i in range(4))
    area = (x2 - x1) * (y2 - y1)
    width = tf.minimum(x2[..., :, None], x2[..., None, :])
    width -= tf.maximum(x1[..., :, None], x1[..., None, :])
    height = tf.minimum(y2[..., :, None], y2[..., None, :])
    height -= tf.maximum(y1[..., :, None], y1[..., None, :])
    inter = tf.maximum(width, 0.0) * tf.maximum(height, 0.0)
    if method == "union":
        overlap = inter / (area[..., :, None] + area[..., None, :] - inter)
    else:
        overlap = inter / tf.minimum(area[..., :, None], area[..., None, :])
    n = tf.shape(rows)[-2]
    earlier = (tf.range(n)[:, None] < tf.range(n)) & valid[..., :, None]
    return valid & ~tf.reduce_any((overlap > threshold) & earlier, axis=-2)


def _square(boxes: tf.Tensor) -> tf.Tensor:
    """Boxes (..., 4) made square about their centre, side max(w, h) with w = x2 - x1."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    w, h = x2 - x1, y2 - y1
    side = tf.maximum(w, h)
    x1 = x1 + w * 0.5 - side * 0.5
    y1 = y1 + h * 0.5 - side * 0.5
    return tf.stack([x1, y1, x1 + side, y1 + side], axis=-1)


def _regress(boxes: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """Boxes (N, 4) moved by R-Net's / O-Net's offsets times (w + 1, h + 1, w + 1, h + 1)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * tf.stack([w, h, w, h], axis=1)


def _pad_rows(rows: tf.Tensor, length) -> tuple[tf.Tensor, tf.Tensor]:
    """`rows` zero-padded to `length` rows, and how many there were."""
    count = tf.shape(rows)[0]
    return tf.pad(rows, [[0, length - count], [0, 0]]), count


def _crops(x, sizes, boxes, image_index, side: int) -> tf.Tensor:
    """side x side bilinear crops of `boxes` (N, 4) in the images `image_index` of the padded
    batch `x`, sampled as `tf.image.crop_and_resize` samples an image of its true size alone:
    corners at (y1 / h, x1 / w) of the true image, samples beyond it 0."""
    true = tf.cast(tf.gather(sizes, image_index), tf.float32)
    padded = tf.cast(tf.shape(x)[1:3], tf.float32)
    h, w = true[:, :1], true[:, 1:]
    x1, y1, x2, y2 = tf.split(boxes, 4, axis=1)
    # a corner c of the true image is at c (h - 1) / h in pixels, c (h - 1) / (h (H - 1)) of H
    ys = tf.concat([y1, y2], axis=1) * ((h - 1) / (padded[0] - 1)) / h
    xs = tf.concat([x1, x2], axis=1) * ((w - 1) / (padded[1] - 1)) / w
    crops = tf.image.crop_and_resize(
        x,
        tf.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1),
        tf.cast(image_index, tf.int32),
        [side, side],
    )
    steps = tf.range(side, dtype=tf.float32) / (side - 1)

    def inside(lo, hi, extent):
        """The samples (N, side) that fall in [0, extent - 1] of the true image."""
        at = (lo * (extent - 1) / extent) + steps * ((hi - lo) * (extent - 1) / extent)
        return tf.cast((at >= 0) & (at <= extent - 1), tf.float32)

    mask = inside(y1, y2, h)[:, :, None, None] * inside(x1, x2, w)[:, None, :, None]
    return crops * mask


def _pad_border(images, sizes, pads) -> tuple[tf.Tensor, tf.Tensor]:
    """Each image (true size `sizes`) inside a border of `pads` px of grey (127), top left of
    a new padded batch; returns it and the new sizes."""
    new_sizes = sizes + 2 * pads[:, None]
    extent = tf.reduce_max(tf.concat([new_sizes, [[0, 0]]], axis=0), axis=0)

    def source(axis):
        at = tf.range(extent[axis])[None] - pads[:, None]
        return at, (at >= 0) & (at < sizes[:, axis : axis + 1])

    rows, row_ok = source(0)
    cols, col_ok = source(1)
    limit = tf.maximum(tf.shape(images)[1:3] - 1, 0)
    out = tf.gather(images, tf.clip_by_value(rows, 0, limit[0]), axis=1, batch_dims=1)
    out = tf.gather(out, tf.clip_by_value(cols, 0, limit[1]), axis=2, batch_dims=1)
    ok = row_ok[:, :, None, None] & col_ok[:, None, :, None]
    return tf.where(ok, out, tf.constant(127, tf.uint8)), new_sizes


def shared_mtcnn(
    min_face_size: float = 20,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    scale_factor: float = 0.709,
    max_faces: int = 16,
    retry_padding: float = 0.25,
) -> Mtcnn:
    """One `Mtcnn` per setting in a process, its graph traced once: what
    `keras_faceset.align.MtcnnDetector` (so every `FaceEmbedder`) and `detect_video` use, so a
    second embedder neither rebuilds the networks nor retraces the cascade."""
    thresholds = tuple(float(t) for t in thresholds)
    return _shared(
        float(min_face_size), thresholds, float(scale_factor), int(max_faces), float(retry_padding)
    )


@functools.lru_cache(maxsize=8)
def _shared(min_face_size, thresholds, scale_factor, max_faces, retry_padding) -> Mtcnn:
    return Mtcnn(
        min_face_size, thresholds, scale_factor, max_faces=max_faces, retry_padding=retry_padding
    )

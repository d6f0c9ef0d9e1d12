"""The whole pipeline as serving signatures: encoded photos in, faces and embeddings out.

`detect`, `embed_faces` and `embed_set` take JPEG/PNG/GIF/BMP/WebP bytes (tf.string), decode
them in the graph (JPEGs with the accurate integer IDCT, as `keras_faceset.data.load_image`;
gray and RGBA to RGB; a GIF's first frame; EXIF orientation is not applied: send upright
photos) into a zero-padded batch with each photo's true size, and run a `FacePipeline` (MTCNN,
the preset's crop, the backbone, the head). Every output's first axis is the request's batch
axis (faces padded to `max_faces` per photo, with counts), so TF Serving can batch requests.
An export gets them when its model is a zoo preset (`preset_crop`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_faceset import zoo
from keras_faceset.align.spec import CropSpec
from keras_faceset.data.images import decode_bytes
from keras_faceset.export.spec import ExportSpec
from keras_faceset.models.face_pipeline import FacePipeline

PIPELINE_SIGNATURES = ("detect", "embed_faces", "embed_set")
"""Signature names, in the order they are documented and warmed up."""

FORMATS = {
    "JPEG": (0, b"\xff\xd8\xff"),
    "PNG": (0, b"\x89PNG\r\n\x1a\n"),
    "GIF": (0, b"GIF8"),
    "BMP": (0, b"BM"),
    "WebP": (8, b"WEBP"),  # after b"RIFF" and the file size
}
"""The signatures the decoder recognises: (offset, bytes)."""

NOT_AN_IMAGE = f"is not an image: expected {', '.join(FORMATS)} bytes"

MAX_PIXELS = 40_000_000
"""The most pixels (height x width) a photo sent to the signatures may have: 40 megapixels
(8000 x 5000), more than a phone's full-size photo. A larger one fails with InvalidArgument
before it is decoded (its size is read from the JPEG, PNG, GIF or BMP header; a WebP is
checked once decoded), so a 10,000 x 10,000 photo never takes the 300 MB of its pixels."""


def preset_crop(spec: ExportSpec) -> CropSpec | None:
    """The crop of the zoo preset `spec` is named after (`ExportSpec.from_preset`, or
    `from_file` with a preset), when the input size is that preset's; None otherwise (no
    pipeline signatures: the export cannot know how its faces are to be cropped)."""
    preset = zoo.PRESETS.get(spec.name)
    if preset is None or spec.input_size != (preset.input_size, preset.input_size):
        return None
    return preset.crop_spec


def load_pipeline(
    name: str, max_faces: int = 16, fold: bool = True, weights: str | None = "pretrained"
) -> FacePipeline:
    """The `FacePipeline` of zoo preset `name`: its task (`zoo.load(name, form="task")`) and
    its crop; what its export's pipeline signatures serve."""
    task = zoo.load(name, weights=weights, form="task")
    crop = zoo.get_preset(name).crop_spec
    return FacePipeline.from_task(task, crop, max_faces=max_faces, fold=fold)


def decode_images(
    image_bytes: tf.Tensor, names: tf.Tensor, max_pixels: int = MAX_PIXELS
) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded images (N,) -> uint8 RGB (N, H, W, 3), each at the top left of the largest
    height and width, zero-padded, and their true sizes (N, 2) int32. Bytes of no known format
    fail with InvalidArgument naming the input (`names` (N,), e.g. ``image_bytes[3]``), and
    so do images of more than `max_pixels` pixels (before they are decoded); truncated ones
    with the decoder's InvalidArgument ("Invalid JPEG data", "Invalid PNG data")."""
    count = tf.shape(image_bytes)[0]

    def decode(i, decoded, sizes):
        data = image_bytes[i]
        check = tf.debugging.Assert(
            _known_format(data), [tf.strings.join([names[i], " ", NOT_AN_IMAGE])], summarize=1
        )
        with tf.control_dependencies([check]):
            image = decode_within_size(tf.identity(data), names[i], decode_bytes, max_pixels)
        return i + 1, decoded.write(i, image), sizes.write(i, tf.shape(image)[:2])

    decoded = tf.TensorArray(tf.uint8, size=count, infer_shape=False, element_shape=[None, None, 3])
    sizes = tf.TensorArray(tf.int32, size=count, element_shape=[2])
    _, decoded, sizes = tf.while_loop(
        lambda i, *_: i < count, decode, (tf.constant(0), decoded, sizes)
    )
    sizes = tf.reshape(sizes.stack(), [-1, 2])
    extent = tf.reduce_max(tf.concat([sizes, [[1, 1]]], axis=0), axis=0)

    def pad(i, padded):
        grow = extent - sizes[i]
        image = tf.pad(decoded.read(i), [[0, grow[0]], [0, grow[1]], [0, 0]])
        return i + 1, padded.write(i, image)

    padded = tf.TensorArray(tf.uint8, size=count, element_shape=[None, None, 3])
    _, padded = tf.while_loop(lambda i, _: i < count, pad, (tf.constant(0), padded))
    # TensorArray.stack cannot stack no elements of a dynamic shape
    empty = tf.zeros(tf.concat([[0], extent, [3]], axis=0), tf.uint8)
    return tf.cond(count > 0, padded.stack, lambda: empty), sizes


def decode_within_size(
    data: tf.Tensor, name: tf.Tensor, decode, max_pixels: int = MAX_PIXELS
) -> tf.Tensor:
    """`decode(data)` (an image (H, W, C)) once the size in the header of `data` is found to
    have at most `max_pixels` pixels, and the decoded size too; else InvalidArgument naming
    the input (`name`), its size and the limit."""
    with tf.control_dependencies([_size_check(_header_size(data), name, max_pixels)]):
        image = decode(tf.identity(data))
    with tf.control_dependencies([_size_check(tf.shape(image)[:2], name, max_pixels)]):
        return tf.identity(image)


HEADER = 26
"""Bytes read from the start of a photo: its format's signature and its size fields."""


def _head(data: tf.Tensor) -> tf.Tensor:
    """The first `HEADER` bytes of `data`, zero-padded when it is shorter."""
    start = tf.strings.substr(data, 0, HEADER)
    return tf.strings.substr(tf.strings.join([start, "\0" * HEADER]), 0, HEADER)


def _starts(head: tf.Tensor, name: str) -> tf.Tensor:
    """True when `head` starts as format `name` of `FORMATS` does."""
    offset, magic = FORMATS[name]
    return tf.equal(tf.strings.substr(head, offset, len(magic)), magic)


def _known_format(data: tf.Tensor) -> tf.Tensor:
    """True when `data` starts as one of `FORMATS` does."""
    head = _head(data)
    return tf.reduce_any(tf.stack([_starts(head, name) for name in FORMATS]))


def _header_size(data: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 as the header of JPEG, PNG, GIF or BMP bytes states it (a BMP's
    height may be negative: rows stored top-down); (0, 0) for WebP."""
    head = _head(data)

    def fields(offset: int, dtype: tf.DType, little_endian: bool) -> tf.Tensor:
        raw = tf.strings.substr(head, offset, 2 * dtype.size)
        width_height = tf.io.decode_raw(raw, dtype, little_endian=little_endian)
        return tf.abs(tf.cast(width_height[::-1], tf.int64))

    return tf.case(
        [
            (_starts(head, "JPEG"), lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)),
            (_starts(head, "PNG"), lambda: fields(16, tf.int32, little_endian=False)),
            (_starts(head, "GIF"), lambda: fields(6, tf.uint16, little_endian=True)),
            (_starts(head, "BMP"), lambda: fields(18, tf.int32, little_endian=True)),
        ],
        default=lambda: tf.zeros([2], tf.int64),
    )


def _size_check(size: tf.Tensor, name: tf.Tensor, max_pixels: int) -> tf.Operation:
    """Assert that an image of `size` (height, width) has at most `max_pixels` pixels."""
    size = tf.cast(size, tf.int64)
    height, width = tf.strings.as_string(size[0]), tf.strings.as_string(size[1])
    pixels = tf.strings.as_string(size[0] * size[1])
    too_large = f" pixels, more than the {max_pixels} a photo may have: scale it down"
    message = tf.strings.join([name, " is ", height, " x ", width, " = ", pixels, too_large])
    return tf.debugging.Assert(size[0] * size[1] <= max_pixels, [message], summarize=1)


def names_of(index: tf.Tensor) -> tf.Tensor:
    """``image_bytes[i]`` (or ``[b, t]``) for each row of int `index` (N, k)."""
    joined = tf.strings.reduce_join(tf.strings.as_string(index), axis=1, separator=", ")
    return tf.strings.join(["image_bytes[", joined, "]"])


class PipelineEndpoints:
    """The three signatures of a `FacePipeline`, as ``{name: (function, *input specs)}`` in
    `endpoints` (for `keras.export.ExportArchive.add_endpoint`). F is `max_faces`.

    - `detect`: ``image_bytes`` [B] -> ``boxes`` [B, F, 4], ``scores`` [B, F], ``landmarks``
      [B, F, 5, 2], ``counts`` [B] int32 (faces sorted by score; padded slots 0).
    - `embed_faces`: ``image_bytes`` [B] -> per face slot ``embedding`` [B, F, D] (unit),
      ``frame_features`` [B, F, Fd] (what `aggregate` takes), ``boxes``, ``scores``,
      ``landmarks``, and ``counts`` [B]: face k < counts[b] of photo b is row [b, k].
    - `embed_set`: ``image_bytes`` [B, T] (T frames of one person per row, "" as padding) ->
      ``embedding`` [B, E], ``weights`` [B, T], the chosen face's ``boxes`` [B, T, 4] and
      ``counts`` [B, T] (faces found; 0: the frame's centre crop was used).
    """

    def __init__(self, pipeline: FacePipeline):
        self.pipeline = pipeline
        photos = tf.TensorSpec([None], tf.string, name="image_bytes")
        frames = tf.TensorSpec([None, None], tf.string, name="image_bytes")
        self.endpoints = {
            "detect": (self.detect, photos),
            "embed_faces": (self.embed_faces, photos),
            "embed_set": (self.embed_set, frames),
        }

    def _decode(self, image_bytes):
        index = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])[:, None]
        return decode_images(image_bytes, names_of(index))

    def detect(self, image_bytes):
        """Boxes, scores, landmarks and counts of the faces of each photo."""
        found = self.pipeline.detector.detect_graph(*self._decode(image_bytes))
        return {key: found[key] for key in ("boxes", "scores", "landmarks", "counts")}

    def embed_faces(self, image_bytes):
        """Every face of each photo, embedded: per face slot, zero past `counts`."""
        faces = self.pipeline.faces(*self._decode(image_bytes))
        counts = faces["counts"]
        slots = tf.where(tf.sequence_mask(counts, self.pipeline.max_faces))
        batch = tf.shape(counts, out_type=tf.int64)[0]

        def dense(values):
            shape = tf.concat([[batch, self.pipeline.max_faces], tf.shape(values, tf.int64)[1:]], 0)
            return tf.scatter_nd(slots, values, shape)

        keys = {"embeddings": "embedding", "frame_features": "frame_features"}
        keys.update((key, key) for key in ("boxes", "scores", "landmarks"))
        return {name: dense(faces[key]) for key, name in keys.items()} | {"counts": counts}

    def embed_set(self, image_bytes):
        """Each row's frames (non-empty strings) as one set: the head on their chosen faces."""
        mask = tf.strings.length(image_bytes) > 0
        where = tf.where(mask)
        images, sizes = decode_images(tf.gather_nd(image_bytes, where), names_of(where))
        chosen = self.pipeline.chosen_faces(images, sizes)
        shape = tf.shape(image_bytes, tf.int64)

        def dense(values):
            return tf.scatter_nd(
                where, values, tf.concat([shape, tf.shape(values, tf.int64)[1:]], 0)
            )

        pooled = self.pipeline.pool(dense(chosen["frame_features"]), mask)
        return {**pooled, "boxes": dense(chosen["boxes"]), "counts": dense(chosen["counts"])}


def warmup_inputs() -> dict[str, dict[str, np.ndarray]]:
    """One request per pipeline signature, `{signature: {input: array}}`: a PNG of two drawn
    faces that MTCNN finds (so detection, alignment and the backbone all run) and, for
    `embed_set`, a set of that photo, a blank PNG of another size (no face: a centre crop) and
    padding."""
    faces = np.concatenate([_drawn_face(160), _drawn_face(160)[:, ::-1]], axis=1)
    photo = tf.io.encode_png(faces).numpy()
    blank = tf.io.encode_png(np.full((90, 120, 3), 128, np.uint8)).numpy()
    return {
        "detect": {"image_bytes": np.array([photo, blank], object)},
        "embed_faces": {"image_bytes": np.array([photo], object)},
        "embed_set": {"image_bytes": np.array([[photo, blank, b""]], object)},
    }


def _drawn_face(size: int) -> np.ndarray:
    """uint8 (size, size, 3): a blurred cartoon face (skin oval, eyes, brows, nose, mouth)."""
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    image = np.empty((size, size, 3))
    image[:] = (90, 110, 130)

    def paint(cx, cy, rx, ry, colour):
        image[((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1] = colour

    paint(0, 0, 0.3, 0.4, (200, 160, 130))
    for side in (-1, 1):
        paint(0.12 * side, -0.08, 0.06, 0.03, (40, 30, 30))
        paint(0.12 * side, -0.16, 0.08, 0.015, (60, 45, 45))
    paint(0, 0.06, 0.03, 0.06, (150, 120, 98))
    paint(0, 0.2, 0.11, 0.03, (150, 60, 60))
    taps = np.exp(-0.5 * (np.arange(-9, 10) / 3.0) ** 2)
    image = np.pad(image, [(9, 9), (9, 9), (0, 0)], mode="edge")
    for axis in (0, 1):
        image = np.apply_along_axis(np.convolve, axis, image, taps / taps.sum(), mode="valid")
    return np.clip(np.round(image), 0, 255).astype(np.uint8)

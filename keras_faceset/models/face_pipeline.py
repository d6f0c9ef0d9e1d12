"""`FacePipeline`: photos in, every face's box, landmarks, chip and embedding out, in one graph.

uint8 images (a padded batch with true sizes) -> MTCNN (`keras_faceset.detect.Mtcnn`) -> the
preset's crop of every face (`keras_faceset.align.graph.FaceChips`) -> the task's per-frame
model (batch norm folded by default) -> unit face embeddings, and the faces as one set through
the task's head. Every step is a TensorFlow op inside `tf.function` (no Python per image or
per face), so the whole pipeline exports as one SavedModel (`keras_faceset.export.pipeline`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_faceset.align.graph import FaceChips
from keras_faceset.align.spec import CropSpec
from keras_faceset.detect import Mtcnn
from keras_faceset.models.fold import fold_batch_norm

IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
SIZES = tf.TensorSpec([None, 2], tf.int32, name="sizes")


class FacePipeline(tf.Module):
    """Detect, align and embed every face of a batch of photos (TensorFlow backend only).

    `frame_model` maps chips ``(N, S, S, 3)`` float32 0..255 to the head's per-frame inputs
    ``{"frame_embeddings": (N, D)[, "frame_features": (N, *shape)]}`` (a task's
    `frame_model`; `from_task` builds the pipeline from a task); `head` is the task's set head;
    `crop` the preset's `CropSpec` (``preset.crop_spec``), whose chip side S must be the
    frame model's input size. `detector`: default ``Mtcnn(max_faces=max_faces)`` (the settings
    of `MtcnnDetector`); each image keeps its `max_faces` largest faces.

    Calling it on uint8 RGB ``images (B, H, W, 3)`` (a padded batch: `sizes` (B, 2) the true
    height, width of each, default the full H, W) returns a dict of tensors:

    - per image: ``counts`` (B,) int32 faces found; ``chosen`` (B,) int32 the face row used
      for the set (-1: no face, the image's centre crop was used, as `align_faces` does).
    - per face, N rows ordered by image, then by detector score: ``image_index`` (N,) int32,
      ``boxes`` (N, 4) x1, y1, x2, y2, ``scores`` (N,), ``landmarks`` (N, 5, 2),
      ``chips`` (N, S, S, 3) float32 levels (`crop_face`'s), ``embeddings`` (N, D) unit
      frame embeddings (`FaceEmbedder.embed`'s), ``frame_features`` (N, F) what the head
      reads per frame, flattened (raw frame embedding, then its features; F = D without).
    - the B images as one set of frames, one face per frame: ``set_embedding`` (E,) and
      ``set_weights`` (B,). A frame's face is the one `align_faces` chooses (the largest,
      penalised by its distance from the image centre: facenet's rule, `select_face`); a
      frame without a face contributes its centre crop, as in `FaceEmbedder.embed_sets`.
    """

    def __init__(
        self,
        frame_model: keras.Model,
        head: keras.Model,
        crop: CropSpec | dict,
        max_faces: int = 16,
        detector: Mtcnn | None = None,
        name: str = "face_pipeline",
    ):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "FacePipeline runs TensorFlow ops; set KERAS_BACKEND=tensorflow to use it "
                f"(the backend is {keras.backend.backend()!r})"
            )
        super().__init__(name=name)
        self.crop = CropSpec.create(**crop) if isinstance(crop, dict) else crop
        if not isinstance(self.crop, CropSpec):
            raise TypeError(f"crop must be a CropSpec or its as_dict(), got {type(crop)}")
        side = tuple(frame_model.input_shape[1:3])
        if side != (self.crop.size, self.crop.size):
            raise ValueError(
                f"the crop cuts {self.crop.size} px chips but the frame model takes {side} "
                "images: give the crop spec of the preset the model belongs to"
            )
        self.detector = detector if detector is not None else Mtcnn(max_faces=max_faces)
        self.max_faces = self.detector.max_faces
        self.frame_model = frame_model
        self.head = head
        self.cut = FaceChips(self.crop, name="face_chips")
        outputs = frame_model.output
        self.embedding_dim = int(outputs["frame_embeddings"].shape[-1])
        features = outputs.get("frame_features")
        self.feature_shape = None if features is None else tuple(features.shape[1:])
        self.frame_dim = self.embedding_dim + int(np.prod(self.feature_shape or (0,)))
        signature = [IMAGES, SIZES]
        self._everything = tf.function(self._run, input_signature=signature, autograph=False)
        self.faces = tf.function(self._faces, input_signature=signature, autograph=False)
        self.chosen_faces = tf.function(self._chosen, input_signature=signature, autograph=False)
        self.pool = tf.function(
            self._pool,
            input_signature=[
                tf.TensorSpec([None, None, self.frame_dim], tf.float32, name="frame_features"),
                tf.TensorSpec([None, None], tf.bool, name="mask"),
            ],
            autograph=False,
        )

    @classmethod
    def from_task(
        cls,
        task: keras.Model,
        crop: CropSpec | dict,
        max_faces: int = 16,
        fold: bool = True,
        detector: Mtcnn | None = None,
    ) -> FacePipeline:
        """The pipeline of a task (`zoo.load(name, form="task")`, any `SetEmbeddingModel`) and
        its preset's crop; `fold` runs `fold_batch_norm` of its frame model (as `FaceEmbedder`
        does: the same outputs within 1e-4, fewer ops)."""
        frame_model = task.frame_model
        if fold:
            frame_model = fold_batch_norm(frame_model)
        return cls(frame_model, task.head, crop, max_faces=max_faces, detector=detector)

    def __call__(self, images, sizes=None) -> dict[str, tf.Tensor]:
        """Everything of the class docstring for uint8 ``images (B, H, W, 3)``."""
        return self._everything(*_inputs(images, sizes))

    def _run(self, images, sizes):
        found = self.detector.detect_graph(images, sizes)
        counts = found["counts"]
        faces = self._face_slots(counts)
        missing = tf.cast(tf.where(counts == 0)[:, 0], tf.int32)
        rows = self._rows(
            images,
            sizes,
            found,
            tf.concat([faces[:, 0], missing], axis=0),
            tf.concat([faces[:, 1], tf.zeros_like(missing)], axis=0),
            tf.concat([tf.ones_like(faces[:, 0], tf.bool), tf.zeros_like(missing, tf.bool)], 0),
        )
        n = tf.shape(faces)[0]
        # the chosen face's row, or the image's centre-crop row after the N face rows
        first = tf.cumsum(counts, exclusive=True)
        fallback = n + tf.cumsum(tf.cast(counts == 0, tf.int32), exclusive=True)
        row = tf.where(counts > 0, first + self._choice(found, sizes), fallback)
        frames = tf.gather(rows["frame_features"], row)[None]
        pooled = self._pool(frames, tf.ones(tf.shape(frames)[:2], tf.bool))
        out = {key: value[:n] for key, value in rows.items()}
        out.update(
            counts=counts,
            chosen=tf.where(counts > 0, row, -1),
            set_embedding=pooled["embedding"][0],
            set_weights=pooled["weights"][0],
        )
        return out

    def _faces(self, images, sizes):
        """Per face (no set): `counts` and the per-face outputs of the class docstring."""
        found = self.detector.detect_graph(images, sizes)
        faces = self._face_slots(found["counts"])
        found_rows = tf.ones_like(faces[:, 0], tf.bool)
        rows = self._rows(images, sizes, found, faces[:, 0], faces[:, 1], found_rows)
        return {**rows, "counts": found["counts"]}

    def _chosen(self, images, sizes):
        """One face per image (the set's frames): `frame_features` (B, F), `boxes` (B, 4) (0 for
        an image without a face), `scores` (B,) and `counts` (B,)."""
        found = self.detector.detect_graph(images, sizes)
        counts = found["counts"]
        index = tf.range(tf.shape(counts)[0])
        rows = self._rows(images, sizes, found, index, self._choice(found, sizes), counts > 0)
        has_face = (counts > 0)[:, None]
        return {
            "frame_features": rows["frame_features"],
            "boxes": tf.where(has_face, rows["boxes"], 0.0),
            "scores": tf.where(counts > 0, rows["scores"], 0.0),
            "counts": counts,
        }

    def _face_slots(self, counts) -> tf.Tensor:
        """(N, 2) int32 (image, slot) of every face found, image by image."""
        return tf.cast(tf.where(tf.sequence_mask(counts, self.max_faces)), tf.int32)

    def _choice(self, found, sizes) -> tf.Tensor:
        """(B,) slot of the face `select_face` keeps: the largest ``area - 2 |c - c_image|^2``
        (box centre c, image centre c_image; 0 for an image without a face)."""
        boxes = found["boxes"]
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        centre = tf.cast(sizes[:, ::-1], tf.float32)[:, None, :] / 2.0
        offset = (boxes[..., :2] + boxes[..., 2:]) / 2.0 - centre
        score = area - 2.0 * tf.reduce_sum(offset**2, axis=-1)
        valid = tf.sequence_mask(found["counts"], self.max_faces)
        return tf.argmax(tf.where(valid, score, -np.inf), axis=1, output_type=tf.int32)

    def _rows(self, images, sizes, found, image_index, slots, has_face) -> dict[str, tf.Tensor]:
        """Face rows `slots` of images `image_index` (centre crops where not `has_face`):
        detections, chips, unit embeddings and frame features."""
        at = tf.stack([image_index, slots], axis=1)
        boxes = tf.gather_nd(found["boxes"], at)
        landmarks = tf.gather_nd(found["landmarks"], at)
        chips = self.cut(images, image_index, boxes, landmarks, has_face, sizes)
        features = self._frame_features(chips)
        return {
            "image_index": image_index,
            "boxes": boxes,
            "scores": tf.gather_nd(found["scores"], at),
            "landmarks": landmarks,
            "chips": chips,
            "embeddings": tf.math.l2_normalize(features[:, : self.embedding_dim], axis=-1),
            "frame_features": features,
        }

    def _frame_features(self, chips) -> tf.Tensor:
        """`frame_feature_rows` of the chips; the frame model is skipped for no chips (some
        kernels reject a batch of 0)."""
        return tf.cond(
            tf.shape(chips)[0] > 0,
            lambda: frame_feature_rows(self.frame_model, chips, self.feature_shape),
            lambda: tf.zeros([0, self.frame_dim], tf.float32),
        )

    def _pool(self, frame_features, mask) -> dict[str, tf.Tensor]:
        return pool_frame_features(
            self.head, frame_features, mask, self.embedding_dim, self.feature_shape
        )


def frame_feature_rows(
    frame_model: keras.Model, chips, feature_shape: tuple[int, ...] | None
) -> tf.Tensor:
    """(N, F) float32 frame features, what a head reads per frame in one row: the raw frame
    embeddings of `chips` (N, S, S, 3) float32 by `frame_model`, then its
    ``"frame_features"`` flattened (when `feature_shape` is not None)."""
    out = frame_model(chips, training=False)
    parts = [out["frame_embeddings"]]
    if feature_shape is not None:
        size = int(np.prod(feature_shape))
        parts.append(tf.reshape(out["frame_features"], [tf.shape(chips)[0], size]))
    return tf.concat([tf.cast(part, tf.float32) for part in parts], axis=-1)


def pool_frame_features(
    head: keras.Model, frames, mask, embedding_dim: int, feature_shape: tuple[int, ...] | None
) -> dict[str, tf.Tensor]:
    """The head on sets of `frame_feature_rows` (B, T, F) with a mask (B, T), split into its
    inputs (the first `embedding_dim` values of a row, then the features reshaped to
    `feature_shape`): unit `embedding` (B, E) and `weights` (B, T), float32."""
    inputs = {"frame_embeddings": frames[..., :embedding_dim], "mask": mask}
    if feature_shape is not None:
        shape = tf.concat([tf.shape(frames)[:2], feature_shape], axis=0)
        inputs["frame_features"] = tf.reshape(frames[..., embedding_dim:], shape)
    out = head(inputs, training=False)
    embedding = tf.cast(out["embedding"], tf.float32)
    return {
        "embedding": tf.math.l2_normalize(embedding, axis=-1),
        "weights": tf.cast(out["weights"], tf.float32),
    }


def _inputs(images, sizes) -> tuple[tf.Tensor, tf.Tensor]:
    """`images` uint8 (B, H, W, 3) and `sizes` (B, 2) int32 (default: every image's H, W)."""
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8 or images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 RGB (B, H, W, 3), got {images.dtype.name} {images.shape}: "
            "add a batch axis for one image, drop alpha, repeat gray to 3 channels"
        )
    if sizes is None:
        sizes = tf.tile(tf.shape(images)[None, 1:3], [tf.shape(images)[0], 1])
    return images, tf.convert_to_tensor(sizes, tf.int32)

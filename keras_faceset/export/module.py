"""The endpoints of a `keras.export.ExportArchive`: the SavedModel's serving signatures (four;
seven for a zoo preset, whose photo signatures are `keras_faceset.export.pipeline`'s).

Batch and set sizes and image sizes are dynamic; images are uint8 RGB, cast to float32 and
resized in the graph (bilinear, antialiased) to the backbone's input size when they differ.
Every `embedding` output is L2-normalised float32. Per-frame features `[N, F]` (what the head
reads per frame: the raw frame embedding, then any backbone features, flattened) are what
`embed_images` and `embed_encoded` return as `frame_features` and what `aggregate` takes, so
`aggregate` on cached frame features equals `serving_default` on the images for every head.
"""

from __future__ import annotations

import functools
import os

import keras
import tensorflow as tf

from keras_faceset.embedder import PRECISIONS
from keras_faceset.export.pipeline import (
    PipelineEndpoints,
    decode_within_size,
    names_of,
    preset_crop,
)
from keras_faceset.export.spec import ExportSpec
from keras_faceset.models.face_pipeline import (
    FacePipeline,
    frame_feature_rows,
    pool_frame_features,
)
from keras_faceset.models.fold import fold_batch_norm

SIGNATURES = ("serving_default", "embed_images", "aggregate", "embed_encoded")
"""Signature names, in the order they are documented and warmed up."""

MASK_MISMATCH = "mask must have shape [batch, set_size] matching the first two axes of"
NOT_FINITE = (
    "embeddings hold NaN or Inf in an unmasked frame: drop that frame or set its mask to False"
)


class ServingModule:
    """`serving_default` (image sets), `embed_images`, `aggregate` (frame features) and
    `embed_encoded` (JPEG/PNG bytes), sharing one backbone and one head, as the endpoints of a
    `keras.export.ExportArchive` (`write_out` saves them). `embed_images` and `embed_encoded`
    return `embedding`, each image's embedding as a set of one frame (for the mean head and
    heads without a projection, its L2-normalised frame embedding), and `frame_features`, the
    per-frame input of `aggregate`. The export of a zoo preset (`preset_crop`) also serves
    photos: `detect`, `embed_faces` and `embed_set` (`keras_faceset.export.pipeline`, run by
    `pipeline`, a `FacePipeline`; None for other models). `signatures` names every endpoint.

    `fold=True` (the default) serves `fold_batch_norm` of the per-frame model: every batch norm
    (and dlib's `Affine`) after a convolution or dense layer folded into it, the same outputs up
    to float rounding in fewer ops. `float16=True` runs the backbone under the `mixed_float16`
    policy (a copy; weights stay float32, outputs are cast to float32); `precision="bfloat16"`
    computes the folded per-frame model in bfloat16 (`fold_batch_norm(..., dtype=
    "mixed_bfloat16")`, for CPUs with AVX512_BF16 or AMX), outputs float32. `xla=True` compiles the
    backbone and head with XLA (`jit_compile`); decoding, resizing and input checks stay outside
    the compiled part.
    """

    def __init__(
        self,
        spec: ExportSpec,
        float16: bool = False,
        xla: bool = False,
        fold: bool = True,
        precision: str = "float32",
    ):
        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise ValueError(f"SavedModel export needs KERAS_BACKEND=tensorflow, got {backend!r}.")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        if precision == "bfloat16" and (float16 or not fold):
            raise ValueError(
                "precision='bfloat16' computes the folded graph in bfloat16: it goes with "
                "neither float16 (--float16) nor fold=False (--no-fold)."
            )
        self.head = spec.resolved_head()
        frames = spec.frame_model(_mixed_float16_copy(spec.backbone) if float16 else None)
        dtype = "mixed_bfloat16" if precision == "bfloat16" else None
        self.frames = _folded(frames, dtype) if fold else frames
        self.height, self.width = spec.input_size
        self.embedding_dim = spec.embedding_dim
        self.feature_shape = spec.feature_shape
        self.frame_dim = dim = spec.frame_dim
        image = tf.TensorSpec([None, self.height, self.width, 3], tf.float32)
        self._embed = tf.function(
            functools.partial(frame_feature_rows, self.frames, feature_shape=self.feature_shape),
            input_signature=[image],
            jit_compile=xla,
            autograph=False,
        )
        self._pool = tf.function(
            functools.partial(
                pool_frame_features,
                self.head,
                embedding_dim=self.embedding_dim,
                feature_shape=self.feature_shape,
            ),
            input_signature=[
                tf.TensorSpec([None, None, dim], tf.float32),
                tf.TensorSpec([None, None], tf.bool),
            ],
            jit_compile=xla,
            autograph=False,
        )
        mask = tf.TensorSpec([None, None], tf.bool, name="mask")
        endpoints = {
            "serving_default": (
                self._serve_sets,
                tf.TensorSpec([None, None, None, None, 3], tf.uint8, name="images"),
                mask,
            ),
            "embed_images": (
                self._embed_images,
                tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
            ),
            "aggregate": (
                self._aggregate,
                tf.TensorSpec([None, None, dim], tf.float32, name="embeddings"),
                mask,
            ),
            "embed_encoded": (
                self._embed_encoded,
                tf.TensorSpec([None], tf.string, name="image_bytes"),
            ),
        }
        # Only `add_endpoint`: the archive saves the variables its endpoints read, which is what
        # both loaders (eager, and TF1 graph mode, TF Serving's path) restore and read.
        # `archive.track(model)` would add the Keras variables a second time (dlib_resnet's
        # variables/ grows from 22 MB to 45 MB) and is needed only for lookup tables.
        self.archive = keras.export.ExportArchive()
        # a zoo preset's export also serves photos: detect, align and embed in the graph
        crop = preset_crop(spec)
        self.pipeline = None if crop is None else FacePipeline(self.frames, self.head, crop)
        if self.pipeline is not None:
            endpoints.update(PipelineEndpoints(self.pipeline).endpoints)
        self.signatures = tuple(endpoints)
        for name in self.signatures:
            fn, *specs = endpoints[name]
            function = self.archive.add_endpoint(name, _checked(fn, specs), input_signature=specs)
            setattr(self, name, function)

    def write_out(self, path: str | os.PathLike) -> None:
        """Save the SavedModel with the four signatures to the directory `path`."""
        self.archive.write_out(str(path), verbose=False)

    def _serve_sets(self, images, mask):
        """images `[B, T, H, W, 3]` uint8 + mask `[B, T]` -> embedding `[B, E]`, weights `[B, T]`.

        Only unmasked frames go through the backbone; masked ones get zero frame features.
        The head receives the raw frame embeddings (and features), as in `SetEmbeddingModel`.
        """
        shape = tf.shape(images)
        with tf.control_dependencies([_assert_mask(mask, shape, "images [B, T, H, W, 3]")]):
            flat = tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0))
        valid = tf.where(tf.reshape(mask, [-1]))
        frames = self._embed_uint8(tf.gather_nd(flat, valid))
        frames = tf.scatter_nd(valid, frames, [shape[0] * shape[1], self.frame_dim])
        return self._pool(tf.reshape(frames, [shape[0], shape[1], self.frame_dim]), mask)

    def _embed_images(self, images):
        """images `[N, H, W, 3]` uint8 -> embedding `[N, E]`, frame_features `[N, F]`."""
        return self._single_frame_sets(self._embed_uint8(images))

    def _aggregate(self, embeddings, mask):
        """frame features `[B, T, F]` + mask `[B, T]` -> embedding `[B, E]`, weights `[B, T]`.

        A NaN or Inf in an unmasked frame fails the request (InvalidArgument, `NOT_FINITE`);
        masked frames may hold anything (they get weight 0)."""
        with tf.control_dependencies(
            [_assert_mask(mask, tf.shape(embeddings), "embeddings [B, T, F]")]
        ):
            unmasked = tf.boolean_mask(embeddings, mask)
        with tf.control_dependencies([tf.debugging.assert_all_finite(unmasked, NOT_FINITE)]):
            embeddings = tf.identity(embeddings)
        return self._pool(embeddings, mask)

    def _embed_encoded(self, image_bytes):
        """JPEG/PNG/BMP/GIF bytes `[N]` -> embedding `[N, E]`, frame_features `[N, F]` (first
        frame of an animation); photos of more than `MAX_PIXELS` pixels fail before they are
        decoded."""

        def decode(item):
            data, name = item
            image = decode_within_size(data, name, _decode_first_frame)
            return self._resize(image[tf.newaxis])[0]

        names = names_of(tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])[:, None])
        size = tf.TensorSpec([self.height, self.width, 3], tf.float32)
        images = tf.map_fn(decode, (image_bytes, names), fn_output_signature=size)
        return self._single_frame_sets(self._embed_nonempty(images))

    def _single_frame_sets(self, frames):
        """Each image's embedding as a one-frame set, and its frame features `[N, F]`."""
        ones = tf.ones([tf.shape(frames)[0], 1], tf.bool)
        embedding = self._pool(frames[:, tf.newaxis], ones)["embedding"]
        return {"embedding": embedding, "frame_features": frames}

    def _embed_uint8(self, images):
        return self._embed_nonempty(self._resize(images))

    def _resize(self, images):
        """uint8 `[N, h, w, 3]` -> float32 `[N, H, W, 3]`, resized only when `(h, w) != (H, W)`."""
        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        same = tf.logical_and(tf.equal(shape[1], self.height), tf.equal(shape[2], self.width))
        images = tf.cond(
            same,
            lambda: images,
            lambda: tf.image.resize(
                images, (self.height, self.width), method="bilinear", antialias=True
            ),
        )
        return tf.ensure_shape(images, [None, self.height, self.width, 3])

    def _embed_nonempty(self, images):
        """The backbone skipped for an empty batch (some kernels reject a batch of 0)."""
        return tf.cond(
            tf.shape(images)[0] > 0,
            lambda: self._embed(images),
            lambda: tf.zeros([0, self.frame_dim], tf.float32),
        )


def _checked(fn, input_signature: list[tf.TensorSpec]):
    """`fn` checking its inputs' runtime shapes (EnsureShape: a SignatureDef call does not
    enforce the declared ranks and static dimensions by itself)."""

    @functools.wraps(fn)  # keeps the argument names, which become the signature's input keys
    def checked(*inputs):
        pairs = zip(inputs, input_signature, strict=True)
        return fn(*(tf.ensure_shape(x, spec.shape) for x, spec in pairs))

    return checked


def _folded(frames: keras.Model, dtype: str | None) -> keras.Model:
    """`fold_batch_norm(frames, dtype)`, with the remedy in the error when the model cannot be
    cloned."""
    try:
        return fold_batch_norm(frames, dtype=dtype)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise ValueError(
            f"folding batch norm into the convolutions of {frames.name} needs a copy of the "
            f"model, which failed (export without folding: fold=False, CLI: --no-fold): {error}"
        ) from error


def _assert_mask(mask, shape, what: str):
    return tf.debugging.assert_equal(
        tf.shape(mask), shape[:2], message=f"{MASK_MISMATCH} {what}", summarize=4
    )


def _mixed_float16_copy(model: keras.Model) -> keras.Model:
    """A copy of `model` computing in float16 with float32 weights (same values).

    The input preprocessing (the layers before the first one with weights, e.g. per-image
    standardisation, whose sums over an image overflow float16) stays float32.
    """
    if hasattr(model, "feature_extractor"):  # rebuilt by its class, which clone_model drops
        copy = type(model).from_config(model.get_config())
    else:
        copy = keras.models.clone_model(model)
    keep = set()
    for layer in copy.layers:
        if layer.weights:
            break
        keep.add(id(layer))
    # `_flatten_layers` reaches nested models and sub-layers that `model.layers` hides.
    for layer in copy._flatten_layers(include_self=True, recursive=True):
        if id(layer) not in keep:
            layer.dtype_policy = "mixed_float16"
    copy.set_weights(model.get_weights())
    return copy


def _decode_first_frame(data: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(data, channels=3, expand_animations=False)

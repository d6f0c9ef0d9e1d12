"""Shared machinery of the set-recognition models: set heads, the backbone + head task, helpers.

Two forms of every set model, with the same outputs `{"embedding": (B, D), "weights": (B, T)}`:

* the **head** (`SetHead` subclasses: `NANHead`, `QANHead`, `SeqFaceHead`) works on precomputed
  frame embeddings `{"frame_embeddings": (B, T, dim), "mask": (B, T)}` (plus
  `"frame_features"` for a QAN head that scores quality from backbone features): fast training
  on cached embeddings, serving of cached galleries;
* the **task** (`SetEmbeddingModel` subclasses: `NAN`, `QAN`, `SeqFace`) takes whole image
  sets `{"images": (B, T, H, W, 3), "mask": (B, T)}`, folds the frames into the batch
  (`(B*T, H, W, 3)`), runs the backbone once, unfolds and calls its head. Its `backbone` and
  `head` attributes are the very models it calls, so `task == head ∘ backbone` exactly.

The mask (bool, True = real frame) is required. Masked frames still run through the backbone
but are zeroed first (so padding garbage reaches neither outputs nor gradients) and get weight
0. The embedding is L2-normalised; the weights sum to 1 over the unmasked frames of each set.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers import L2Normalize, L2SphereFace, NormalizedSoftmax, SphereFace
from keras_faceset.layers.masking import check_frame_mask

CLASSIFIERS = ("softmax", "l2_sphereface")


@keras.saving.register_keras_serializable(package="keras_faceset")
class MaskFrames(keras.layers.Layer):
    """`[frames (B, T, ...), mask (B, T)] -> frames` with masked frames set to exactly 0."""

    def call(self, inputs):
        frames, mask = inputs
        if len(frames.shape) < 3:
            raise ValueError(
                f"MaskFrames expects frames (batch, set_size, ...), got shape "
                f"{tuple(frames.shape)}."
            )
        mask = check_frame_mask(mask, frames.shape[:2], "MaskFrames")
        keep = ops.reshape(mask, (*ops.shape(mask), *([1] * (len(frames.shape) - 2))))
        return ops.where(keep, frames, ops.zeros_like(frames))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="keras_faceset")
class FramesToBatch(keras.layers.Layer):
    """Fold the frame axis into the batch: `(B, T, ...) -> (B*T, ...)` (dynamic B and T)."""

    def call(self, frames):
        return ops.reshape(frames, (-1, *frames.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, frames = input_shape[:2]
        return (None if None in (batch, frames) else batch * frames, *input_shape[2:])


@keras.saving.register_keras_serializable(package="keras_faceset")
class BatchToFrames(keras.layers.Layer):
    """Unfold `[flat (B*T, ...), mask (B, T)] -> (B, T, ...)`, the inverse of `FramesToBatch`."""

    def call(self, inputs):
        flat, mask = inputs
        batch, frames = ops.shape(mask)[0], ops.shape(mask)[1]
        return ops.reshape(flat, (batch, frames, *flat.shape[1:]))

    def compute_output_shape(self, input_shape):
        flat_shape, mask_shape = input_shape
        return (*mask_shape[:2], *flat_shape[1:])


def frame_feature_shape(shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """A head's per-frame feature shape: `C` -> `(C,)` (pooled vectors) or `(H, W, C)` (maps)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) not in (1, 3) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"frame feature shape must be a positive int C (pooled vectors) or (H, W, C) "
            f"(feature maps), got {shape!r}."
        )
    return shape


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


class SetHead(keras.Model):
    """Base of the set heads: frame embeddings (+ features) and a mask -> set embedding.

    Graph: mask the frames -> optional per-frame `Dense(projection_dim)` ("projection") ->
    L2-normalise each frame (`f_k`) -> the subclass's aggregation (`r`, weights) ->
    L2-normalise `r` ("embedding"). A set of one frame thus gives `f_1`.

    Subclasses build their aggregation in `__init__` between `_frame_graph` and
    `_finish`, and implement `frame_log_weights` (used by `StreamingAggregator`).
    """

    def _frame_graph(
        self, dim: int, projection_dim: int | None, feature_shape: tuple[int, ...] | None
    ):
        """Inputs dict and the normalised frame features `f` (B, T, D)."""
        dim = _positive_int("dim", dim)
        if projection_dim is not None:
            _positive_int("projection_dim", projection_dim)
        inputs = {
            "frame_embeddings": keras.Input((None, dim), name="frame_embeddings"),
            "mask": keras.Input((None,), dtype="bool", name="mask"),
        }
        if feature_shape is not None:
            inputs["frame_features"] = keras.Input((None, *feature_shape), name="frame_features")
        frames = MaskFrames(name="mask_frames")([inputs["frame_embeddings"], inputs["mask"]])
        if projection_dim is not None:
            frames = keras.layers.Dense(projection_dim, name="projection")(frames)
        return inputs, L2Normalize(name="frame_normalize")(frames)

    def _finish(
        self, inputs: dict, pooled, weights, name: str, extra_outputs: dict | None = None, **kwargs
    ) -> None:
        outputs = {"embedding": L2Normalize(name="embedding")(pooled), "weights": weights}
        super().__init__(
            inputs=inputs, outputs={**outputs, **(extra_outputs or {})}, name=name, **kwargs
        )

    @property
    def dim(self) -> int:
        """Size of the frame embeddings the head takes."""
        return self.input["frame_embeddings"].shape[-1]

    @property
    def output_dim(self) -> int:
        """Size of the set embedding."""
        return self.output["embedding"].shape[-1]

    @property
    def projection_dim(self) -> int | None:
        """Size of the per-frame projection, None without one."""
        return self.get_layer("projection").units if self.has_projection else None

    @property
    def has_projection(self) -> bool:
        return any(layer.name == "projection" for layer in self.layers)

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        """Per-frame shape of the `"frame_features"` input, None when the head takes none."""
        features = self.input.get("frame_features")
        return None if features is None else tuple(features.shape[2:])

    @property
    def supports_constant_state(self) -> bool:
        """True when streaming needs O(1) state per track (a weighted running sum)."""
        return True

    def project(self, frame_embeddings):
        """The per-frame projection (identity without one), on any leading shape."""
        if not self.has_projection:
            return frame_embeddings
        return self.get_layer("projection")(frame_embeddings)

    def encode_frames(self, frame_embeddings):
        """`(N, dim)` frame embeddings -> the normalised frame features `f` (N, D)."""
        frames = self.project(ops.convert_to_tensor(frame_embeddings, "float32"))
        return self.get_layer("frame_normalize")(frames)

    def frame_log_weights(self, features, frame_embeddings, frame_features=None):
        """Unnormalised log-weights `ℓ_k` (N,) of single frames, so that the set embedding is
        `normalize(Σ exp(ℓ_k) f_k / Σ exp(ℓ_k))` (for heads with `supports_constant_state`)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dim": self.dim,
            "projection_dim": self.projection_dim,
        }

    @classmethod
    def from_config(cls, config: dict) -> SetHead:
        return cls(**config)


def backbone_dim(backbone: keras.Model) -> int:
    shape = backbone.output_shape
    if not isinstance(shape, tuple) or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"the backbone must map an image to one embedding (batch, dim), got output shape "
            f"{shape}."
        )
    return shape[-1]


@keras.saving.register_keras_serializable(package="keras_faceset")
class SetEmbeddingModel(keras.Model):
    """A set-recognition task: image sets -> `backbone` per frame -> `head` -> set embedding.

    Inputs `{"images": (B, T, H, W, 3), "mask": (B, T) bool}`; outputs `{"embedding": (B, D),
    "weights": (B, T)}`. The backbone must map `(N, H, W, 3)` to `(N, dim)`; a head that takes
    `"frame_features"` also needs `backbone.feature_extractor()["feature_map"]` (a
    `(N, h, w, C)` map): a `(C,)` feature input gets its global average (for dlib's ResNet that
    is its "pooled" 256-d vector, for FaceNet the 1792-d pooled map), an `(h, w, C)` input the
    map itself, and a `(T,)` input of the size of the extractor's "texture" output (dlib: 448)
    those texture statistics. Train with `compile(loss={"embedding": ...})` and
    `fit(x, {"embedding": y})`; freeze `model.backbone.trainable = False` to train the head only.
    """

    head_class: type[SetHead] = SetHead

    def __init__(self, backbone: keras.Model, head: SetHead, name: str | None = None, **kwargs):
        if not isinstance(head, self.head_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.head_class.__name__}, got "
                f"{type(head).__name__}."
            )
        dim = backbone_dim(backbone)
        if dim != head.dim:
            raise ValueError(f"the backbone gives {dim}-d embeddings, the head takes {head.dim}-d.")
        images = keras.Input((None, *backbone.input_shape[1:]), name="images")
        mask = keras.Input((None,), dtype="bool", name="mask")
        flat = FramesToBatch(name="frames_to_batch")(MaskFrames(name="mask_frames")([images, mask]))
        head_inputs = {"mask": mask}
        if head.feature_shape is None:
            embeddings = backbone(flat)
        else:
            frame_outputs = feature_extractor_of(backbone)(flat)
            embeddings = frame_outputs["embedding"]
            features = _frame_features(frame_outputs, head.feature_shape)
            head_inputs["frame_features"] = BatchToFrames(name="unfold_features")([features, mask])
        head_inputs["frame_embeddings"] = BatchToFrames(name="unfold_embeddings")(
            [embeddings, mask]
        )
        super().__init__(
            inputs={"images": images, "mask": mask},
            outputs=head(head_inputs),
            name=name or head.name.removesuffix("_head"),
            **kwargs,
        )
        self.backbone = backbone
        self.head = head

    @classmethod
    def from_backbone(cls, backbone: keras.Model, **head_kwargs) -> SetEmbeddingModel:
        """The task with a new head (random/neutral weights) sized for `backbone`."""
        return cls(backbone, cls.head_class(dim=backbone_dim(backbone), **head_kwargs))

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
        }

    @classmethod
    def from_config(cls, config: dict) -> SetEmbeddingModel:
        config = dict(config)
        for key in ("backbone", "head"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def feature_extractor_of(backbone: keras.Model) -> keras.Model:
    if not hasattr(backbone, "feature_extractor"):
        raise ValueError(
            f"the head takes frame features, so the backbone needs a feature_extractor() "
            f"method; {type(backbone).__name__} has none."
        )
    return backbone.feature_extractor()


def frame_inputs_model(
    backbone: keras.Model, feature_shape: tuple[int, ...] | None = None
) -> keras.Model:
    """Images `(N, H, W, 3)` -> a head's per-frame inputs, computed as `SetEmbeddingModel`
    computes them: `{"frame_embeddings": (N, dim)}`, plus `"frame_features"`
    `(N, *feature_shape)` when `feature_shape` is given (a head's `feature_shape`). For caching
    or serving per-frame inputs (`keras_faceset.export`)."""
    images = keras.Input(backbone.input_shape[1:], name="images")
    name = f"{backbone.name}_frame_inputs"
    if feature_shape is None:
        return keras.Model(images, {"frame_embeddings": backbone(images)}, name=name)
    outputs = feature_extractor_of(backbone)(images)
    features = _frame_features(outputs, tuple(feature_shape))
    outputs = {"frame_embeddings": outputs["embedding"], "frame_features": features}
    return keras.Model(images, outputs, name=name)


def _frame_features(extracted: dict, feature_shape: tuple[int, ...]):
    """The per-frame quality input named by its shape: the feature map `(h, w, C)`, its global
    average `(C,)`, or the extractor's "texture" statistics `(T,)` (dlib: 448)."""
    feature_map = extracted["feature_map"]
    sources = {tuple(feature_map.shape[1:]): lambda: feature_map}
    sources.setdefault(
        tuple(feature_map.shape[-1:]),
        lambda: keras.layers.GlobalAveragePooling2D(name="pool_features")(feature_map),
    )
    if "texture" in extracted:
        sources.setdefault(tuple(extracted["texture"].shape[1:]), lambda: extracted["texture"])
    if feature_shape not in sources:
        raise ValueError(
            f"the head takes frame features of shape {feature_shape}; the backbone gives "
            f"{' or '.join(str(shape) for shape in sources)} (feature map, its average"
            f"{', texture statistics' if 'texture' in extracted else ''})."
        )
    return sources[feature_shape]()


def set_embedding_model(backbone: keras.Model, head: SetHead) -> SetEmbeddingModel:
    """`head ∘ backbone` on image sets: the task class of `head` (e.g. `NAN` for a `NANHead`)."""
    tasks = [cls for cls in _task_classes() if isinstance(head, cls.head_class)]
    if not tasks:
        raise ValueError(f"head must be a SetHead, got {type(head).__name__}.")
    return max(tasks, key=lambda cls: len(cls.head_class.__mro__))(backbone, head)


def _task_classes() -> list[type[SetEmbeddingModel]]:
    found, pending = [], [SetEmbeddingModel]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def classifier_layer(classifier: str | keras.layers.Layer, num_classes: int):
    """The identification layer: `"softmax"` -> `Dense(num_classes)` logits; `"l2_sphereface"`
    -> `L2SphereFace(num_classes)` (SeqFace's chief loss); a layer instance (e.g. a margin head
    such as `ArcFace(num_classes)`) is returned as is."""
    if isinstance(classifier, keras.layers.Layer):
        return classifier
    if classifier not in CLASSIFIERS:
        raise ValueError(
            f"Unknown classifier {classifier!r}; expected one of {CLASSIFIERS} or a layer such "
            "as keras_faceset.layers.ArcFace(num_classes)."
        )
    num_classes = _positive_int("num_classes", num_classes)
    if classifier == "softmax":
        return keras.layers.Dense(num_classes, name="classifier")
    return L2SphereFace(num_classes, name="classifier")


def needs_labels(layer: keras.layers.Layer) -> bool:
    """Margin heads (NormalizedSoftmax, SphereFace and their subclasses) take labels."""
    return isinstance(layer, (NormalizedSoftmax, SphereFace))


def identification_model(
    set_model: keras.Model, num_classes: int, classifier: str | keras.layers.Layer = "softmax"
) -> keras.Model:
    """Identification training graph around a head or a task (NAN's identification mode).

    Inputs: `set_model`'s inputs (plus `"labels"` (B,) int for a margin head); outputs:
    `{"embedding", "weights", "logits": (B, num_classes)}`, sharing `set_model`'s weights.
    Train with `compile(loss={"logits": SparseCategoricalCrossentropy(from_logits=True)})`.
    """
    inputs = {
        key: keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=key)
        for key, tensor in set_model.input.items()
    }
    outputs = dict(set_model(inputs))
    layer = classifier_layer(classifier, num_classes)
    if needs_labels(layer):
        inputs["labels"] = keras.Input((), dtype="int32", name="labels")
        outputs["logits"] = layer([outputs["embedding"], inputs["labels"]])
    else:
        outputs["logits"] = layer(outputs["embedding"])
    return keras.Model(inputs, outputs, name=f"{set_model.name}_identification")

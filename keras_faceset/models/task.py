"""The set task: image sets -> backbone per frame -> head -> set embedding (head ∘ backbone).

`SetEmbeddingModel` (subclasses `MeanSet`, `NAN`, `QAN`, `SeqFace`) takes whole image sets
`{"images": (B, T, H, W, 3), "mask": (B, T)}`, folds the frames into the batch (`(B*T, H, W,
3)`), runs the backbone once, unfolds and calls its head. Its `backbone` and `head` attributes
are the very models it calls; `frame_model` is its first stage alone (images -> the head's
per-frame inputs, sharing the backbone's weights), which batched inference runs on the real
frames only (`keras_faceset.models.set_inference`).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.models.set_head import MaskFrames, SetHead


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
    `fit(x, {"embedding": y})`; `model.backbone.trainable = False` (what `zoo.load` gives by
    default) trains the head only, and stays so through a `.keras` round trip.
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
        backbone_trainable = backbone.trainable
        images = keras.Input((None, *backbone.input_shape[1:]), name="images")
        mask = keras.Input((None,), dtype="bool", name="mask")
        flat = FramesToBatch(name="frames_to_batch")(MaskFrames(name="mask_frames")([images, mask]))
        frame_model = frame_inputs_model(backbone, head.feature_shape)
        head_inputs = {
            key: BatchToFrames(name=f"unfold_{key}")([value, mask])
            for key, value in frame_model(flat).items()
        }
        super().__init__(
            inputs={"images": images, "mask": mask},
            outputs=head({**head_inputs, "mask": mask}),
            name=name or head.name.removesuffix("_head"),
            **kwargs,
        )
        # Keras sets the task's `trainable` on every layer it holds (also when loading a
        # `.keras` file), and re-setting an unchanged `backbone.trainable` is a no-op: give a
        # frozen backbone's layers their flag back one by one.
        for layer in backbone.layers:
            layer.trainable = backbone_trainable
        self.frame_model = frame_model
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

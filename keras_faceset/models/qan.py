"""Quality Aware Network (Liu et al., "Quality Aware Network for Set to Set Recognition",
CVPR 2017): set embedding = quality-weighted mean of the frame embeddings."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers import QualityHead, QualityPooling
from keras_faceset.models.set_head import SetHead, frame_feature_shape
from keras_faceset.models.task import SetEmbeddingModel, backbone_dim, feature_extractor_of

QUALITY_INPUTS = ("pooled", "texture", "feature_map", "embedding")


@keras.saving.register_keras_serializable(package="keras_faceset")
class QANHead(SetHead):
    """QAN quality generation + set pooling on frame embeddings.

    Quality branch `μ_k = QualityHead(u_k) ∈ (0, 1)`, feature branch `f_k = x_k / ‖x_k‖`,
    `R_a = Σ μ_k f_k / Σ μ_k` (eq. 1). Output `{"embedding": R_a / ‖R_a‖ (B, D), "weights":
    μ_k / Σ μ (B, T), "quality": μ (B, T)}`; μ starts equal for every frame (mean pooling).
    No quality labels: train the set embedding with a set triplet loss,
    `compile(loss={"embedding": TripletLoss()})`.

    The quality input `u_k` per frame (`feature_shape`):

    * `None`: the frame embedding itself (`QualityHead` on vectors);
    * `C` (int): an extra input `"frame_features"` (B, T, C), the backbone's last feature map
      globally averaged (dlib ResNet: its 256-d "pooled" vector; FaceNet: the 1792-d pooled
      Block8 map): cheap to cache next to the embeddings, and the image-set `QAN` computes the
      same vector, so one head serves images and cached features; or, when `C` is the size of
      the backbone's "texture" output (dlib ResNet: 448), `TextureStatistics` of its early
      maps, which track image degradation better (the shipped `qan`);
    * `(h, w, C)`: `"frame_features"` (B, T, h, w, C) is the feature map itself (QualityHead's
      conv branch, as in the paper's quality generation unit; bulky to cache).

    Inputs: `{"frame_embeddings": (B, T, dim), ["frame_features": ...], "mask": (B, T)}`.

    Args:
        dim: frame embedding size.
        feature_shape: see above.
        filters, kernel_size, initial_bias: the `QualityHead`'s.
        projection_dim: optional per-frame `Dense` before normalising.
        temperature: `T > 0`: frame weights `μ_k^(1/T) / Σ_j μ_j^(1/T)` (> 1: closer to mean
            pooling; `QualityPooling`). A setting of the pooling, not of the weights: 1 (the
            default) is eq. 1; the "quality" output stays μ.
    """

    def __init__(
        self,
        dim: int = 128,
        feature_shape: int | tuple[int, ...] | None = None,
        filters: int = 64,
        kernel_size: int = 3,
        initial_bias: float = 1.0,
        projection_dim: int | None = None,
        temperature: float = 1.0,
        name: str = "qan_head",
        **kwargs,
    ):
        shape = None if feature_shape is None else frame_feature_shape(feature_shape)
        inputs, features = self._frame_graph(dim, projection_dim, shape)
        quality_input = inputs.get("frame_features", inputs["frame_embeddings"])
        quality = QualityHead(filters, kernel_size, initial_bias, name="quality")(
            quality_input, mask=inputs["mask"]
        )
        pooling = QualityPooling(return_weights=True, temperature=temperature, name="aggregation")
        pooled, weights = pooling([features, quality, inputs["mask"]])
        self._finish(inputs, pooled, weights, name, {"quality": quality}, **kwargs)
        quality_layer = self.get_layer("quality")
        self.filters = quality_layer.filters
        self.kernel_size = quality_layer.kernel_size
        self.initial_bias = quality_layer.initial_bias
        self.temperature = pooling.temperature

    def frame_log_weights(self, features, frame_embeddings, frame_features=None):
        """`log μ_k / T` (−inf for μ_k = 0)."""
        inputs = frame_embeddings if self.feature_shape is None else frame_features
        frames = ops.expand_dims(ops.convert_to_tensor(inputs, "float32"), 1)
        return ops.log(self.get_layer("quality")(frames)[:, 0]) / self.temperature

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "feature_shape": self.feature_shape,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "initial_bias": self.initial_bias,
            "temperature": self.temperature,
        }


@keras.saving.register_keras_serializable(package="keras_faceset")
class QAN(SetEmbeddingModel):
    """QAN on image sets: the backbone's trunk feeds a feature branch (its embedding) and a
    quality branch (its last feature map) -> `QANHead`. Outputs `{"embedding", "weights",
    "quality"}`."""

    head_class = QANHead

    @classmethod
    def from_backbone(
        cls, backbone: keras.Model, quality_input: str = "pooled", **head_kwargs
    ) -> QAN:
        """A QAN with a new head whose quality branch reads `quality_input`: `"pooled"`
        (the averaged feature map, default), `"texture"` (the extractor's texture statistics),
        `"feature_map"` or `"embedding"`."""
        if quality_input not in QUALITY_INPUTS:
            raise ValueError(
                f"Unknown quality_input {quality_input!r}; expected one of {QUALITY_INPUTS}."
            )
        feature_shape = None
        if quality_input != "embedding":
            extracted = feature_extractor_of(backbone).output
            feature_map = extracted["feature_map"]
            if quality_input == "feature_map":
                feature_shape = tuple(feature_map.shape[1:])
            elif quality_input == "pooled":
                feature_shape = feature_map.shape[-1]
            elif "texture" in extracted:
                feature_shape = extracted["texture"].shape[-1]
            else:
                raise ValueError(f"{type(backbone).__name__} has no texture statistics output.")
        head = QANHead(backbone_dim(backbone), feature_shape=feature_shape, **head_kwargs)
        return cls(backbone, head)

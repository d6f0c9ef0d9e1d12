"""Neural Aggregation Network (Yang et al., "Neural Aggregation Network for Video Face
Recognition", CVPR 2017): attention-weighted pooling of normalised frame embeddings."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers import AttentionAggregation
from keras_faceset.models.set_head import MaskFrames, SetHead
from keras_faceset.models.task import SetEmbeddingModel


@keras.saving.register_keras_serializable(package="keras_faceset")
class NANHead(SetHead):
    """NAN aggregation module on frame embeddings.

    `f_k = x_k / ‖x_k‖`, `e_k = qᵀ f_k`, `a = softmax(e)` over unmasked frames,
    `r_0 = Σ_k a_k f_k` (eqs. 1-3); each further block uses `q_1 = tanh(W r_0 + b)` (eq. 4).
    Output `{"embedding": r / ‖r‖ (B, D), "weights": a (B, T)}` (the last block's attention).
    All attention weights start at zero, i.e. as mean pooling. The paper trains this module
    alone on fixed CNN features with the contrastive loss: `compile(loss={"embedding":
    ContrastiveLoss(pairs="batch")})` and `fit(x, {"embedding": identity_labels})`.

    Inputs: `{"frame_embeddings": (B, T, dim), "mask": (B, T) bool}`, plus
    `"frame_features": (B, T, C)` with `feature_shape`.

    Args:
        dim: frame embedding size (the backbone's output).
        num_blocks: attention blocks (the paper's NAN uses 2).
        projection_dim: optional per-frame `Dense` before normalising (None: none).
        feature_shape: C, to let every block's score also read a per-frame quality vector
            `u_k` (e.g. the backbone's pooled feature map, which keeps the scale that
            normalising `f_k` removes): `e_k = qᵀ f_k + vᵀ u_k`, `v` zero at start. None (the
            default): `e_k = qᵀ f_k`, as in the paper.
        max_logit: bound every score as `c · tanh(e_k / c)` (no frame weighs more than
            `exp(2c)` times another); None (the default): unbounded.
        temperature: `T > 0` dividing the last block's scores, `a_k ∝ exp(e_k / T)` (the
            trained weights raised to 1/T and renormalised; > 1: closer to mean pooling). A
            setting of the pooling, not of the weights: 1 (the default) is the trained head.
    """

    def __init__(
        self,
        dim: int = 128,
        num_blocks: int = 2,
        projection_dim: int | None = None,
        feature_shape: int | None = None,
        max_logit: float | None = None,
        temperature: float = 1.0,
        name: str = "nan_head",
        **kwargs,
    ):
        if feature_shape is not None and (
            isinstance(feature_shape, bool)
            or not isinstance(feature_shape, int)
            or feature_shape < 1
        ):
            raise ValueError(
                f"NANHead feature_shape must be None or a positive int C (pooled vectors), "
                f"got {feature_shape!r}."
            )
        shape = None if feature_shape is None else (feature_shape,)
        inputs, features = self._frame_graph(dim, projection_dim, shape)
        aggregation = AttentionAggregation(
            num_blocks,
            return_attention=True,
            quality_features=feature_shape is not None,
            max_logit=max_logit,
            temperature=temperature,
            name="aggregation",
        )
        if feature_shape is None:
            pooled, attention = aggregation([features, inputs["mask"]])
        else:
            quality = MaskFrames(name="mask_features")([inputs["frame_features"], inputs["mask"]])
            pooled, attention = aggregation([features, quality, inputs["mask"]])
        self._finish(inputs, pooled, attention, name, **kwargs)
        self.num_blocks = num_blocks
        self.max_logit = aggregation.max_logit
        self.temperature = aggregation.temperature

    @property
    def supports_constant_state(self) -> bool:
        """One block streams exactly with O(1) state; later blocks re-attend to every frame."""
        return self.num_blocks == 1

    def frame_log_weights(self, features, frame_embeddings, frame_features=None):
        """`e_k` of the first block (`qᵀ f_k`, plus `vᵀ u_k` and the bound when set), divided
        by the temperature when it is the last block."""
        aggregation = self.get_layer("aggregation")
        quality = None if frame_features is None else ops.convert_to_tensor(frame_features)
        scores = aggregation.frame_scores(features, aggregation.query, quality)
        return scores / self.temperature if self.num_blocks == 1 else scores

    def get_config(self) -> dict:
        shape = self.feature_shape
        return {
            **super().get_config(),
            "num_blocks": self.num_blocks,
            "feature_shape": None if shape is None else shape[0],
            "max_logit": self.max_logit,
            "temperature": self.temperature,
        }


@keras.saving.register_keras_serializable(package="keras_faceset")
class NAN(SetEmbeddingModel):
    """NAN on image sets: `backbone` per frame -> `NANHead`.

    `NAN.from_backbone(zoo.load("dlib_resnet"), num_blocks=2)`; inputs `{"images":
    (B, T, H, W, 3), "mask": (B, T)}`, outputs `{"embedding", "weights"}` (see `NANHead`).
    """

    head_class = NANHead

"""Neural Aggregation Network (Yang et al., "Neural Aggregation Network for Video Face
Recognition", CVPR 2017): attention-weighted pooling of normalised frame embeddings."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers import AttentionAggregation
from keras_faceset.models.set_model import SetEmbeddingModel, SetHead


@keras.saving.register_keras_serializable(package="keras_faceset")
class NANHead(SetHead):
    """NAN aggregation module on frame embeddings.

    `f_k = x_k / ‖x_k‖`, `e_k = qᵀ f_k`, `a = softmax(e)` over unmasked frames,
    `r_0 = Σ_k a_k f_k` (eqs. 1-3); each further block uses `q_1 = tanh(W r_0 + b)` (eq. 4).
    Output `{"embedding": r / ‖r‖ (B, D), "weights": a (B, T)}` (the last block's attention).
    All attention weights start at zero, i.e. as mean pooling. The paper trains this module
    alone on fixed CNN features with the contrastive loss: `compile(loss={"embedding":
    ContrastiveLoss(pairs="batch")})` and `fit(x, {"embedding": identity_labels})`.

    Inputs: `{"frame_embeddings": (B, T, dim), "mask": (B, T) bool}`.

    Args:
        dim: frame embedding size (the backbone's output).
        num_blocks: attention blocks (the paper's NAN uses 2).
        projection_dim: optional per-frame `Dense` before normalising (None: none).
    """

    def __init__(
        self,
        dim: int = 128,
        num_blocks: int = 2,
        projection_dim: int | None = None,
        name: str = "nan_head",
        **kwargs,
    ):
        inputs, features = self._frame_graph(dim, projection_dim, None)
        pooled, attention = AttentionAggregation(
            num_blocks, return_attention=True, name="aggregation"
        )([features, inputs["mask"]])
        self._finish(inputs, pooled, attention, name, **kwargs)
        self.num_blocks = num_blocks

    @property
    def supports_constant_state(self) -> bool:
        """One block streams exactly with O(1) state; later blocks re-attend to every frame."""
        return self.num_blocks == 1

    def frame_log_weights(self, features, frame_embeddings, frame_features=None):
        """`e_k = qᵀ f_k` of the first block."""
        return ops.matmul(features, self.get_layer("aggregation").query)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_blocks": self.num_blocks}


@keras.saving.register_keras_serializable(package="keras_faceset")
class NAN(SetEmbeddingModel):
    """NAN on image sets: `backbone` per frame -> `NANHead`.

    `NAN.from_backbone(zoo.load("dlib_resnet"), num_blocks=2)`; inputs `{"images":
    (B, T, H, W, 3), "mask": (B, T)}`, outputs `{"embedding", "weights"}` (see `NANHead`).
    """

    head_class = NANHead

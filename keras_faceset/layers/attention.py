"""Neural Aggregation Network attention (Yang et al., "Neural Aggregation Network for Video
Face Recognition", CVPR 2017)."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers.masking import SetAggregation, masked_softmax, weighted_sum


@keras.saving.register_keras_serializable(package="keras_faceset")
class AttentionAggregation(SetAggregation):
    """NAN attention blocks: `e_k = qᵀ f_k`, `a = softmax(e)`, `r = Σ_k a_k f_k` (eqs. 1-3).

    Each further block uses the query `q_{n+1} = tanh(W_n r_n + b_n)` (eq. 4); the paper uses
    `num_blocks=2`. All weights start at zero, so at initialisation the layer is masked mean
    pooling. The softmax runs over unmasked frames only (masked frames get exactly 0).

    Args:
        num_blocks: number of cascaded attention blocks (>= 1).
        return_attention: also return the last block's attention `a`, shape (batch, set_size).

    Call: `layer(features, mask=None)` or `layer([features, mask])` with features
    (batch, set_size, dim) and a boolean mask (batch, set_size). Returns `r` (batch, dim),
    or `(r, a)`. An all-masked set gives `r = 0` and `a = 0`.
    """

    def __init__(self, num_blocks: int = 2, return_attention: bool = False, **kwargs):
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"num_blocks must be an integer >= 1, got {num_blocks!r}.")
        super().__init__(return_weights=return_attention, **kwargs)
        self.num_blocks = num_blocks

    def build(self, input_shape) -> None:
        dim = self.features_shape(input_shape)[-1]
        if dim is None:
            raise ValueError("AttentionAggregation needs a known feature dimension (last axis).")
        self.query = self.add_weight(shape=(dim,), initializer="zeros", name="query")
        self.transfer_kernels = [
            self.add_weight(shape=(dim, dim), initializer="zeros", name=f"transfer_kernel_{n}")
            for n in range(1, self.num_blocks)
        ]
        self.transfer_biases = [
            self.add_weight(shape=(dim,), initializer="zeros", name=f"transfer_bias_{n}")
            for n in range(1, self.num_blocks)
        ]

    def aggregate(self, features, mask):
        attention = masked_softmax(ops.einsum("btd,d->bt", features, self.query), mask)
        pooled = weighted_sum(features, attention)
        for kernel, bias in zip(self.transfer_kernels, self.transfer_biases, strict=True):
            query = ops.tanh(ops.matmul(pooled, kernel) + bias)
            attention = masked_softmax(ops.einsum("btd,bd->bt", features, query), mask)
            pooled = weighted_sum(features, attention)
        return pooled, attention

    def get_config(self) -> dict:
        config = super().get_config()
        config["return_attention"] = config.pop("return_weights")
        config["num_blocks"] = self.num_blocks
        return config

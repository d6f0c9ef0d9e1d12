"""Neural Aggregation Network attention (Yang et al., "Neural Aggregation Network for Video
Face Recognition", CVPR 2017)."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers.masking import (
    SetAggregation,
    check_temperature,
    masked_softmax,
    weighted_sum,
)


@keras.saving.register_keras_serializable(package="keras_faceset")
class AttentionAggregation(SetAggregation):
    """NAN attention blocks: `e_k = qᵀ f_k`, `a = softmax(e)`, `r = Σ_k a_k f_k` (eqs. 1-3).

    Each further block uses the query `q_{n+1} = tanh(W_n r_n + b_n)` (eq. 4); the paper uses
    `num_blocks=2`. All weights start at zero, so at initialisation the layer is masked mean
    pooling. The softmax runs over unmasked frames only (masked frames get exactly 0).

    Args:
        num_blocks: number of cascaded attention blocks (>= 1).
        return_attention: also return the last block's attention `a`, shape (batch, set_size).
        quality_features: the call also takes per-frame quality features `u_k` (batch,
            set_size, C) and every block scores `e_k = qᵀ f_k + vᵀ u_k` (`v` learned, zero at
            start). The pooled `r` is still a mix of the `f_k` only.
        max_logit: if set (> 0), every score is bounded as `c · tanh(e_k / c)`, so no frame
            weighs more than `exp(2c)` times another (keeps the attention from collapsing on
            one frame). None: unbounded, as in the paper.
        temperature: `T > 0` dividing the last block's scores before its softmax,
            `a_k = exp(e_k / T) / Σ_j exp(e_j / T)`, i.e. the weights `a_k^(1/T)` renormalised:
            T > 1 moves them towards uniform (mean pooling), T < 1 sharpens them. Earlier
            blocks (their `r` gives the last block's query) are unchanged. 1 (the default): as
            in the paper.

    Call: `layer(features, mask=None)` or `layer([features, mask])` with features
    (batch, set_size, dim) and a boolean mask (batch, set_size); with `quality_features`,
    `layer([features, quality, mask])`. Returns `r` (batch, dim), or `(r, a)`. An all-masked
    set gives `r = 0` and `a = 0`.
    """

    def __init__(
        self,
        num_blocks: int = 2,
        return_attention: bool = False,
        quality_features: bool = False,
        max_logit: float | None = None,
        temperature: float = 1.0,
        **kwargs,
    ):
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"num_blocks must be an integer >= 1, got {num_blocks!r}.")
        if max_logit is not None and (
            isinstance(max_logit, bool) or not isinstance(max_logit, (int, float)) or max_logit <= 0
        ):
            raise ValueError(f"max_logit must be None or a number > 0, got {max_logit!r}.")
        temperature = check_temperature(temperature, type(self).__name__)
        super().__init__(return_weights=return_attention, **kwargs)
        self.num_blocks = num_blocks
        self.quality_features = bool(quality_features)
        self.max_logit = None if max_logit is None else float(max_logit)
        self.temperature = temperature
        self.extra_inputs = ("quality",) if self.quality_features else ()

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
        if self.quality_features:
            shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
            if len(shapes) < 2 or len(shapes[1]) != 3 or shapes[1][-1] is None:
                raise ValueError(
                    "AttentionAggregation(quality_features=True) needs quality features "
                    f"(batch, set_size, C) with a known C, got input shapes {input_shape}."
                )
            self.quality_kernel = self.add_weight(
                shape=(shapes[1][-1],), initializer="zeros", name="quality_kernel"
            )

    def frame_scores(self, features, query, quality=None):
        """`e_k = qᵀ f_k (+ vᵀ u_k)`, bounded by `max_logit`: features (batch, set_size, dim)
        with a query (dim,) or (batch, dim), or single frames (N, dim) with a query (dim,)."""
        if len(query.shape) == 2:
            scores = ops.einsum("btd,bd->bt", features, query)
        elif len(features.shape) == 3:
            scores = ops.einsum("btd,d->bt", features, query)
        else:
            scores = ops.matmul(features, query)
        if quality is not None:
            scores = scores + ops.matmul(quality, self.quality_kernel)
        if self.max_logit is not None:
            scores = self.max_logit * ops.tanh(scores / self.max_logit)
        return scores

    def aggregate(self, features, mask, *extra):
        quality = extra[0] if extra else None
        if quality is not None:
            keep = ops.expand_dims(mask, -1)
            quality = ops.where(keep, quality, ops.zeros_like(quality))
        last = self.num_blocks - 1
        attention = self._attention(features, self.query, quality, mask, last == 0)
        pooled = weighted_sum(features, attention)
        for block, (kernel, bias) in enumerate(
            zip(self.transfer_kernels, self.transfer_biases, strict=True), start=1
        ):
            query = ops.tanh(ops.matmul(pooled, kernel) + bias)
            attention = self._attention(features, query, quality, mask, block == last)
            pooled = weighted_sum(features, attention)
        return pooled, attention

    def _attention(self, features, query, quality, mask, last: bool):
        """One block's masked softmax; the last block's scores are divided by the temperature
        (exact for T = 1)."""
        scores = self.frame_scores(features, query, quality)
        return masked_softmax(scores / self.temperature if last else scores, mask)

    def get_config(self) -> dict:
        config = super().get_config()
        config["return_attention"] = config.pop("return_weights")
        config["num_blocks"] = self.num_blocks
        config["quality_features"] = self.quality_features
        config["max_logit"] = self.max_logit
        config["temperature"] = self.temperature
        return config

"""Baseline set pooling over the frame axis, with masks."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers.masking import SetAggregation, normalize_scores, weighted_sum


@keras.saving.register_keras_serializable(package="keras_faceset")
class MaskedMeanPooling(SetAggregation):
    """Mean over unmasked frames: `r = Σ_k m_k f_k / Σ_k m_k`.

    Weights (with `return_weights=True`) are uniform over unmasked frames, `m_k / Σ m`.
    An all-masked set gives a zero vector and zero weights.
    """

    def aggregate(self, features, mask):
        weights = normalize_scores(ops.cast(mask, features.dtype), mask)
        return weighted_sum(features, weights), weights


@keras.saving.register_keras_serializable(package="keras_faceset")
class MaskedMaxPooling(SetAggregation):
    """Per-dimension max over unmasked frames: `r_d = max_{k: m_k} f_kd`.

    Masked frames never win. Weights (with `return_weights=True`) are the fraction of the
    `dim` dimensions each frame wins, ties shared equally, so they sum to 1 over unmasked
    frames. An all-masked set gives a zero vector and zero weights.
    """

    def aggregate(self, features, mask):
        frame_mask = ops.expand_dims(mask, -1)
        candidates = ops.where(frame_mask, features, ops.full_like(features, float("-inf")))
        top = ops.max(candidates, axis=1, keepdims=True)
        any_valid = ops.any(mask, axis=-1, keepdims=True)
        pooled = ops.where(any_valid, ops.squeeze(top, 1), ops.zeros_like(top[:, 0]))
        wins = ops.cast(ops.logical_and(candidates == top, frame_mask), features.dtype)
        wins = wins / ops.maximum(ops.sum(wins, axis=1, keepdims=True), 1.0)
        weights = normalize_scores(ops.sum(wins, axis=-1), mask)
        return pooled, weights

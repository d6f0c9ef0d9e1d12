"""Shared machinery of the set layers: input/mask parsing and safe masked weighting.

A *set* is a tensor of per-frame features `(batch, set_size, dim)` with a boolean mask
`(batch, set_size)` (True = valid frame). Masked frames are zeroed before any arithmetic, so
garbage in padding (huge values, NaN) reaches neither the outputs nor the gradients.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops


def static_shape_mismatch(shape, expected) -> bool:
    """True when two shapes differ in rank or in a dimension known in both."""
    if len(shape) != len(expected):
        return True
    pairs = zip(shape, expected, strict=True)
    return any(a is not None and b is not None and a != b for a, b in pairs)


def check_frame_mask(mask, frames_shape, layer_name: str):
    """Cast `mask` to bool after checking it is `(batch, set_size)` = `frames_shape`."""
    if static_shape_mismatch(tuple(mask.shape), tuple(frames_shape)):
        raise ValueError(
            f"{layer_name}: the mask must have shape (batch, set_size) = {tuple(frames_shape)}, "
            f"got {tuple(mask.shape)}."
        )
    return ops.cast(mask, "bool")


def check_temperature(temperature, owner: str) -> float:
    """`temperature` as a float, after checking it is a finite number > 0."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(
            f"{owner}: temperature must be a finite number > 0 (1 keeps the trained weights, "
            f"> 1 moves them towards uniform), got {temperature!r}."
        )
    return float(temperature)


def normalize_scores(scores, mask):
    """`w_k = s_k / Σ_{j unmasked} s_j` over unmasked frames; 0 for masked frames and empty sets.

    `scores` (batch, set_size) must be finite and non-negative on unmasked frames.
    """
    scores = ops.where(mask, scores, ops.zeros_like(scores))
    den = ops.sum(scores, axis=-1, keepdims=True)
    positive = den > 0
    return ops.where(positive, scores / ops.where(positive, den, ops.ones_like(den)), 0.0)


def masked_softmax(logits, mask):
    """`a = softmax(e)` over unmasked frames, max-subtracted; exactly 0 on masked frames."""
    any_valid = ops.any(mask, axis=-1, keepdims=True)
    neg_inf = ops.full_like(logits, float("-inf"))
    top = ops.max(ops.where(mask, logits, neg_inf), axis=-1, keepdims=True)
    top = ops.stop_gradient(ops.where(any_valid, top, ops.zeros_like(top)))
    shifted = ops.where(mask, logits - top, ops.zeros_like(logits))
    return normalize_scores(ops.exp(shifted), mask)


def weighted_sum(features, weights):
    """`r = Σ_k w_k f_k`: (batch, set_size, dim) x (batch, set_size) -> (batch, dim)."""
    return ops.einsum("btd,bt->bd", features, weights)


class SetAggregation(keras.layers.Layer):
    """Base of the set layers: `(batch, set_size, dim)` features + mask -> `(batch, dim)`.

    Call as `layer(features, mask=mask)`, `layer([features, *extra, mask])` or after a
    mask-producing layer such as `keras.layers.Masking`; masks given several ways are AND-ed.
    Subclasses set `extra_inputs` (names of per-frame inputs after the features, e.g.
    `("quality",)`) and implement `aggregate(features, mask, *extra) -> (pooled, weights)`.
    With `return_weights=True` the call returns `(pooled, weights)`, weights `(batch, set_size)`.
    An all-masked set gives a zero vector and zero weights.
    """

    extra_inputs: tuple[str, ...] = ()

    def __init__(self, return_weights: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.return_weights = bool(return_weights)
        self.supports_masking = True

    def aggregate(self, features, mask, *extra):
        raise NotImplementedError

    def features_shape(self, input_shape) -> tuple:
        """The features' shape from a `build` input shape (a shape or a list of shapes)."""
        if input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        return tuple(input_shape)

    def call(self, inputs, mask=None):
        features, extra, mask = self._unpack(inputs, mask)
        features = ops.where(ops.expand_dims(mask, -1), features, ops.zeros_like(features))
        pooled, weights = self.aggregate(features, mask, *extra)
        return (pooled, weights) if self.return_weights else pooled

    def compute_mask(self, inputs, mask=None):
        return None

    def _unpack(self, inputs, mask):
        name = type(self).__name__
        n_tensors = 1 + len(self.extra_inputs)
        parts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(parts) not in (n_tensors, n_tensors + 1):
            expected = ", ".join(("features",) + self.extra_inputs)
            raise ValueError(
                f"{name} expects inputs [{expected}] optionally followed by a mask, "
                f"got {len(parts)} tensors."
            )
        features = parts[0]
        if len(features.shape) != 3:
            raise ValueError(
                f"{name}: features must have rank 3 (batch, set_size, dim), "
                f"got shape {tuple(features.shape)}."
            )
        frames_shape = tuple(features.shape[:2])
        # A list input makes Keras pass one propagated mask per list entry: keep the features'.
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        masks = [m for m in (mask, *parts[n_tensors:]) if m is not None]
        combined = ops.ones_like(features[..., 0], dtype="bool")
        for m in masks:
            combined = ops.logical_and(combined, check_frame_mask(m, frames_shape, name))
        return features, parts[1:n_tensors], combined

    def get_config(self) -> dict:
        config = super().get_config()
        config["return_weights"] = self.return_weights
        return config

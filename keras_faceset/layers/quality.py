"""Quality Aware Network pooling and quality branch (Liu et al., "Quality Aware Network for Set
to Set Recognition", CVPR 2017)."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers.masking import (
    SetAggregation,
    check_frame_mask,
    check_temperature,
    normalize_scores,
    static_shape_mismatch,
    weighted_sum,
)


@keras.saving.register_keras_serializable(package="keras_faceset")
class QualityPooling(SetAggregation):
    """Quality-weighted set pooling: `R_a = Σ_i μ_i R_i / Σ_i μ_i` (QAN eq. 1).

    Its gradients are the paper's eqs. (5)-(6): `∂R_a/∂R_i = μ_i / Σ_j μ_j` and
    `∂R_a/∂μ_i = (R_i − R_a) / Σ_j μ_j`.

    Args:
        return_weights: also return the frame weights.
        temperature: `T > 0`: the weights are `w_i = μ_i^(1/T) / Σ_j μ_j^(1/T)` (the QAN
            weights raised to 1/T and renormalised; NAN's `AttentionAggregation(temperature=)`
            dividing its scores by T is the same operation on its weights). T > 1 moves them
            towards uniform (mean pooling), T < 1 sharpens them; 1 (the default): eq. 1.

    Call: `layer([features, quality], mask=None)` or `layer([features, quality, mask])`, with
    features (batch, set_size, dim), quality scores μ >= 0 of shape (batch, set_size) or
    (batch, set_size, 1), mask (batch, set_size). Returns `R_a` (batch, dim), or
    `(R_a, w)` with `return_weights=True`. Masked frames get weight 0; a set whose
    unmasked μ sum to 0 (e.g. all masked) gives a zero vector and zero weights.
    """

    extra_inputs = ("quality",)

    def __init__(self, return_weights: bool = False, temperature: float = 1.0, **kwargs):
        temperature = check_temperature(temperature, type(self).__name__)
        super().__init__(return_weights=return_weights, **kwargs)
        self.temperature = temperature

    def aggregate(self, features, mask, quality):
        frames_shape = tuple(features.shape[:2])
        shape = tuple(quality.shape)
        if len(shape) == 3 and shape[-1] == 1:
            quality = ops.squeeze(quality, -1)
        if static_shape_mismatch(tuple(quality.shape), frames_shape):
            raise ValueError(
                f"QualityPooling: quality must have shape (batch, set_size) or "
                f"(batch, set_size, 1) matching features {tuple(features.shape)}, got {shape}."
            )
        quality = ops.where(mask, ops.cast(quality, features.dtype), 0.0)
        if self.temperature != 1.0:  # T = 1 stays bit for bit eq. 1
            positive = quality > 0  # μ = 0 stays 0, with a finite gradient
            safe = ops.where(positive, quality, ops.ones_like(quality))
            quality = ops.where(positive, ops.power(safe, 1.0 / self.temperature), 0.0)
        weights = normalize_scores(quality, mask)
        return weighted_sum(features, weights), weights

    def get_config(self) -> dict:
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


@keras.saving.register_keras_serializable(package="keras_faceset")
class QualityHead(keras.layers.Layer):
    """QAN quality branch: a feature map or vector -> quality score μ ∈ (0, 1).

    Maps `(B, H, W, C)`: Conv2D(filters, kernel_size, relu) → global average pool → Dense(1) →
    sigmoid. Vectors `(B, C)`: Dense(filters, relu) → Dense(1) → sigmoid. Per-frame inputs
    `(B, T, H, W, C)` / `(B, T, C)` give `(B, T)`; otherwise the output is `(B,)`. The last
    Dense starts with a zero kernel and bias `initial_bias`, so every frame starts with
    μ = sigmoid(initial_bias) (0.73 by default) and QAN pooling starts as mean pooling.
    With per-frame inputs a mask (batch, set_size) zeroes the masked frames' inputs and μ.
    """

    def __init__(
        self, filters: int = 64, kernel_size: int = 3, initial_bias: float = 1.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.initial_bias = float(initial_bias)
        self.supports_masking = True

    def build(self, input_shape) -> None:
        rank = len(input_shape)
        if rank not in (2, 3, 4, 5):
            raise ValueError(
                "QualityHead expects (B, C), (B, T, C), (B, H, W, C) or (B, T, H, W, C) inputs, "
                f"got shape {tuple(input_shape)}."
            )
        self.per_frame = rank in (3, 5)
        self.on_maps = rank in (4, 5)
        frame_shape = (None, *input_shape[(2 if self.per_frame else 1) :])
        if self.on_maps:
            self.hidden = keras.layers.Conv2D(
                self.filters,
                self.kernel_size,
                padding="same",
                activation="relu",
                name="conv",
                dtype=self.dtype_policy,
            )
        else:
            self.hidden = keras.layers.Dense(
                self.filters, activation="relu", name="hidden", dtype=self.dtype_policy
            )
        self.score = keras.layers.Dense(
            1,
            activation="sigmoid",
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(self.initial_bias),
            name="score",
            dtype=self.dtype_policy,
        )
        self.hidden.build(frame_shape)
        self.score.build((None, self.filters))

    def call(self, inputs, mask=None):
        frames = inputs
        if self.per_frame and mask is not None:
            mask = check_frame_mask(mask, inputs.shape[:2], "QualityHead")
            frame_mask = ops.reshape(mask, (*ops.shape(mask), *([1] * (len(inputs.shape) - 2))))
            frames = ops.where(frame_mask, inputs, ops.zeros_like(inputs))
        if self.on_maps:
            if self.per_frame:
                frames = ops.reshape(frames, (-1, *ops.shape(inputs)[2:]))
            hidden = ops.mean(self.hidden(frames), axis=(1, 2))
        else:
            hidden = self.hidden(frames)
        quality = ops.squeeze(self.score(hidden), -1)
        if self.per_frame and self.on_maps:
            quality = ops.reshape(quality, ops.shape(inputs)[:2])
        if self.per_frame and mask is not None:
            quality = ops.where(mask, quality, ops.zeros_like(quality))
        return quality

    def compute_mask(self, inputs, mask=None):
        return mask if len(inputs.shape) in (3, 5) else None

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, initial_bias=self.initial_bias
        )
        return config


@keras.saving.register_keras_serializable(package="keras_faceset")
class TextureStatistics(keras.layers.Layer):
    """Multi-scale texture statistics, a quality input for QAN / NAN heads: for each feature
    map `(B, H_i, W_i, C_i)` its per-channel spatial mean and standard deviation, all
    concatenated to `(B, 2 Σ C_i)`.

    Early maps keep what blur, noise, JPEG blocks or low resolution do to an image, which the
    last, identity-oriented map has largely discarded (zoo/quality_ceiling.py measures it).
    """

    def call(self, maps):
        if not isinstance(maps, (list, tuple)) or not maps:
            raise ValueError("TextureStatistics takes a non-empty list of (B, H, W, C) maps.")
        parts = []
        for feature_map in maps:
            if len(feature_map.shape) != 4:
                raise ValueError(
                    f"TextureStatistics: every map must be (B, H, W, C), got "
                    f"{tuple(feature_map.shape)}."
                )
            parts += [ops.mean(feature_map, axis=(1, 2)), ops.std(feature_map, axis=(1, 2))]
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], sum(2 * shape[-1] for shape in input_shape))

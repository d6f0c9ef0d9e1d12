"""L2 normalisation with an optional (learnable) scale, as used before cosine-margin heads."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_faceset")
class L2Normalize(keras.layers.Layer):
    """`y = s · x / max(‖x‖₂, ε)` along `axis`.

    Computed as `x / sqrt(max(Σx², ε²))`, so a zero vector maps to zero with finite gradients.

    Args:
        axis: axis (or axes) along which to normalise.
        scale: output norm `s`; None means 1 (no scaling).
        learnable_scale: make `s` a trainable scalar weight, initialised to `scale` (or 1).
        epsilon: the smallest norm divided by (> 0).
    """

    def __init__(
        self,
        axis: int | tuple[int, ...] = -1,
        scale: float | None = None,
        learnable_scale: bool = False,
        epsilon: float = 1e-12,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}.")
        self.axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
        self.scale = None if scale is None else float(scale)
        self.learnable_scale = bool(learnable_scale)
        self.epsilon = float(epsilon)
        self.supports_masking = True
        if self.learnable_scale:
            self.scale_weight = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(1.0 if scale is None else scale),
                name="scale",
            )
        self.built = True

    def call(self, inputs):
        squares = ops.sum(ops.square(inputs), axis=self.axis, keepdims=True)
        outputs = inputs / ops.sqrt(ops.maximum(squares, self.epsilon**2))
        if self.learnable_scale:
            return outputs * ops.cast(self.scale_weight, outputs.dtype)
        return outputs if self.scale is None else outputs * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            axis=self.axis,
            scale=self.scale,
            learnable_scale=self.learnable_scale,
            epsilon=self.epsilon,
        )
        return config

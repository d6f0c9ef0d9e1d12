"""FLOPs per image of a Keras model: 2 x multiply-adds of its Conv and Dense layers."""

from __future__ import annotations

import math

import keras

COUNTED = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one call on one example: output positions x kernel size.

    A channels-last Conv kernel `(k..., in / groups, out)` does `prod(kernel)` multiply-adds
    per output position (all output channels); Dense is the same with one position per row."""
    if type(layer) not in COUNTED:
        return 0
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"{layer.name}: only channels_last layers are counted")
    positions = math.prod(layer.output.shape[1:-1])
    return positions * math.prod(layer.kernel.shape)


def model_flops(model: keras.Model) -> int:
    """2 x multiply-adds per example over every Conv/Dense layer, nested models included
    (bias adds, normalisation, activations and pooling are not counted)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
        else:
            total += 2 * layer_macs(layer)
    return total

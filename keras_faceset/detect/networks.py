"""MTCNN's three networks (Zhang et al. 2016) as Keras functional models, untrained.

P-Net (proposal), R-Net (refinement) and O-Net (output) take images normalised as
``(x - 127.5) / 128`` (RGB, ``x`` in 0..255; `keras_faceset.detect.cascade` normalises) and
return, in this order, the box regression (dx1, dy1, dx2, dy2 in units of the window side),
O-Net's landmarks (5 x's then 5 y's, in units of the window side) and the softmax over
(not face, face). The layer names and layout are those of the `mtcnn` package: the flattening
before the first dense layer reads the map transposed (``Permute((2, 1, 3))``, the layout the
weights were converted from). `keras_faceset.detect.convert` loads the weights.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_faceset")
class PReLU(layers.PReLU):
    """`keras.layers.PReLU`, ``x`` for ``x > 0`` else ``alpha x``, with the same values bit for
    bit in fewer and cheaper elementwise passes (on CPU these maps cost as much as the
    convolutions):

    - ``x * where(x > 0, 1, alpha)`` (``x * 1 = x``, ``(-alpha) (-x) = alpha x``): three passes
      instead of Keras's five;
    - ``maximum(x, alpha x)`` when `slopes_at_most_one` (every slope <= 1: then ``alpha x <= x``
      for ``x > 0`` and ``alpha x >= x`` for ``x < 0``): two passes;
    - a map (B, H, W, C) with one slope per channel is multiplied as rows (B H, W C) by the
      slopes tiled W times: the same products, but a broadcast along rows, which TensorFlow's
      CPU kernels vectorise, where a broadcast of C (10 to 128) values per pixel is about three
      times slower than the multiplication itself.

    `slopes_at_most_one` is a promise about the weights, not checked per call: set it with
    `bound_slopes` once the weights are loaded (False, the default, is right for any slopes)."""

    slopes_at_most_one = False

    def call(self, inputs):
        alpha = self.alpha
        rows = len(inputs.shape) == 4 and tuple(alpha.shape[:2]) == (1, 1)
        x = inputs
        if rows:
            shape = ops.shape(inputs)
            x = ops.reshape(inputs, (-1, shape[2] * shape[3]))
            alpha = ops.tile(ops.reshape(alpha, (1, -1)), (1, shape[2]))
        if self.slopes_at_most_one:
            out = ops.maximum(x, x * alpha)
        else:
            out = x * ops.where(x > 0, ops.ones_like(alpha), alpha)
        return ops.reshape(out, shape) if rows else out


def bound_slopes(model: keras.Model) -> keras.Model:
    """Set each `PReLU`'s `slopes_at_most_one` from its loaded slopes (before the model is
    traced); returns the model."""
    for layer in model.layers:
        if isinstance(layer, PReLU):
            layer.slopes_at_most_one = bool(np.all(ops.convert_to_numpy(layer.alpha) <= 1))
    return model


def _conv(x, filters: int, kernel: int, name: str):
    x = layers.Conv2D(filters, kernel, padding="valid", name=f"conv{name}")(x)
    return PReLU(shared_axes=[1, 2], name=f"prelu{name}")(x)


def _pool(x, size: int, padding: str, name: str):
    return layers.MaxPooling2D(size, strides=2, padding=padding, name=f"maxpooling{name}")(x)


def _dense_head(x, units: int, name: str):
    """Transpose H and W, flatten, dense + PReLU (one slope per unit)."""
    x = layers.Permute((2, 1, 3), name="permute")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units, name=f"fc{name}")(x)
    return PReLU(name=f"prelu{name}")(x)


def pnet() -> keras.Model:
    """P-Net, fully convolutional: (B, H, W, 3) -> regression (B, h, w, 4), face
    probabilities (B, h, w, 2); a cell per 12x12 window, 2 px apart, h = ceil((H - 2) / 2) - 4."""
    inputs = keras.Input((None, None, 3), name="image")
    x = _conv(inputs, 10, 3, "1")
    x = _pool(x, 2, "same", "1")
    x = _conv(x, 16, 3, "2")
    x = _conv(x, 32, 3, "3")
    regression = layers.Conv2D(4, 1, name="conv4_1")(x)
    probability = layers.Conv2D(2, 1, activation="softmax", name="conv4_2")(x)
    return keras.Model(inputs, [regression, probability], name="pnet")


def rnet() -> keras.Model:
    """R-Net: (B, 24, 24, 3) -> regression (B, 4), face probabilities (B, 2)."""
    inputs = keras.Input((24, 24, 3), name="image")
    x = _conv(inputs, 28, 3, "1")
    x = _pool(x, 3, "same", "1")
    x = _conv(x, 48, 3, "2")
    x = _pool(x, 3, "valid", "2")
    x = _conv(x, 64, 2, "3")
    x = _dense_head(x, 128, "4")
    regression = layers.Dense(4, name="fc5_1")(x)
    probability = layers.Dense(2, activation="softmax", name="fc5_2")(x)
    return keras.Model(inputs, [regression, probability], name="rnet")


def onet() -> keras.Model:
    """O-Net: (B, 48, 48, 3) -> regression (B, 4), landmarks (B, 10), face probabilities
    (B, 2)."""
    inputs = keras.Input((48, 48, 3), name="image")
    x = _conv(inputs, 32, 3, "1")
    x = _pool(x, 3, "same", "1")
    x = _conv(x, 64, 3, "2")
    x = _pool(x, 3, "valid", "2")
    x = _conv(x, 64, 3, "3")
    x = _pool(x, 2, "same", "3")
    x = _conv(x, 128, 2, "4")
    x = _dense_head(x, 256, "5")
    regression = layers.Dense(4, name="fc6_1")(x)
    landmarks = layers.Dense(10, name="fc6_2")(x)
    probability = layers.Dense(2, activation="softmax", name="fc6_3")(x)
    return keras.Model(inputs, [regression, landmarks, probability], name="onet")


NETWORKS = {"pnet": pnet, "rnet": rnet, "onet": onet}
"""Builders by name, in cascade order."""

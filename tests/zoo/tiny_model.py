"""A tiny stand-in architecture and converter, to test the zoo machinery without big files.

Its "original source file" is raw float32 bytes of the Dense kernel (4 x 2).
"""

import keras
import numpy as np


def build() -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, use_bias=False, name="dense")(inputs))


def convert(path) -> keras.Model:
    model = build()
    kernel = np.frombuffer(open(path, "rb").read(), dtype="<f4")
    if kernel.size != 8:
        raise ValueError(f"{path}: expected 8 floats, found {kernel.size}")
    model.get_layer("dense").set_weights([kernel.reshape(4, 2)])
    return model

"""A tiny random-weight backbone for the set-model tests (32x32 RGB -> 16-d in milliseconds)."""

import keras
import numpy as np

IMAGE_SIZE = 32
DIM = 16


@keras.saving.register_keras_serializable(package="keras_faceset_tests")
class TinyBackbone(keras.Model):
    """Conv(8, /2) -> Conv(12, /2) = feature map (8, 8, 12) -> global average -> Dense(DIM)."""

    def __init__(self, dim: int = DIM, name: str = "tiny_backbone", **kwargs):
        images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
        x = keras.layers.Rescaling(1 / 255)(images)
        x = keras.layers.Conv2D(8, 3, 2, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(12, 3, 2, padding="same", activation="relu", name="feature_map")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(dim, name="embedding")(x)
        super().__init__(images, x, name=name, **kwargs)
        self.dim = dim

    def feature_extractor(self) -> keras.Model:
        outputs = {
            "feature_map": self.get_layer("feature_map").output,
            "embedding": self.outputs[0],
        }
        return keras.Model(self.input, outputs, name=f"{self.name}_features")

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dim": self.dim}


def image_sets(rng, batch: int, frames: int, valid_counts=None):
    """Random uint8-range image sets (batch, frames, 32, 32, 3) and a prefix mask."""
    images = rng.uniform(0, 255, (batch, frames, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    counts = valid_counts if valid_counts is not None else [frames] * batch
    mask = np.arange(frames)[None, :] < np.asarray(counts)[:, None]
    return images, mask


def randomize(model: keras.Model, rng, scale: float = 1.0) -> keras.Model:
    """Every weight of `model` drawn from N(0, scale²), so that no weight is neutral."""
    for weight in model.weights:
        weight.assign(rng.normal(0.0, scale, weight.shape).astype(weight.dtype))
    return model


def unit(x, axis: int = -1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def numpy_outputs(outputs: dict) -> dict:
    return {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}

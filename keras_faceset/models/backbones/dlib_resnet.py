"""dlib's face-recognition ResNet (`anet_type` of dlib/examples/dnn_face_recognition_ex.cpp).

A 29-conv ResNet: 150x150 RGB chip -> conv 7x7/2 -> max-pool 3x3/2 -> 14 residual units
(alevel4 .. alevel0) -> global average pool -> fc_no_bias 128. Batch norm is folded into a
per-channel affine `y = gamma * x + beta`. Downsampling units add a 2x2/2 average pool of their
input to the block output with no projection; dlib's `add_prev` zero-pads the smaller tensor at
the end (extra channels, bottom/right border). Every stride-2 op has padding 0 (Keras "valid"),
stride-1 3x3 convs pad 1 (Keras "same").
"""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers.quality import TextureStatistics

IMAGE_SIZE = 150
EMBEDDING_DIM = 128
DLIB_MEAN = (122.782, 117.001, 104.298)
"""`input_rgb_image_sized` default RGB means; dlib divides by 256 after subtracting them."""
STEM_FILTERS = 32
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
"""(filters, residual units, first unit downsamples) of alevel4 .. alevel0, in execution order."""
FEATURE_MAP_LAYER = "level0_unit0_out"
TEXTURE_LAYERS = ("level4_unit2_out", "level3_unit3_out", "level2_unit2_out")
"""Last maps of the 35x35, 17x17 and 8x8 stages: the "texture" quality input (448 values)."""


@keras.saving.register_keras_serializable(package="keras_faceset")
class DlibPreprocessing(keras.layers.Layer):
    """dlib's input layer: `x' = (x - mean) / 256` per RGB channel (uint8 input is cast)."""

    def __init__(
        self, mean: tuple[float, float, float] = DLIB_MEAN, scale: float = 256.0, **kwargs
    ):
        super().__init__(**kwargs)
        if len(mean) != 3:
            raise ValueError(f"mean must have 3 values (R, G, B), got {mean!r}")
        self.mean = tuple(float(m) for m in mean)
        self.scale = float(scale)

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        return (images - ops.convert_to_tensor(self.mean, self.compute_dtype)) / self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_faceset")
class Affine(keras.layers.Layer):
    """dlib's `affine` (inference-time batch norm): `y = gamma * x + beta` per channel."""

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"Affine needs a known channel dimension, got shape {input_shape}")
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        return inputs * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_faceset")
class ZeroPadAdd(keras.layers.Layer):
    """dlib's `add_prev` of unequal shapes: `y = pad(a) + pad(b)`, output the elementwise max
    shape, each input zero-padded at the end of every non-batch axis (high channels,
    bottom/right border)."""

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) < 2
            or not all(isinstance(shape, (list, tuple)) for shape in input_shape)
        ):
            raise ValueError(f"ZeroPadAdd takes a list of >= 2 tensors, got shapes {input_shape}")
        ranks = {len(shape) for shape in input_shape}
        if len(ranks) != 1:
            raise ValueError(f"ZeroPadAdd inputs must share a rank, got shapes {input_shape}")
        if any(dim is None for shape in input_shape for dim in shape[1:]):
            raise ValueError(f"ZeroPadAdd needs static non-batch dims, got shapes {input_shape}")
        self._target = self.compute_output_shape(input_shape)[1:]
        self._paddings = [
            [(0, 0)] + [(0, t - d) for t, d in zip(self._target, shape[1:], strict=True)]
            for shape in input_shape
        ]

    def call(self, inputs):
        total = None
        for tensor, padding in zip(inputs, self._paddings, strict=True):
            if any(after for _, after in padding):
                tensor = ops.pad(tensor, padding)
            total = tensor if total is None else total + tensor
        return total

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return (batch, *(max(dims) for dims in zip(*(s[1:] for s in input_shape), strict=True)))


def _conv_affine(x, filters: int, kernel: int, stride: int, name: str, weighted: list[str]):
    """dlib `affine<con<filters, kernel, kernel, stride, stride>>` (padding 0 if stride > 1)."""
    padding = "valid" if stride > 1 else "same"
    x = keras.layers.Conv2D(filters, kernel, stride, padding=padding, name=f"{name}_conv")(x)
    x = Affine(name=f"{name}_affine")(x)
    weighted += [f"{name}_conv", f"{name}_affine"]
    return x


def _residual_unit(x, filters: int, downsample: bool, name: str, weighted: list[str]):
    """`ares` / `ares_down`: relu(block(x) + shortcut(x)), shortcut = x or avg_pool 2x2/2 of x."""
    y = _conv_affine(x, filters, 3, 2 if downsample else 1, f"{name}_a", weighted)
    y = keras.layers.ReLU(name=f"{name}_a_relu")(y)
    y = _conv_affine(y, filters, 3, 1, f"{name}_b", weighted)
    if downsample:
        x = keras.layers.AveragePooling2D(2, 2, padding="valid", name=f"{name}_shortcut")(x)
    y = ZeroPadAdd(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@keras.saving.register_keras_serializable(package="keras_faceset")
class DlibResNet(keras.Model):
    """dlib_face_recognition_resnet_model_v1: (B, 150, 150, 3) RGB -> (B, 128) raw descriptor.

    Same-person descriptors are within Euclidean distance 0.6 (dlib's threshold). With
    `include_preprocessing=False` the input must already be `(x - DLIB_MEAN) / 256`.
    Random weights until loaded with `keras_faceset.models.convert.dlib_dat.load_dlib_weights`.
    """

    def __init__(self, include_preprocessing: bool = True, name: str = "dlib_resnet", **kwargs):
        weighted: list[str] = []
        images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
        x = DlibPreprocessing(name="preprocessing")(images) if include_preprocessing else images
        x = _conv_affine(x, STEM_FILTERS, 7, 2, "stem", weighted)
        x = keras.layers.ReLU(name="stem_relu")(x)
        x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="stem_pool")(x)
        for stage, (filters, units, downsample) in enumerate(STAGES):
            level = len(STAGES) - 1 - stage
            for unit in range(units):
                down = downsample and unit == 0
                x = _residual_unit(x, filters, down, f"level{level}_unit{unit}", weighted)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(EMBEDDING_DIM, use_bias=False, name="embedding")(x)
        weighted.append("embedding")
        super().__init__(inputs=images, outputs=x, name=name, **kwargs)
        self.include_preprocessing = include_preprocessing
        self._dlib_order = tuple(weighted)

    def dlib_layers(self) -> list[keras.layers.Layer]:
        """Layers with weights (Conv2D, Affine, Dense) in the order of dlib's layer records."""
        return [self.get_layer(name) for name in self._dlib_order]

    def feature_extractor(self) -> keras.Model:
        """image -> {"feature_map": (B, 2, 2, 256) last residual map, "pooled": (B, 256),
        "texture": (B, 448) `TextureStatistics` of the `TEXTURE_LAYERS` maps, "embedding":
        (B, 128)}, sharing this model's weights."""
        texture = [self.get_layer(name).output for name in TEXTURE_LAYERS]
        outputs = {
            "feature_map": self.get_layer(FEATURE_MAP_LAYER).output,
            "pooled": self.get_layer("pool").output,
            "texture": TextureStatistics(name="texture")(texture),
            "embedding": self.outputs[0],
        }
        return keras.Model(self.input, outputs, name=f"{self.name}_features")

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "include_preprocessing": self.include_preprocessing,
        }

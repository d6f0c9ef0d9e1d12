"""FaceNet's Inception-ResNet-v1 backbone (Szegedy et al. 2016; Schroff et al. 2015).

The graph and the layer names follow davidsandberg/facenet `src/models/inception_resnet_v1.py`
as ported to Keras in `facenet_keras.h5` (nyoki-mtl/keras-facenet), so that the converter in
`keras_faceset.models.convert.facenet_h5` copies that file's weights by layer name.

Input: `(batch, 160, 160, 3)` RGB, 0..255 (float or uint8). Output: the 128-d bottleneck after its
BatchNorm, **not** L2-normalised; FaceNet compares `x / ||x||_2`, so normalise before taking
distances.
"""

import math

import keras
from keras import layers, ops

IMAGE_SIZE = 160

# Residual branches of the three Inception-ResNet blocks: one list of convolutions per branch,
# each `(filters, name suffix)`. The suffix carries the kernel size: "Conv2d_0b_1x7" is 1x7.
_BLOCK_BRANCHES = {
    "Block35": [
        [(32, "1x1")],
        [(32, "0a_1x1"), (32, "0b_3x3")],
        [(32, "0a_1x1"), (32, "0b_3x3"), (32, "0c_3x3")],
    ],
    "Block17": [
        [(128, "1x1")],
        [(128, "0a_1x1"), (128, "0b_1x7"), (128, "0c_7x1")],
    ],
    "Block8": [
        [(192, "1x1")],
        [(192, "0a_1x1"), (192, "0b_1x3"), (192, "0c_3x1")],
    ],
}
# Reduction blocks: convolution branches (the last of each has stride 2, "1a"), then a max-pool.
_REDUCTION_BRANCHES = {
    "Mixed_6a": [
        [(384, "1a_3x3")],
        [(192, "0a_1x1"), (192, "0b_3x3"), (256, "1a_3x3")],
    ],
    "Mixed_7a": [
        [(256, "0a_1x1"), (384, "1a_3x3")],
        [(256, "0a_1x1"), (256, "1a_3x3")],
        [(256, "0a_1x1"), (256, "0b_3x3"), (256, "1a_3x3")],
    ],
}


@keras.saving.register_keras_serializable(package="keras_faceset")
class PerImageStandardization(layers.Layer):
    """FaceNet's `prewhiten` (= `tf.image.per_image_standardization`), per image over H, W, C:

    y = (x - mean(x)) / max(std(x), 1 / sqrt(N)),  N = H * W * C.
    """

    def build(self, input_shape):
        if len(input_shape) != 4 or None in input_shape[1:]:
            raise ValueError(
                f"PerImageStandardization expects images (batch, height, width, channels) with "
                f"known height, width and channels; got shape {input_shape}"
            )
        self._min_std = 1.0 / math.sqrt(math.prod(input_shape[1:]))

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.std(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / ops.maximum(std, self._min_std)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_faceset")
class ScaleSum(layers.Layer):
    """Scaled residual sum of Inception-ResNet (Szegedy et al. 2016, sec. 3.3):

    y = shortcut + scale * residual.
    """

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape):
        if len(input_shape) != 2 or tuple(input_shape[0]) != tuple(input_shape[1]):
            raise ValueError(
                f"ScaleSum expects [shortcut, residual] of the same shape; got {input_shape}"
            )

    def call(self, inputs):
        shortcut, residual = inputs
        return shortcut + residual * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def _conv_bn_relu(x, filters: int, kernel_size, name: str, strides: int = 1, padding: str = "same"):
    """Conv (no bias) -> BatchNorm (no gamma, as in TF-slim) -> ReLU, named like facenet_keras."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=name
    )(x)
    x = layers.BatchNormalization(
        momentum=0.995, epsilon=1e-3, scale=False, name=f"{name}_BatchNorm"
    )(x)
    return layers.Activation("relu", name=f"{name}_Activation")(x)


def _branch(x, prefix: str, index: int, convs: list[tuple[int, str]]):
    """One branch; "1a" convolutions reduce with stride 2 and valid padding."""
    for filters, suffix in convs:
        kernel = tuple(int(k) for k in suffix.split("_")[-1].split("x"))
        reduce = suffix.startswith("1a")
        x = _conv_bn_relu(
            x,
            filters,
            kernel,
            name=f"{prefix}_Branch_{index}_Conv2d_{suffix}",
            strides=2 if reduce else 1,
            padding="valid" if reduce else "same",
        )
    return x


def _residual_block(x, block: str, index: int, scale: float, activation: bool = True):
    """x <- relu(x + scale * Conv1x1(concat(branches(x))))."""
    prefix = f"{block}_{index}"
    branches = [_branch(x, prefix, i, convs) for i, convs in enumerate(_BLOCK_BRANCHES[block])]
    mixed = layers.Concatenate(name=f"{prefix}_Concatenate")(branches)
    up = layers.Conv2D(x.shape[-1], 1, use_bias=True, name=f"{prefix}_Conv2d_1x1")(mixed)
    x = ScaleSum(scale, name=f"{prefix}_ScaleSum")([x, up])
    return layers.Activation("relu", name=f"{prefix}_Activation")(x) if activation else x


def _reduction_block(x, name: str):
    branches = _REDUCTION_BRANCHES[name]
    outputs = [_branch(x, name, i, convs) for i, convs in enumerate(branches)]
    pool_name = f"{name}_Branch_{len(branches)}_MaxPool_1a_3x3"
    outputs.append(layers.MaxPooling2D(3, strides=2, name=pool_name)(x))
    return layers.Concatenate(name=name)(outputs)


@keras.saving.register_keras_serializable(package="keras_faceset")
class InceptionResNetV1(keras.Model):
    """FaceNet Inception-ResNet-v1: 160x160 RGB face -> bottleneck embedding.

    Stem, 5 x Block35 (scale 0.17), Mixed_6a, 10 x Block17 (0.1), Mixed_7a, 5 x Block8 (0.2),
    Block8_6 (scale 1, no ReLU) -> global average pool -> dropout -> Dense (no bias) ->
    BatchNorm (no gamma). The embedding is not L2-normalised.

    Args:
        include_preprocessing: put `PerImageStandardization` (FaceNet's prewhiten) in the
            model, so it takes raw 0..255 pixels. False: feed standardised images.
        embedding_dim: bottleneck size (128 for the pretrained FaceNet weights).
        dropout_rate: dropout before the bottleneck (FaceNet: keep probability 0.8).
        name: model name.
    """

    def __init__(
        self,
        include_preprocessing: bool = True,
        embedding_dim: int = 128,
        dropout_rate: float = 0.2,
        name: str = "inception_resnet_v1",
        **kwargs,
    ):
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int):
            raise ValueError(f"embedding_dim must be a positive int; got {embedding_dim!r}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int; got {embedding_dim}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1); got {dropout_rate}")

        inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
        x = inputs
        if include_preprocessing:
            x = PerImageStandardization(name="per_image_standardization")(x)
        x = _conv_bn_relu(x, 32, 3, "Conv2d_1a_3x3", strides=2, padding="valid")
        x = _conv_bn_relu(x, 32, 3, "Conv2d_2a_3x3", padding="valid")
        x = _conv_bn_relu(x, 64, 3, "Conv2d_2b_3x3")
        x = layers.MaxPooling2D(3, strides=2, name="MaxPool_3a_3x3")(x)
        x = _conv_bn_relu(x, 80, 1, "Conv2d_3b_1x1", padding="valid")
        x = _conv_bn_relu(x, 192, 3, "Conv2d_4a_3x3", padding="valid")
        x = _conv_bn_relu(x, 256, 3, "Conv2d_4b_3x3", strides=2, padding="valid")
        for i in range(1, 6):
            x = _residual_block(x, "Block35", i, scale=0.17)
        x = _reduction_block(x, "Mixed_6a")
        for i in range(1, 11):
            x = _residual_block(x, "Block17", i, scale=0.1)
        x = _reduction_block(x, "Mixed_7a")
        for i in range(1, 6):
            x = _residual_block(x, "Block8", i, scale=0.2)
        x = _residual_block(x, "Block8", 6, scale=1.0, activation=False)
        x = layers.GlobalAveragePooling2D(name="AvgPool")(x)
        x = layers.Dropout(dropout_rate, name="Dropout")(x)
        x = layers.Dense(embedding_dim, use_bias=False, name="Bottleneck")(x)
        embedding = layers.BatchNormalization(
            momentum=0.995, epsilon=1e-3, scale=False, name="Bottleneck_BatchNorm"
        )(x)
        super().__init__(inputs=inputs, outputs=embedding, name=name, **kwargs)

        self.include_preprocessing = include_preprocessing
        self.embedding_dim = embedding_dim
        self.dropout_rate = dropout_rate

    def feature_extractor(self) -> keras.Model:
        """Model sharing these weights: image -> {"feature_map": (B, 3, 3, 1792), "embedding"}.

        The feature map is the output of the last block (Block8_6, before average pooling).
        """
        return keras.Model(
            inputs=self.inputs[0],
            outputs={
                "feature_map": self.get_layer("Block8_6_ScaleSum").output,
                "embedding": self.outputs[0],
            },
            name=f"{self.name}_features",
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "include_preprocessing": self.include_preprocessing,
            "embedding_dim": self.embedding_dim,
            "dropout_rate": self.dropout_rate,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

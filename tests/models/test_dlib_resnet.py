"""DlibResNet with random weights: shapes, layers vs NumPy, dynamic batch, .keras round trip."""

import keras
import numpy as np
import pytest

from keras_faceset.models.backbones.dlib_resnet import (
    DLIB_MEAN,
    TEXTURE_LAYERS,
    Affine,
    DlibPreprocessing,
    DlibResNet,
    ZeroPadAdd,
)
from tests.checks import assert_config_round_trip, assert_keras_file_round_trip


def _randomised(model: DlibResNet, rng) -> DlibResNet:
    """Random non-trivial affines (gamma ~ 1, beta ~ 0) so every weight matters."""
    for layer in model.dlib_layers():
        if isinstance(layer, Affine):
            channels = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, channels).astype("float32"),
                    rng.normal(0, 0.1, channels).astype("float32"),
                ]
            )
    return model


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return _randomised(DlibResNet(), np.random.default_rng(1))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(2).uniform(0, 255, (3, 150, 150, 3)).astype("float32")


def _zero_pad_add_reference(a, b):
    shape = np.maximum(a.shape, b.shape)
    out = np.zeros(shape, np.float32)
    out[tuple(slice(0, d) for d in a.shape)] += a
    out[tuple(slice(0, d) for d in b.shape)] += b
    return out


def test_zero_pad_add_matches_numpy(rng):
    a = rng.normal(size=(2, 4, 4, 128)).astype("float32")
    b = rng.normal(size=(2, 3, 3, 256)).astype("float32")
    layer = ZeroPadAdd()
    out = keras.ops.convert_to_numpy(layer([a, b]))
    assert out.shape == (2, 4, 4, 256)
    np.testing.assert_array_equal(out, _zero_pad_add_reference(a, b))
    # the padding goes at the end: b's bottom row and right column and a's high channels are 0
    np.testing.assert_array_equal(out[:, 3, :, 128:], 0)
    np.testing.assert_array_equal(out[:, :3, :3, 128:], b[:, :, :, 128:])
    assert_config_round_trip(ZeroPadAdd(), [a, b])


def test_zero_pad_add_equal_shapes_is_plain_add(rng):
    a, b = rng.normal(size=(2, 2, 5, 5, 8)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ZeroPadAdd()([a, b])), a + b)


@pytest.mark.parametrize(
    "shapes, message",
    [
        ([(None, 4, 4, 8)], ">= 2 tensors"),
        ([(None, 4, 4, 8), (None, 4, 8)], "share a rank"),
        ([(None, None, 4, 8), (None, 4, 4, 8)], "static non-batch dims"),
    ],
)
def test_zero_pad_add_rejects_bad_inputs(shapes, message):
    with pytest.raises(ValueError, match=message):
        ZeroPadAdd()([keras.Input(shape[1:]) for shape in shapes])


def test_affine_matches_numpy(rng):
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = Affine()
    layer.build(x.shape)
    gamma, beta = rng.normal(size=(2, 4)).astype("float32")
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x * gamma + beta, atol=1e-6)
    assert_config_round_trip(layer, x)


def test_preprocessing_matches_dlib_formula_and_casts_uint8(rng):
    pixels = rng.integers(0, 256, (2, 5, 5, 3)).astype("uint8")
    layer = DlibPreprocessing()
    expected = (pixels.astype("float32") - np.float32(DLIB_MEAN)) / np.float32(256)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(pixels)), expected)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(pixels.astype("float32"))), expected
    )
    assert_config_round_trip(layer, pixels)
    with pytest.raises(ValueError, match="3 values"):
        DlibPreprocessing(mean=(1.0, 2.0))


def test_architecture(model):
    assert model.count_params() == 5_614_592
    assert model.input_shape == (None, 150, 150, 3)
    assert model.output_shape == (None, 128)
    layers = model.dlib_layers()
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in layers) == 29
    assert sum(isinstance(layer, Affine) for layer in layers) == 29
    assert [layer.name for layer in layers][-1] == "embedding"
    # the stride-2 ops are "valid": 150 -> 72 -> 35 -> 17 -> 8 -> 4 (shortcut) -> 2 (shortcut)
    assert model.get_layer("stem_pool").output.shape[1:] == (35, 35, 32)
    assert model.get_layer("level1_unit0_a_conv").output.shape[1:] == (3, 3, 256)
    assert model.get_layer("level1_unit0_add").output.shape[1:] == (4, 4, 256)
    assert model.get_layer("level0_unit0_add").output.shape[1:] == (2, 2, 256)


def test_dynamic_batch_and_uint8(model, images):
    full = keras.ops.convert_to_numpy(model(images))
    one = keras.ops.convert_to_numpy(model(images[:1]))
    np.testing.assert_allclose(one, full[:1], atol=1e-5)
    pixels = np.round(images).astype("uint8")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(pixels)),
        keras.ops.convert_to_numpy(model(pixels.astype("float32"))),
        atol=0,
    )
    assert np.std(full, axis=0).mean() > 1e-4  # different images give different descriptors


def test_without_preprocessing_takes_normalised_input(model, images):
    bare = DlibResNet(include_preprocessing=False)
    bare.set_weights(model.get_weights())
    normalised = (images - np.float32(DLIB_MEAN)) / np.float32(256)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bare(normalised)),
        keras.ops.convert_to_numpy(model(images)),
        atol=1e-6,
    )
    assert DlibResNet.from_config(bare.get_config()).include_preprocessing is False


def test_feature_extractor(model, images):
    features = model.feature_extractor()(images)
    features = {key: keras.ops.convert_to_numpy(value) for key, value in features.items()}
    assert features["feature_map"].shape == (3, 2, 2, 256)
    np.testing.assert_allclose(
        features["pooled"], features["feature_map"].mean(axis=(1, 2)), atol=1e-6
    )
    kernel = keras.ops.convert_to_numpy(model.get_layer("embedding").kernel)
    np.testing.assert_allclose(features["embedding"], features["pooled"] @ kernel, atol=1e-5)
    np.testing.assert_allclose(
        features["embedding"], keras.ops.convert_to_numpy(model(images)), atol=1e-6
    )


def test_feature_extractor_texture_is_mean_and_std_of_the_stage_maps(model, images):
    maps = keras.Model(model.input, [model.get_layer(n).output for n in TEXTURE_LAYERS])(images)
    expected = []
    for feature_map in maps:
        feature_map = keras.ops.convert_to_numpy(feature_map).astype(np.float64)
        expected += [feature_map.mean(axis=(1, 2)), feature_map.std(axis=(1, 2))]
    texture = keras.ops.convert_to_numpy(model.feature_extractor()(images)["texture"])
    assert texture.shape == (3, 2 * (32 + 64 + 128))
    np.testing.assert_allclose(texture, np.concatenate(expected, axis=1), rtol=1e-4, atol=1e-5)


def test_keras_file_round_trip(model, images, tmp_path):
    loaded = assert_keras_file_round_trip(model, images, tmp_path)
    assert isinstance(loaded, DlibResNet)
    assert loaded.get_config() == model.get_config()
    assert [layer.name for layer in loaded.dlib_layers()] == [
        layer.name for layer in model.dlib_layers()
    ]
    assert loaded.feature_extractor()(images)["feature_map"].shape == (3, 2, 2, 256)

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_faceset.models.backbones.inception_resnet_v1 import (
    InceptionResNetV1,
    PerImageStandardization,
    ScaleSum,
)
from tests.checks import (
    assert_config_round_trip,
    assert_fit_reduces_loss,
    assert_keras_file_round_trip,
)
from tests.conftest import REPO

# Sum of all arrays stored in facenet_keras.h5 (checked against the file in test_facenet_h5.py).
FACENET_H5_PARAMS = 22_808_144


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return InceptionResNetV1()


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, size=(3, 160, 160, 3)).astype("uint8")


def _per_image_standardization(images):
    """Brute force, one image at a time, float64."""
    out = []
    for image in np.asarray(images, np.float64):
        adjusted_std = max(image.std(), 1.0 / np.sqrt(image.size))
        out.append((image - image.mean()) / adjusted_std)
    return np.stack(out)


def test_builds_with_random_weights(model, images):
    assert model.count_params() == FACENET_H5_PARAMS
    assert model.input_shape == (None, 160, 160, 3)
    assert model.output_shape == (None, 128)
    embeddings = keras.ops.convert_to_numpy(model(images))
    assert embeddings.shape == (3, 128)
    assert np.all(np.isfinite(embeddings))
    # Not L2-normalised: the bottleneck output is passed on as is.
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0)


def test_layer_names_follow_facenet_keras(model):
    names = {layer.name for layer in model.layers}
    for name in [
        "Conv2d_1a_3x3_BatchNorm",
        "Block35_5_ScaleSum",
        "Mixed_6a",
        "Block17_10_Branch_1_Conv2d_0c_7x1",
        "Mixed_7a_Branch_3_MaxPool_1a_3x3",
        "Block8_6_Conv2d_1x1",
        "AvgPool",
        "Dropout",
        "Bottleneck_BatchNorm",
    ]:
        assert name in names
    assert "Block8_6_Activation" not in names
    scales = {layer.name: layer.scale for layer in model.layers if isinstance(layer, ScaleSum)}
    assert len(scales) == 21
    assert scales["Block35_1_ScaleSum"] == 0.17
    assert scales["Block17_7_ScaleSum"] == 0.1
    assert scales["Block8_5_ScaleSum"] == 0.2
    assert scales["Block8_6_ScaleSum"] == 1.0
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_any_batch_size_and_uint8_input(model, images):
    batch = keras.ops.convert_to_numpy(model(images))
    single = keras.ops.convert_to_numpy(model(images[1:2].astype("float32")))
    np.testing.assert_allclose(single[0], batch[1], atol=1e-5)


def test_preprocessing_layer_matches_numpy(rng):
    images = rng.uniform(0, 255, size=(4, 160, 160, 3)).astype("float32")
    images[1] = 7.0  # constant image: std 0, divided by 1/sqrt(N) instead
    got = keras.ops.convert_to_numpy(PerImageStandardization()(images))
    np.testing.assert_allclose(got, _per_image_standardization(images), atol=1e-5)
    np.testing.assert_array_equal(got[1], 0.0)


def test_scale_sum_matches_numpy(rng):
    shortcut, residual = rng.normal(size=(2, 2, 3, 3, 5)).astype("float32")
    layer = ScaleSum(0.17)
    got = keras.ops.convert_to_numpy(layer([shortcut, residual]))
    np.testing.assert_allclose(got, shortcut + 0.17 * residual, atol=1e-6)
    assert_config_round_trip(layer, [shortcut, residual])


def test_layer_errors(rng):
    with pytest.raises(ValueError, match="same shape"):
        ScaleSum(0.1)([np.zeros((1, 3, 3, 4)), np.zeros((1, 3, 3, 5))])
    with pytest.raises(ValueError, match="height, width and channels"):
        PerImageStandardization()(np.zeros((2, 10), "float32"))
    for kwargs, match in [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": 1.5}, "embedding_dim"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
    ]:
        with pytest.raises(ValueError, match=match):
            InceptionResNetV1(**kwargs)


def test_keras_file_round_trip(model, images, tmp_path):
    loaded = assert_keras_file_round_trip(model, images, tmp_path)
    assert isinstance(loaded, InceptionResNetV1)
    assert loaded.get_config() == model.get_config()


def test_from_config_without_preprocessing_takes_standardised_images(model, images):
    config = {
        "name": "irv1_bare",
        "trainable": True,
        "include_preprocessing": False,
        "embedding_dim": 128,
        "dropout_rate": 0.4,
    }
    bare = InceptionResNetV1.from_config(config)
    assert bare.get_config() == config
    assert "per_image_standardization" not in {layer.name for layer in bare.layers}
    bare.set_weights(model.get_weights())
    standardised = _per_image_standardization(images).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bare(standardised)),
        keras.ops.convert_to_numpy(model(images)),
        atol=1e-4,
    )


def test_feature_extractor(model, images):
    features = model.feature_extractor()
    out = features(images)
    assert tuple(out["feature_map"].shape) == (3, 3, 3, 1792)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out["embedding"]), keras.ops.convert_to_numpy(model(images))
    )
    # The embedding is BatchNorm(Dense(mean over the 3x3 map)) in inference mode.
    pooled = keras.ops.convert_to_numpy(out["feature_map"]).mean(axis=(1, 2))
    beta, mean, var = model.get_layer("Bottleneck_BatchNorm").get_weights()
    kernel = model.get_layer("Bottleneck").get_weights()[0]
    expected = (pooled @ kernel - mean) / np.sqrt(var + 1e-3) + beta
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["embedding"]), expected, atol=1e-4)
    assert features.get_layer("Bottleneck").kernel is model.get_layer("Bottleneck").kernel


def test_layers_under_jax():
    code = textwrap.dedent(
        """
        import numpy as np
        from keras_faceset.models.backbones.inception_resnet_v1 import (
            PerImageStandardization, ScaleSum)
        x = np.random.default_rng(0).uniform(0, 255, (2, 8, 6, 3)).astype("float32")
        y = np.asarray(PerImageStandardization()(x))
        ref = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
        assert np.allclose(y, ref, atol=1e-5), np.abs(y - ref).max()
        assert np.allclose(np.asarray(ScaleSum(0.2)([x, x])), 1.2 * x, atol=1e-4)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_fit_reduces_loss(rng):
    model = InceptionResNetV1(embedding_dim=8, dropout_rate=0.0)
    assert model.output_shape == (None, 8)
    x = rng.integers(0, 256, size=(4, 160, 160, 3)).astype("float32")
    y = rng.normal(size=(4, 8)).astype("float32")
    # 1e-3: at 1e-2 the deep random network's loss rose on some CPUs (oneDNN kernels differ)
    assert_fit_reduces_loss(model, x, y, loss="mse", epochs=10, learning_rate=1e-3)

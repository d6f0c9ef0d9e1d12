import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_faceset.models import DlibResNet
from keras_faceset.models.backbones.dlib_resnet import Affine
from keras_faceset.models.backbones.inception_resnet_v1 import ScaleSum
from keras_faceset.models.fold import fold_batch_norm
from tests.conftest import LFW_DIR, REPO, require

FOLDED_TYPES = (keras.layers.BatchNormalization, Affine)


def _randomise(model: keras.Model, rng) -> keras.Model:
    """Random kernels, and batch-norm / affine weights far from the identity."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _randomise(layer, rng)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.2, 3.0, w.shape)
                    if "variance" in w.path or "gamma" in w.path
                    else rng.normal(0.0, 1.0, w.shape)
                    for w in layer.weights
                ]
            )
        elif isinstance(layer, Affine):
            layer.set_weights(
                [rng.uniform(0.2, 3.0, layer.gamma.shape), rng.normal(0.0, 1.0, layer.beta.shape)]
            )
        elif layer.weights:
            layer.set_weights([rng.normal(0.0, 0.3, w.shape) for w in layer.weights])
    return model


def _count(model: keras.Model, types) -> int:
    return sum(
        _count(layer, types) if isinstance(layer, keras.Model) else isinstance(layer, types)
        for layer in model.layers
    )


def _assert_same_outputs(model, folded, x, rtol=1e-4):
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    actual = keras.ops.convert_to_numpy(folded(x, training=False))
    scale = np.abs(expected).max()
    assert scale > 1e-2  # a real signal, not an all-zero output
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _conv_bn_model() -> keras.Model:
    """Every foldable pattern: conv (no bias) + BN(scale=False), conv (bias) + BN(scale, center),
    conv + Affine, Dense (no bias) + BN, strided and 1x1 convs, a residual ScaleSum."""
    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, strides=2, use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(scale=False, epsilon=1e-3, name="stem_bn")(x)
    x = layers.ReLU()(x)
    a = layers.Conv2D(8, 1, name="branch_a")(x)
    a = layers.BatchNormalization(name="branch_a_bn")(a)
    b = layers.Conv2D(8, 3, padding="same", name="branch_b")(x)
    b = Affine(name="branch_b_affine")(b)
    x = ScaleSum(0.5, name="sum")([a, b])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(5, use_bias=False, name="dense")(x)
    outputs = layers.BatchNormalization(scale=False, name="dense_bn")(x)
    return keras.Model(inputs, outputs)


def test_folds_every_pair_and_keeps_outputs(rng):
    model = _randomise(_conv_bn_model(), rng)
    folded = fold_batch_norm(model)
    assert _count(model, FOLDED_TYPES) == 4
    assert _count(folded, FOLDED_TYPES) == 0
    # Removed: BN(scale=False) 3C, BN 4C, Affine 2C, BN(scale=False) 3C; added: the two biases
    # of the bias-free producers (stem, dense).
    removed = 3 * 8 + 4 * 8 + 2 * 8 + 3 * 5 - 8 - 5
    assert folded.count_params() == model.count_params() - removed
    x = rng.normal(size=(4, 12, 12, 3)).astype("float32")
    _assert_same_outputs(model, folded, x)

    # Folded kernel and bias follow W' = W s, b' = (b - mu) s + beta by hand for one pair.
    beta, mean, variance = model.get_layer("stem_bn").get_weights()
    scale = 1.0 / np.sqrt(variance.astype(np.float64) + 1e-3)
    kernel, bias = folded.get_layer("stem").get_weights()
    np.testing.assert_allclose(kernel, model.get_layer("stem").get_weights()[0] * scale, rtol=1e-6)
    np.testing.assert_allclose(bias, beta - mean * scale, rtol=1e-6, atol=1e-7)

    # The copy shares no variables: changing the original leaves it as it was.
    before = keras.ops.convert_to_numpy(folded(x))
    model.get_layer("sum").scale = 2.0
    model.get_layer("branch_a").kernel.assign(np.zeros(model.get_layer("branch_a").kernel.shape))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(folded(x)), before)


def test_leaves_what_it_cannot_fold(rng):
    """Kept: BN after a ReLU conv, after a conv whose output is also used elsewhere, on a
    non-channel axis, after a shared conv, called with training=True, and after a custom layer."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 4))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.BatchNormalization()(x)  # after an activation
    y = layers.Conv2D(4, 1)(x)
    z = layers.BatchNormalization()(y)  # y also feeds the sum below
    x = layers.Add()([y, z])
    x = layers.Conv2D(8, 1)(x)
    x = layers.BatchNormalization(axis=1)(x)  # a spatial axis
    shared = layers.Conv2D(8, 1)
    x = layers.BatchNormalization()(shared(shared(x)))  # a layer called twice
    x = layers.Conv2D(8, 1)(x)
    x = layers.BatchNormalization()(x, training=True)  # batch statistics
    x = ScaleSum(0.3)([x, x])
    outputs = layers.BatchNormalization()(x)  # after a layer it does not know
    model = _randomise(keras.Model(inputs, outputs), rng)
    folded = fold_batch_norm(model)
    assert _count(folded, keras.layers.BatchNormalization) == 6
    assert folded.count_params() == model.count_params()
    x = rng.normal(size=(3, 8, 8, 4)).astype("float32")
    _assert_same_outputs(model, folded, x, rtol=1e-5)


def test_nested_and_sequential_models(rng):
    inner = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()]
    )
    inputs = keras.Input((6, 6, 2))
    block = keras.Model(
        inputs, keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 1)(inputs))
    )
    outer_inputs = keras.Input((6, 6, 2))
    outer = keras.Model(outer_inputs, keras.layers.Flatten()(block(outer_inputs)))
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    for model, folded_count in ((inner, 0), (outer, 0)):
        model = _randomise(model, rng)
        folded = fold_batch_norm(model)
        assert _count(folded, keras.layers.BatchNormalization) == folded_count
        _assert_same_outputs(model, folded, x)


def test_dlib_resnet_affines_fold(rng):
    model = _randomise(DlibResNet(), rng)
    folded = fold_batch_norm(model)
    assert _count(model, Affine) == 29 and _count(folded, Affine) == 0
    assert folded.count_params() == model.count_params() - 2 * sum(
        layer.gamma.shape[0] for layer in model.layers if isinstance(layer, Affine)
    )
    x = rng.integers(0, 256, size=(2, 150, 150, 3)).astype("float32")
    _assert_same_outputs(model, folded, x)


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "bfloat16"])
def test_dtype_computes_inside_and_keeps_float32_at_the_ends(rng, dtype):
    model = _randomise(_conv_bn_model(), rng)
    folded = fold_batch_norm(model, dtype=dtype)
    assert _count(folded, FOLDED_TYPES) == 0
    compute = {layer.name: layer.compute_dtype for layer in folded.layers[1:]}
    # The layer on the input ("stem") and the one giving the output ("dense", into which
    # "dense_bn" folded) stay float32; the rest compute in bfloat16.
    assert compute.pop("stem") == compute.pop("dense") == "float32"
    assert set(compute.values()) == {"bfloat16"}, compute
    x = rng.normal(size=(4, 12, 12, 3)).astype("float32")
    out = folded(x, training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert not np.array_equal(
        keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(fold_batch_norm(model)(x))
    )
    _assert_same_outputs(model, folded, x, rtol=3e-2)  # bfloat16 keeps 8 significant bits


def test_rejects_models_without_a_graph():
    class Plain(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Functional or Sequential"):
        fold_batch_norm(Plain())
    with pytest.raises(ValueError, match="build the Sequential"):
        fold_batch_norm(keras.Sequential([keras.layers.Dense(2)]))


@pytest.mark.slow  # ~15 s of JAX start-up in a child process
def test_fold_under_jax():
    code = textwrap.dedent(
        """
        import keras, numpy as np
        from keras_faceset.models.fold import fold_batch_norm
        inputs = keras.Input((5, 5, 2))
        bn = keras.layers.BatchNormalization()
        model = keras.Model(inputs, bn(keras.layers.Conv2D(3, 3)(inputs)))
        bn.set_weights([np.full(3, 2.0), np.ones(3), np.full(3, 0.5), np.full(3, 4.0)])
        folded = fold_batch_norm(model)
        assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
        x = np.random.default_rng(0).normal(size=(2, 5, 5, 2)).astype("float32")
        assert np.allclose(np.asarray(folded(x)), np.asarray(model(x)), atol=1e-5)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_facenet_weights_fold_to_the_same_embeddings(facenet_h5):
    from keras_faceset.models.convert import convert_facenet_h5
    from tests.models.test_facenet_h5 import _load_script

    model = convert_facenet_h5(facenet_h5)
    folded = fold_batch_norm(model)
    assert _count(folded, keras.layers.BatchNormalization) == 0
    assert folded.count_params() < model.count_params()
    images = _load_script().lfw_centre_crops(require(LFW_DIR / "lfw-deepfunneled"), 16)
    expected = np.asarray(model.predict(images.astype("float32"), verbose=0))
    actual = np.asarray(folded.predict(images.astype("float32"), verbose=0))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    unit = np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(actual / unit, expected / unit, atol=1e-4)

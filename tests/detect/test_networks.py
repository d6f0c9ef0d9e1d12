"""Each network, with the converted weights, computes what the `mtcnn` package's own does."""

import keras
import numpy as np
import pytest
from mtcnn.stages import StageONet, StagePNet, StageRNet

from keras_faceset.detect import mtcnn_network
from keras_faceset.detect.networks import PReLU, bound_slopes

CASES = {
    "pnet": (StagePNet, [(2, 37, 53, 3), (1, 12, 12, 3), (1, 151, 150, 3)]),
    "rnet": (StageRNet, [(7, 24, 24, 3)]),
    "onet": (StageONet, [(7, 48, 48, 3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_network_equals_the_package_network(name, rng):
    stage, shapes = CASES[name]
    ours, theirs = mtcnn_network(name), stage().model
    for shape in shapes:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        expected, got = theirs(x), ours(x)
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)


def test_networks_have_no_lambda_and_named_layers():
    for name in CASES:
        model = mtcnn_network(name)
        kinds = {type(layer).__name__ for layer in model.layers}
        assert "Lambda" not in kinds
        assert {"conv1", "prelu1", "conv2"} <= {layer.name for layer in model.layers}


def test_prelu_equals_keras_prelu_bit_for_bit(rng):
    x = rng.normal(0, 1, (4, 9, 7, 5)).astype(np.float32)
    x[0, 0, :, :] = 0.0
    slopes = np.array([-1.3, -0.2, 0.0, 0.4, 1.1], np.float32)[None, None]
    ours, theirs = PReLU(shared_axes=[1, 2]), keras.layers.PReLU(shared_axes=[1, 2])
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.set_weights([slopes])
    np.testing.assert_array_equal(np.asarray(ours(x)), np.asarray(theirs(x)))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert type(restored) is PReLU and restored.get_config() == ours.get_config()


@pytest.mark.parametrize("bounded", [False, True])
def test_fast_prelu_forms_equal_keras_prelu_bit_for_bit(bounded, rng):
    """The product form (any slopes) and the max form (slopes <= 1), on maps multiplied as rows
    of tiled slopes, on the dense layers' (B, units) too: Keras's values exactly, zeros and
    negative slopes included."""
    high = 1.0 if bounded else 1.3
    for shape, shared in (((3, 11, 7, 10), [1, 2]), ((2, 5, 9, 28), [1, 2]), ((6, 128), None)):
        x = rng.normal(0, 2, shape).astype(np.float32)
        x.reshape(-1)[::7] = 0.0
        ours, theirs = PReLU(shared_axes=shared), keras.layers.PReLU(shared_axes=shared)
        for layer in (ours, theirs):
            layer.build(x.shape)
        slopes = rng.uniform(-1.3, high, ours.get_weights()[0].shape).astype(np.float32)
        slopes.reshape(-1)[:2] = [high, 0.0]
        for layer in (ours, theirs):
            layer.set_weights([slopes])
        model = keras.Sequential([keras.Input(shape[1:]), ours])
        bound_slopes(model)
        assert ours.slopes_at_most_one is bounded
        np.testing.assert_array_equal(np.asarray(ours(x)), np.asarray(theirs(x)))


def test_bound_slopes_reads_the_loaded_slopes():
    """P-Net's and R-Net's first PReLUs have slopes above 1 (1.01, 1.30), so they keep the
    product form; the others take the max form."""
    bounded = {
        name: {
            layer.name: layer.slopes_at_most_one
            for layer in bound_slopes(mtcnn_network(name)).layers
            if isinstance(layer, PReLU)
        }
        for name in CASES
    }
    assert bounded["pnet"] == {"prelu1": False, "prelu2": True, "prelu3": True}
    assert bounded["rnet"] == {"prelu1": False, "prelu2": True, "prelu3": True, "prelu4": True}
    assert all(bounded["onet"].values()) and len(bounded["onet"]) == 5

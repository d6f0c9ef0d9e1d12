"""Each network, with the converted weights, computes what the `mtcnn` package's own does."""

import keras
import numpy as np
import pytest
from mtcnn.stages import StageONet, StagePNet, StageRNet

from keras_faceset.detect import mtcnn_network
from keras_faceset.detect.networks import PReLU

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

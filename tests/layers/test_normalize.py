"""L2Normalize: y = s · x / max(‖x‖, ε)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_faceset.layers import L2Normalize
from tests.checks import assert_fit_reduces_loss, gradients


def reference(x, axis=-1, scale=1.0, epsilon=1e-12):
    norm = np.sqrt(np.sum(x.astype("float64") ** 2, axis=axis, keepdims=True))
    return scale * x / np.maximum(norm, epsilon)


@pytest.mark.parametrize(
    "kwargs", [{}, {"scale": 30.0}, {"axis": 1}, {"axis": (1, 2)}, {"scale": 2.0, "epsilon": 0.5}]
)
def test_matches_numpy_reference(kwargs, rng):
    x = rng.normal(size=(4, 3, 5)).astype("float32")
    x[0, 0] *= 1e-3  # norm below epsilon=0.5 for the last case
    got = ops.convert_to_numpy(L2Normalize(**kwargs)(x))
    expected = reference(
        x, kwargs.get("axis", -1), kwargs.get("scale", 1.0), kwargs.get("epsilon", 1e-12)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_unit_norm_output(rng):
    x = rng.normal(0, 100, size=(16, 8)).astype("float32")
    norms = np.linalg.norm(ops.convert_to_numpy(L2Normalize(scale=64.0)(x)), axis=-1)
    np.testing.assert_allclose(norms, 64.0, rtol=1e-5)


@pytest.mark.parametrize("learnable_scale", [False, True])
def test_zero_vector_gives_zero_and_finite_gradients(learnable_scale, rng):
    x = rng.normal(size=(3, 4)).astype("float32")
    x[1] = 0.0
    layer = L2Normalize(scale=10.0, learnable_scale=learnable_scale)
    out = ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(out[1], 0.0)
    probe = rng.normal(size=x.shape).astype("float32")
    weights = [ops.convert_to_numpy(w) for w in layer.trainable_variables]

    def loss(inputs, *params):
        outputs, _ = layer.stateless_call(list(params), [], inputs)
        return ops.sum(outputs * probe)

    grads = gradients(loss, x, *weights)
    for grad in grads:
        assert np.all(np.isfinite(grad))
    # at x = 0 the map is x / ε: the gradient is probe · s / ε, huge but finite
    np.testing.assert_allclose(grads[0][1], probe[1] * 10.0 / 1e-12, rtol=1e-5)
    # elsewhere the gradient is s (I − y yᵀ) probe / ‖x‖
    y = x[0] / np.linalg.norm(x[0])
    expected = 10.0 * (probe[0] - y * (y @ probe[0])) / np.linalg.norm(x[0])
    np.testing.assert_allclose(grads[0][0], expected, rtol=1e-4, atol=1e-5)


def test_learnable_scale_is_a_weight_initialised_to_scale():
    assert L2Normalize().trainable_weights == []
    assert L2Normalize(scale=5.0).trainable_weights == []
    layer = L2Normalize(scale=5.0, learnable_scale=True)
    assert [float(ops.convert_to_numpy(w)) for w in layer.trainable_weights] == [5.0]
    default = L2Normalize(learnable_scale=True)
    assert [float(ops.convert_to_numpy(w)) for w in default.trainable_weights] == [1.0]


def test_learnable_scale_trains_towards_target_norm(rng):
    x = rng.normal(size=(32, 6)).astype("float32")
    y = 4.0 * x / np.linalg.norm(x, axis=-1, keepdims=True)
    inputs = keras.Input((6,))
    layer = L2Normalize(learnable_scale=True)
    model = keras.Model(inputs, layer(inputs))
    assert_fit_reduces_loss(model, x, y, "mse", epochs=20)
    assert float(ops.convert_to_numpy(layer.scale_weight)) > 1.1


def test_bad_epsilon_raises():
    for epsilon in (0.0, -1.0):
        with pytest.raises(ValueError, match="epsilon"):
            L2Normalize(epsilon=epsilon)

"""QualityHead (QAN quality branch) alone and trained end to end with QualityPooling."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_faceset.layers import QualityHead, QualityPooling, TextureStatistics
from tests.checks import assert_fit_reduces_loss, gradients
from tests.layers.test_set_layers import DIM, noisy_sets

SHAPES = {  # input shape -> output shape
    "vector": ((3, 6), (3,)),
    "frames_of_vectors": ((3, 4, 6), (3, 4)),
    "map": ((3, 5, 5, 2), (3,)),
    "frames_of_maps": ((3, 4, 5, 5, 2), (3, 4)),
}


def built_head(shape, rng, filters=3):
    """A head with random weights (the zero-initialised score kernel would hide the branch)."""
    head = QualityHead(filters=filters)
    head.build((None,) * (len(shape) - 1) + (shape[-1],))
    head.set_weights([rng.normal(0, 0.5, size=w.shape) for w in head.get_weights()])
    return head


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference(head, x):
    """NumPy forward pass: conv 3x3 'same' + relu + spatial mean, or Dense + relu; then
    Dense(1) + sigmoid, frame by frame."""
    hidden_kernel, hidden_bias, score_kernel, score_bias = head.get_weights()
    per_frame = x.ndim in (3, 5)
    frames = x.reshape((-1, *x.shape[2:])) if per_frame else x
    if frames.ndim == 4:
        k = hidden_kernel.shape[0] // 2
        padded = np.pad(frames, ((0, 0), (k, k), (k, k), (0, 0)))
        height, width = frames.shape[1:3]
        conv = sum(
            padded[:, i : i + height, j : j + width] @ hidden_kernel[i, j]
            for i in range(2 * k + 1)
            for j in range(2 * k + 1)
        )
        hidden = np.maximum(conv + hidden_bias, 0).mean(axis=(1, 2))
    else:
        hidden = np.maximum(frames @ hidden_kernel + hidden_bias, 0)
    quality = _sigmoid(hidden @ score_kernel + score_bias)[:, 0]
    return quality.reshape(x.shape[:2]) if per_frame else quality


@pytest.mark.parametrize("kind", SHAPES)
def test_matches_numpy_reference(kind, rng):
    in_shape, out_shape = SHAPES[kind]
    x = rng.normal(size=in_shape).astype("float32")
    head = built_head(in_shape, rng)
    quality = ops.convert_to_numpy(head(x))
    assert quality.shape == out_shape
    assert np.all((quality > 0) & (quality < 1))
    np.testing.assert_allclose(quality, reference(head, x), atol=1e-5)


@pytest.mark.parametrize("kind", SHAPES)
def test_starts_at_sigmoid_of_initial_bias(kind, rng):
    in_shape, out_shape = SHAPES[kind]
    x = rng.normal(size=in_shape).astype("float32")
    for bias in (1.0, -0.5):
        quality = ops.convert_to_numpy(QualityHead(filters=3, initial_bias=bias)(x))
        np.testing.assert_allclose(quality, np.full(out_shape, _sigmoid(bias)), atol=1e-6)


@pytest.mark.parametrize("kind", ["frames_of_vectors", "frames_of_maps"])
def test_mask_zeroes_masked_frames_and_ignores_their_content(kind, rng):
    in_shape, _ = SHAPES[kind]
    x = rng.normal(size=in_shape).astype("float32")
    mask = rng.random(in_shape[:2]) < 0.5
    head = built_head(in_shape, rng)
    frame_mask = mask.reshape(mask.shape + (1,) * (len(in_shape) - 2))
    x_bad = np.where(frame_mask, x, np.nan).astype("float32")
    quality = ops.convert_to_numpy(head(x_bad, mask=mask))
    np.testing.assert_array_equal(quality[~mask], 0.0)
    np.testing.assert_allclose(quality[mask], reference(head, x)[mask], atol=1e-5)
    weights = [ops.convert_to_numpy(w) for w in head.trainable_variables]

    def loss(*params):
        quality, _ = head.stateless_call(list(params), [], x_bad, mask=mask)
        return ops.sum(quality)

    for grad in gradients(loss, *weights):
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_mask_propagates_to_quality_pooling(rng):
    x = rng.normal(size=(4, 5, DIM)).astype("float32")
    mask = rng.random((4, 5)) < 0.6
    x = np.where(mask[..., None], x, 0.0).astype("float32")
    head = built_head(x.shape, rng)
    pool = QualityPooling(return_weights=True)
    expected = pool([x, head(x, mask=mask)], mask=mask)
    features = keras.Input((None, DIM))
    masked = keras.layers.Masking(mask_value=0.0)(features)
    propagated = keras.Model(features, pool([masked, head(masked)]))(x)
    for got, want in zip(propagated, expected, strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(want), atol=1e-6)


def test_bad_inputs_raise_value_error(rng):
    with pytest.raises(ValueError, match="QualityHead expects"):
        QualityHead()(np.zeros((2,), "float32"))
    with pytest.raises(ValueError, match="QualityHead expects"):
        QualityHead()(np.zeros((1, 2, 3, 4, 5, 6), "float32"))
    x = rng.normal(size=(3, 4, 6)).astype("float32")
    with pytest.raises(ValueError, match="mask must have shape"):
        QualityHead()(x, mask=np.ones((3, 5), bool))


def test_dynamic_set_size_in_a_model(rng):
    head = built_head((None, None, 5, 5, 2), rng)
    frames = keras.Input((None, 5, 5, 2))
    model = keras.Model(frames, head(frames))
    for set_size in (2, 6):
        x = rng.normal(size=(3, set_size, 5, 5, 2)).astype("float32")
        np.testing.assert_allclose(model.predict(x, verbose=0), reference(head, x), atol=1e-5)


def test_qan_learns_high_quality_for_signal_frames(rng):
    """QualityHead + QualityPooling start as mean pooling and learn to up-weight the one
    informative frame of each set."""
    x, mask, signal, labels = noisy_sets(rng)
    features = keras.Input((None, DIM))
    frame_mask = keras.Input((None,), dtype="bool")
    quality = QualityHead(filters=16)(features, mask=frame_mask)
    pooled, weights = QualityPooling(return_weights=True)([features, quality, frame_mask])
    logits = keras.layers.Dense(2, kernel_initializer="zeros")(pooled)
    model = keras.Model([features, frame_mask], logits)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert_fit_reduces_loss(model, [x, mask], labels, loss, epochs=30)
    learned = keras.Model([features, frame_mask], weights).predict([x, mask], verbose=0)
    uniform = (1.0 / mask.sum(axis=1)).mean()  # about 0.25
    assert learned[np.arange(len(x)), signal].mean() > 2 * uniform


def test_texture_statistics_matches_numpy(rng):
    maps = [rng.normal(size=(2, 5, 5, 3)), rng.normal(size=(2, 3, 4, 2))]
    maps = [m.astype("float32") for m in maps]
    layer = TextureStatistics()
    expected = np.concatenate([f(m, axis=(1, 2)) for m in maps for f in (np.mean, np.std)], 1)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(maps)), expected, rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape([m.shape for m in maps]) == (2, 10)


@pytest.mark.parametrize("maps", [[], [np.zeros((2, 3), "float32")]])
def test_texture_statistics_rejects_bad_inputs(maps):
    with pytest.raises(ValueError, match="TextureStatistics"):
        TextureStatistics()(maps)

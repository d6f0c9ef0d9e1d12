import keras
import numpy as np
import pytest

from keras_faceset.losses.center import CenterLoss, center_loss, updated_centers
from tests.checks import assert_fit_reduces_loss

NUM_CLASSES, DIM = 5, 4


def _batch(rng, batch=24):
    labels = rng.integers(0, NUM_CLASSES - 1, size=batch)  # class 4 never appears
    embeddings = rng.normal(size=(batch, DIM)).astype("float32")
    centers = rng.normal(size=(NUM_CLASSES, DIM)).astype("float32")
    return labels, embeddings, centers


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_center_loss_matches_loop(rng):
    labels, embeddings, centers = _batch(rng)
    expected = np.mean(
        [0.5 * np.sum((x - centers[y]) ** 2) for x, y in zip(embeddings, labels, strict=True)]
    )
    for shaped in (labels, labels[:, None]):
        got = center_loss(shaped, embeddings, centers)
        np.testing.assert_allclose(_np(got), expected, rtol=1e-5)


def test_updated_centers_is_the_papers_rule(rng):
    labels, embeddings, centers = _batch(rng)
    alpha = 0.3
    expected = centers.copy()
    for j in range(NUM_CLASSES):
        members = labels == j
        delta = np.sum(centers[j] - embeddings[members], axis=0) / (1 + members.sum())
        expected[j] = centers[j] - alpha * delta
    got = _np(updated_centers(labels, embeddings, centers, alpha))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_array_equal(got[NUM_CLASSES - 1], centers[NUM_CLASSES - 1])  # absent class


def test_layer_adds_loss_and_updates_only_in_training(rng):
    labels, embeddings, centers = _batch(rng)
    layer = CenterLoss(NUM_CLASSES, alpha=0.5, weight=0.1)
    layer.build([embeddings.shape, labels.shape])
    layer.centers.assign(centers)

    out = layer([embeddings, labels], training=False)
    np.testing.assert_array_equal(_np(out), embeddings)
    np.testing.assert_array_equal(_np(layer.centers), centers)
    (added,) = layer.losses
    np.testing.assert_allclose(_np(added), 0.1 * _np(center_loss(labels, embeddings, centers)))

    layer([embeddings, labels], training=True)
    np.testing.assert_allclose(
        _np(layer.centers), _np(updated_centers(labels, embeddings, centers, 0.5)), atol=1e-6
    )


def _clustered(rng, n=96, classes=3):
    labels = np.repeat(np.arange(classes), n // classes).astype("int32")
    means = rng.normal(scale=3.0, size=(classes, 8))
    x = (means[labels] + rng.normal(size=(n, 8))).astype("float32")
    return x, labels


def _center_model(classes=3):
    x_in = keras.Input((8,))
    y_in = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(DIM, name="embed")(x_in)
    embeddings = CenterLoss(classes, alpha=0.5, weight=0.1, name="center")([embeddings, y_in])
    probs = keras.layers.Dense(classes, activation="softmax")(embeddings)
    return keras.Model([x_in, y_in], probs)


def _center_gap(model, x, labels):
    """Mean distance between each center and the mean embedding of its class."""
    embed = keras.Model(model.inputs[0], model.get_layer("embed").output)
    z = _np(embed(x))
    centers = _np(model.get_layer("center").centers)
    return np.mean(
        [np.linalg.norm(centers[j] - z[labels == j].mean(0)) for j in range(len(centers))]
    )


def test_fit_moves_centers_to_class_means(rng):
    x, labels = _clustered(rng)
    model = _center_model()
    gap_before = _center_gap(model, x, labels)
    assert_fit_reduces_loss(
        model, [x, labels], labels, "sparse_categorical_crossentropy", jit_compile=True
    )
    gap_after = _center_gap(model, x, labels)
    assert gap_after < 0.2 * gap_before, (gap_before, gap_after)

    # The reported loss is cross-entropy + weight * L_C (evaluation does not move the centers).
    embed = keras.Model(model.inputs[0], model.get_layer("embed").output)
    centers = _np(model.get_layer("center").centers)
    cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, model([x, labels]))
    expected = np.mean(_np(cross_entropy)) + 0.1 * _np(center_loss(labels, embed(x), centers))
    got = model.evaluate([x, labels], labels, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_array_equal(_np(model.get_layer("center").centers), centers)


def test_bad_inputs_raise(rng):
    labels, embeddings, _ = _batch(rng)
    with pytest.raises(ValueError, match="integer"):
        CenterLoss(NUM_CLASSES)([embeddings, labels.astype("float32")])
    with pytest.raises(ValueError, match="rank 2"):
        CenterLoss(NUM_CLASSES)([embeddings[None], labels])
    with pytest.raises(ValueError, match="dim=3"):
        CenterLoss(NUM_CLASSES, dim=3)([embeddings, labels])
    with pytest.raises(ValueError, match="num_classes"):
        CenterLoss(0)
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(NUM_CLASSES, alpha=1.5)

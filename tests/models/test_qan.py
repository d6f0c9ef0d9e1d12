"""QAN (image sets and head form): NumPy reference, quality inputs, round trips, training."""

import keras
import numpy as np
import pytest

from keras_faceset.losses import TripletLoss
from keras_faceset.models.nan import NANHead
from keras_faceset.models.qan import QAN, QANHead
from tests.checks import (
    assert_fit_reduces_loss,
    assert_jit_compile_matches,
    assert_keras_file_round_trip,
)
from tests.conftest import LFW_DIR, require
from tests.models.set_helpers import (
    DIM,
    IMAGE_SIZE,
    TinyBackbone,
    image_sets,
    numpy_outputs,
    randomize,
    unit,
)

FEATURE_MAP = (8, 8, 12)  # TinyBackbone's


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def qan_reference(frames, mask, quality_inputs, hidden, score):
    """QAN eq. (1) with a vector quality branch μ = σ(relu(u W1 + b1) W2 + b2), float64."""
    mu = sigmoid(np.maximum(quality_inputs @ hidden[0] + hidden[1], 0) @ score[0] + score[1])
    mu = np.where(mask, mu[..., 0], 0.0)
    weights = mu / mu.sum(-1, keepdims=True)
    return unit(np.einsum("bt,btd->bd", weights, unit(frames.astype(np.float64)))), weights, mu


def quality_weights(head):
    layer = head.get_layer("quality")
    return [
        [keras.ops.convert_to_numpy(w) for w in sub.weights] for sub in (layer.hidden, layer.score)
    ]


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(1)
    return TinyBackbone()


@pytest.mark.parametrize("feature_shape", [None, 12])
def test_head_matches_numpy_reference(rng, feature_shape):
    head = randomize(QANHead(DIM, feature_shape=feature_shape, filters=6), rng)
    frames = rng.normal(size=(4, 5, DIM)).astype("float32")
    mask = np.arange(5)[None] < np.array([[5], [3], [1], [4]])
    inputs = {"frame_embeddings": frames, "mask": mask}
    quality_inputs = frames
    if feature_shape is not None:
        quality_inputs = inputs["frame_features"] = rng.normal(size=(4, 5, 12)).astype("float32")
    out = numpy_outputs(head(inputs))
    expected, weights, mu = qan_reference(frames, mask, quality_inputs, *quality_weights(head))
    np.testing.assert_allclose(out["embedding"], expected, atol=2e-6)
    np.testing.assert_allclose(out["weights"], weights, atol=2e-6)
    np.testing.assert_allclose(out["quality"], mu, atol=2e-6)
    np.testing.assert_allclose(out["weights"].sum(-1), 1.0, atol=1e-6)
    assert np.all(out["weights"][~mask] == 0) and np.all((mu[mask] > 0) & (mu[mask] < 1))


def test_untrained_head_is_mean_pooling(rng):
    frames = rng.normal(size=(2, 4, DIM)).astype("float32")
    mask = np.array([[True, True, True, False], [True, False, True, False]])
    out = numpy_outputs(QANHead(DIM)({"frame_embeddings": frames, "mask": mask}))
    expected = unit(np.einsum("bt,btd->bd", mask / mask.sum(-1, keepdims=True), unit(frames)))
    np.testing.assert_allclose(out["embedding"], expected, atol=1e-6)
    np.testing.assert_allclose(out["quality"][mask], sigmoid(1.0), atol=1e-6)


@pytest.mark.parametrize(
    "quality_input, feature_shape",
    [("pooled", (12,)), ("feature_map", FEATURE_MAP), ("embedding", None)],
)
def test_image_model_is_head_after_backbone(backbone, rng, quality_input, feature_shape):
    model = QAN.from_backbone(backbone, quality_input=quality_input, filters=4)
    randomize(model.head, rng)
    assert model.head.feature_shape == feature_shape
    images, mask = image_sets(rng, 2, 3, [3, 2])
    extracted = numpy_outputs(backbone.feature_extractor()(images.reshape(-1, 32, 32, 3)))
    inputs = {"frame_embeddings": extracted["embedding"].reshape(2, 3, DIM), "mask": mask}
    if quality_input == "pooled":
        inputs["frame_features"] = extracted["feature_map"].mean(axis=(1, 2)).reshape(2, 3, 12)
    elif quality_input == "feature_map":
        inputs["frame_features"] = extracted["feature_map"].reshape(2, 3, *FEATURE_MAP)
    expected = numpy_outputs(model.head(inputs))
    out = numpy_outputs(model({"images": images, "mask": mask}))
    assert set(out) == {"embedding", "weights", "quality"}
    for key in out:
        np.testing.assert_allclose(out[key], expected[key], atol=1e-5)
    np.testing.assert_allclose(out["weights"].sum(-1), 1.0, atol=1e-6)
    assert np.all(out["weights"][~mask] == 0) and np.all(out["quality"][~mask] == 0)


def test_set_of_one_frame_is_its_normalised_embedding(backbone, rng):
    model = QAN.from_backbone(backbone)
    randomize(model.head, rng)
    images, mask = image_sets(rng, 3, 1)
    out = numpy_outputs(model({"images": images, "mask": mask}))
    np.testing.assert_allclose(
        out["embedding"], unit(keras.ops.convert_to_numpy(backbone(images[:, 0]))), atol=1e-6
    )


def test_keras_round_trip_image_and_head_forms(backbone, rng, tmp_path):
    model = QAN.from_backbone(backbone, quality_input="feature_map", filters=4)
    randomize(model.head, rng)
    images, mask = image_sets(rng, 2, 3, [3, 1])
    loaded = assert_keras_file_round_trip(model, {"images": images, "mask": mask}, tmp_path)
    assert isinstance(loaded, QAN) and loaded.head.feature_shape == FEATURE_MAP
    head = randomize(QANHead(DIM, feature_shape=12, filters=5, projection_dim=8), rng)
    inputs = {
        "frame_embeddings": rng.normal(size=(2, 3, DIM)).astype("float32"),
        "frame_features": rng.normal(size=(2, 3, 12)).astype("float32"),
        "mask": mask,
    }
    (tmp_path / "head").mkdir()
    loaded = assert_keras_file_round_trip(head, inputs, tmp_path / "head")
    assert loaded.get_config() == head.get_config()


def test_fit_set_triplet_on_image_sets_lowers_loss(rng):
    keras.utils.set_random_seed(2)
    model = QAN.from_backbone(TinyBackbone())
    base = rng.uniform(0, 255, (4, 1, IMAGE_SIZE, IMAGE_SIZE, 3))
    labels = np.repeat(np.arange(4), 2).astype("int32")
    images = np.clip(base[labels] + rng.normal(0, 80, (8, 3, IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255)
    mask = np.arange(3)[None] < np.array([[3], [2], [1], [3], [2], [3], [1], [3]])
    x = {"images": images.astype("float32"), "mask": mask}
    loss = {"embedding": TripletLoss(mining="hard", margin=0.5)}
    assert_fit_reduces_loss(model, x, {"embedding": labels}, loss, epochs=10)


def test_jit_compile_head(rng):
    head = randomize(QANHead(DIM, feature_shape=12, filters=4), rng)
    inputs = {
        "frame_embeddings": rng.normal(size=(3, 4, DIM)).astype("float32"),
        "frame_features": rng.normal(size=(3, 4, 12)).astype("float32"),
        "mask": np.arange(4)[None] < np.array([[4], [2], [1]]),
    }
    assert_jit_compile_matches(head, inputs)


def test_bad_arguments_raise(backbone):
    with pytest.raises(ValueError, match="frame feature shape"):
        QANHead(DIM, feature_shape=(4, 4))
    with pytest.raises(ValueError, match="Unknown quality_input"):
        QAN.from_backbone(backbone, quality_input="map")
    with pytest.raises(ValueError, match="no texture statistics"):
        QAN.from_backbone(backbone, quality_input="texture")
    with pytest.raises(ValueError, match="the backbone gives"):
        QAN(backbone, QANHead(DIM, feature_shape=256))
    with pytest.raises(ValueError, match="needs a QANHead"):
        QAN(backbone, NANHead(DIM))
    plain = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(DIM)]
    )
    with pytest.raises(ValueError, match="feature_extractor"):
        QAN.from_backbone(plain)


@pytest.mark.slow
@pytest.mark.parametrize("quality_input, size", [("pooled", 256), ("texture", 448)])
def test_real_dlib_weights_quality_matches_cached_features(quality_input, size):
    """With pretrained dlib weights, the image-set QAN equals its head on the cached
    descriptor + dlib's "pooled" (256) or "texture" (448) vector per frame (the head form's
    documented input)."""
    from keras_faceset import zoo
    from keras_faceset.data.images import center_crop_resize, load_image

    person = require(LFW_DIR / "lfw-deepfunneled" / "Serena_Williams")
    paths = sorted(person.glob("*.jpg"))[:4]
    chips = np.stack(
        [keras.ops.convert_to_numpy(center_crop_resize(load_image(p), 120, 150)) for p in paths]
    )
    backbone = zoo.load("dlib_resnet")
    model = QAN.from_backbone(backbone, quality_input=quality_input)
    assert model.head.feature_shape == (size,)
    randomize(model.head, np.random.default_rng(0), scale=0.3)
    cached = numpy_outputs(backbone.feature_extractor()(chips))
    mask = np.array([[True, True, True, False]])
    expected = numpy_outputs(
        model.head(
            {
                "frame_embeddings": cached["embedding"][None],
                "frame_features": cached[quality_input][None],
                "mask": mask,
            }
        )
    )
    out = numpy_outputs(model({"images": chips[None], "mask": mask}))
    for key in out:
        np.testing.assert_allclose(out[key], expected[key], atol=1e-5)
    one = numpy_outputs(model({"images": chips[:, None], "mask": np.ones((4, 1), bool)}))
    np.testing.assert_allclose(one["embedding"], unit(cached["embedding"]), atol=1e-6)

"""Set heads' weight temperature: T = 1 is the trained head; T is the trained frame weights
raised to 1/T and renormalised (the computation docs/set_generalization.md measured offline),
streams, round trips and trains."""

import keras
import numpy as np
import pytest

from keras_faceset.losses import ContrastiveLoss, TripletLoss
from keras_faceset.models.nan import NAN, NANHead
from keras_faceset.models.qan import QAN, QANHead
from keras_faceset.models.streaming import StreamingAggregator
from keras_faceset.zoo import build_head, get_preset
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS
from tests.checks import assert_fit_reduces_loss, assert_keras_file_round_trip, tempered_weights
from tests.models.set_helpers import DIM, TinyBackbone, image_sets, numpy_outputs, randomize, unit

FEATURES = 12
HEADS = {
    "nan1": lambda **kw: NANHead(DIM, 1, feature_shape=FEATURES, max_logit=1.5, **kw),
    "nan2": lambda **kw: NANHead(DIM, 2, feature_shape=FEATURES, max_logit=1.5, **kw),
    "qan": lambda **kw: QANHead(DIM, feature_shape=FEATURES, filters=6, **kw),
}


def head_inputs(rng, batch=5, frames=6):
    mask = np.arange(frames)[None] < np.array([[6], [4], [1], [5], [2]])[:batch]
    return {
        "frame_embeddings": rng.normal(size=(batch, frames, DIM)).astype("float32"),
        "frame_features": rng.normal(size=(batch, frames, FEATURES)).astype("float32"),
        "mask": mask,
    }


def tempered(trained: dict, frame_embeddings, temperature: float):
    """The offline computation: the T = 1 head's frame weights raised to 1/T and renormalised,
    the set embedding the normalised weighted mean of the unit frame embeddings (float64)."""
    weights = tempered_weights(trained["weights"], temperature)
    frames = unit(frame_embeddings.astype(np.float64))
    return unit(np.einsum("bt,btd->bd", weights, frames)), weights


def pair(kind, rng, temperature):
    """The same random weights at T = 1 and at `temperature`."""
    trained = randomize(HEADS[kind](), rng, scale=1.5)
    hot = HEADS[kind](temperature=temperature)
    hot.set_weights(trained.get_weights())
    return trained, hot


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_temperature_one_is_the_trained_head_bit_for_bit(kind, rng):
    trained, explicit = pair(kind, rng, 1.0)
    assert trained.temperature == 1.0 and trained.get_config()["temperature"] == 1.0
    x = head_inputs(rng)
    got, expected = numpy_outputs(trained(x)), numpy_outputs(explicit(x))
    for key in got:
        np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_temperature_three_is_the_offline_computation(kind, rng):
    trained, hot = pair(kind, rng, 3.0)
    x = head_inputs(rng)
    before, after = numpy_outputs(trained(x)), numpy_outputs(hot(x))
    embedding, weights = tempered(before, x["frame_embeddings"], 3.0)
    np.testing.assert_allclose(after["embedding"], embedding, atol=2e-6)
    np.testing.assert_allclose(after["weights"], weights, atol=2e-6)
    np.testing.assert_array_equal(after["weights"][~x["mask"]], 0.0)
    if kind == "qan":  # the quality output stays μ
        np.testing.assert_array_equal(after["quality"], before["quality"])
    # softer: every set's weights closer to uniform than the trained head's
    uniform = x["mask"] / x["mask"].sum(-1, keepdims=True)
    gap = [np.abs(w - uniform).sum(-1) for w in (before["weights"], after["weights"])]
    assert np.all(gap[1] <= gap[0] + 1e-7) and np.any(gap[1] < gap[0])


@pytest.mark.parametrize("kind", ["nan1", "qan"])
def test_stream_equals_batch_at_temperature_three(kind, rng):
    _, head = pair(kind, rng, 3.0)
    stream = StreamingAggregator(head)
    assert stream.constant_state
    x = head_inputs(rng, batch=3, frames=5)
    valid = x["mask"]
    state = stream.init_state(3)
    for n in range(5):
        state = stream.update(
            state, x["frame_embeddings"][:, n], x["frame_features"][:, n], valid=valid[:, n]
        )
    expected = numpy_outputs(head(x))["embedding"]
    np.testing.assert_allclose(stream.embedding(state), expected, atol=1e-5)


def test_keras_round_trips_keep_temperature(rng, tmp_path):
    keras.utils.set_random_seed(1)
    backbone = TinyBackbone()
    images, mask = image_sets(rng, 2, 3, [3, 2])
    models = {
        "nan": NAN.from_backbone(backbone, num_blocks=2, max_logit=1.5, temperature=3.0),
        "qan": QAN.from_backbone(backbone, quality_input="pooled", filters=4, temperature=3.0),
    }
    for name, model in models.items():
        randomize(model.head, rng)
        (tmp_path / name).mkdir()
        inputs = {"images": images, "mask": mask}
        loaded = assert_keras_file_round_trip(model, inputs, tmp_path / name)
        assert loaded.head.temperature == 3.0
        assert loaded.head.get_layer("aggregation").temperature == 3.0
        assert loaded.head.get_config() == model.head.get_config()


@pytest.mark.parametrize("kind", ["nan2", "qan"])
def test_fit_at_temperature_three(kind, rng):
    """The tempered head still learns to down-weight ruined frames (flagged by their frame
    features): the loss falls and the weights stay finite."""
    labels = np.repeat(np.arange(4), 2).astype("int32")
    centres = rng.normal(size=(1, 1, DIM)) + 0.5 * rng.normal(size=(4, 1, DIM))
    ruined = rng.uniform(size=(8, 4)) < 0.5
    ruined[:, 0] = False
    frames = np.where(ruined[..., None], rng.normal(size=(8, 4, DIM)), centres[labels])
    x = {
        "frame_embeddings": (frames + rng.normal(0, 0.1, (8, 4, DIM))).astype("float32"),
        "frame_features": np.repeat(ruined[..., None], FEATURES, -1).astype("float32"),
        "mask": np.ones((8, 4), bool),
    }
    keras.utils.set_random_seed(3)
    head = HEADS[kind](temperature=3.0)
    loss = ContrastiveLoss(pairs="batch") if kind == "nan2" else TripletLoss("hard", margin=0.5)
    assert_fit_reduces_loss(
        head,
        x,
        {"embedding": labels},
        {"embedding": loss},
        epochs=10,
        learning_rate=0.1,
        run_eagerly=True,
    )
    assert all(np.all(np.isfinite(w)) for w in head.get_weights())
    weights = numpy_outputs(head(x))["weights"]
    assert weights[ruined].mean() < weights[~ruined].mean()


@pytest.mark.parametrize("build", [NANHead, QANHead])
@pytest.mark.parametrize("bad", [0.0, -3, float("nan"), True])
def test_bad_temperature_is_refused(build, bad):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        build(DIM, temperature=bad)


@pytest.mark.parametrize("name", ["nan", "nan1", "qan"])
def test_shipped_preset_is_its_trained_weights_at_its_temperature(name, rng):
    """The preset's head (its kwargs' temperature, default 1) on its shipped weights equals the
    offline computation from the same weights at T = 1."""
    spec = get_preset(name).head
    temperature = spec.kwargs.get("temperature", 1.0)
    weights = SHIPPED_WEIGHTS / spec.weights
    shipped, trained = build_head(name, weights), build_head(name, weights, temperature=1.0)
    assert shipped.temperature == temperature
    x = {
        "frame_embeddings": rng.normal(size=(4, 5, 128)).astype("float32"),
        "frame_features": np.abs(rng.normal(size=(4, 5, 448))).astype("float32"),
        "mask": np.arange(5)[None] < np.array([[5], [3], [1], [4]]),
    }
    embedding, frame_weights = tempered(
        numpy_outputs(trained(x)), x["frame_embeddings"], temperature
    )
    out = numpy_outputs(shipped(x))
    np.testing.assert_allclose(out["embedding"], embedding, atol=2e-6)
    np.testing.assert_allclose(out["weights"], frame_weights, atol=2e-6)

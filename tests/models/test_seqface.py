"""SeqFace: mean-of-normalised-frames set embedding and the multi-loss training graph."""

import keras
import numpy as np
import pytest

from keras_faceset.layers import ArcFace
from keras_faceset.losses import LSRLoss
from keras_faceset.models.nan import NANHead
from keras_faceset.models.seqface import SeqFace, SeqFaceHead, lsr_targets
from tests.checks import (
    assert_fit_reduces_loss,
    assert_jit_compile_matches,
    assert_keras_file_round_trip,
)
from tests.models.set_helpers import (
    DIM,
    IMAGE_SIZE,
    TinyBackbone,
    image_sets,
    numpy_outputs,
    randomize,
    unit,
)

NUM_IDENTITIES, NUM_SEQUENCES = 4, 2


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(1)
    return TinyBackbone()


def _frames(rng, per_class=2):
    """Images of identities 0..3 (labelled) and of sequences 4, 5 (no identity)."""
    labels = np.repeat(np.arange(NUM_IDENTITIES + NUM_SEQUENCES), per_class).astype("int32")
    base = rng.uniform(0, 255, (NUM_IDENTITIES + NUM_SEQUENCES, IMAGE_SIZE, IMAGE_SIZE, 3))
    images = np.clip(base[labels] + rng.normal(0, 60, (len(labels), *base.shape[1:])), 0, 255)
    return images.astype("float32"), labels


@pytest.mark.parametrize("projection_dim", [None, 8])
def test_head_is_mean_of_normalised_frames(rng, projection_dim):
    head = randomize(SeqFaceHead(DIM, projection_dim=projection_dim), rng)
    frames = rng.normal(size=(3, 4, DIM)).astype("float32")
    mask = np.arange(4)[None] < np.array([[4], [2], [1]])
    out = numpy_outputs(head({"frame_embeddings": frames, "mask": mask}))
    x = frames.astype(np.float64)
    if projection_dim:
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in head.get_layer("projection").weights)
        x = x @ kernel + bias
    weights = mask / mask.sum(-1, keepdims=True)
    np.testing.assert_allclose(out["weights"], weights, atol=1e-7)
    np.testing.assert_allclose(
        out["embedding"], unit(np.einsum("bt,btd->bd", weights, unit(x))), atol=2e-6
    )


def test_image_sets_equal_head_after_backbone_and_round_trip(backbone, rng, tmp_path):
    model = SeqFace.from_backbone(backbone)
    images, mask = image_sets(rng, 2, 3, [3, 1])
    out = numpy_outputs(model({"images": images, "mask": mask}))
    frames = keras.ops.convert_to_numpy(backbone(images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)))
    frames = unit(frames.reshape(2, 3, DIM))
    np.testing.assert_allclose(out["embedding"][0], unit(frames[0].mean(0)), atol=1e-6)
    np.testing.assert_allclose(out["embedding"][1], frames[1, 0], atol=1e-6)  # one frame
    loaded = assert_keras_file_round_trip(model, {"images": images, "mask": mask}, tmp_path)
    assert isinstance(loaded, SeqFace) and isinstance(loaded.head, SeqFaceHead)


def test_lsr_targets():
    np.testing.assert_array_equal(lsr_targets([0, 3, 4, 5, 1], 4), [0, 3, -1, -1, 1])
    with pytest.raises(ValueError, match="integers"):
        lsr_targets([0.0, 1.0], 4)


def test_multi_loss_training_on_images_lowers_loss_and_trains_the_set_model(rng):
    keras.utils.set_random_seed(3)
    model = SeqFace.from_backbone(TinyBackbone())
    train = model.training_model(
        NUM_IDENTITIES, NUM_SEQUENCES, center_loss_weight=0.01, dsa_options={"p": 0.5}, seed=1
    )
    assert {layer.name for layer in train.layers} >= {"dsa_loss", "center_loss", "classifier"}
    images, labels = _frames(rng)
    sets = {"images": images[None, :3], "mask": np.ones((1, 3), bool)}
    before = numpy_outputs(model(sets))["embedding"]
    x = {"images": images, "labels": labels}
    losses = assert_fit_reduces_loss(
        train, x, {"logits": lsr_targets(labels, NUM_IDENTITIES)}, {"logits": LSRLoss()}
    )
    # the training graph shares the backbone: the set model now embeds differently
    after = numpy_outputs(model(sets))["embedding"]
    assert np.abs(after - before).max() > 1e-3, losses
    assert train.get_layer("dsa_loss").centers.shape == (NUM_IDENTITIES + NUM_SEQUENCES, DIM)


def test_objective_is_lsr_plus_added_dsa_and_center_losses(rng):
    """`evaluate` reports LSR(logits) + dsa_weight · L_DSA + center_loss_weight · L_C."""
    model = SeqFace.from_backbone(TinyBackbone())
    train = model.training_model(
        NUM_IDENTITIES,
        NUM_SEQUENCES,
        classifier="softmax",
        dsa_weight=2.0,
        center_loss_weight=0.5,
        dsa_options={"p": 1.0},  # every allowed negative: deterministic
    )
    train.compile(loss={"logits": LSRLoss()})
    images, labels = _frames(rng, per_class=1)
    x = {"images": images, "labels": labels}
    targets = lsr_targets(labels, NUM_IDENTITIES)
    total = train.evaluate(x, {"logits": targets}, batch_size=len(labels), verbose=0)
    logits = train(x)["logits"]
    added = [float(keras.ops.convert_to_numpy(loss)) for loss in train.losses]
    lsr = float(keras.ops.convert_to_numpy(LSRLoss()(targets, logits)))
    assert len(added) == 2 and min(added) > 0
    assert total == pytest.approx(lsr + sum(added), rel=1e-5)


def test_head_training_model_with_projection(rng):
    head = SeqFaceHead(DIM, projection_dim=8)
    train = head.training_model(NUM_IDENTITIES, NUM_SEQUENCES, classifier=ArcFace(NUM_IDENTITIES))
    labels = np.repeat(np.arange(NUM_IDENTITIES + NUM_SEQUENCES), 3).astype("int32")
    centres = rng.normal(size=(NUM_IDENTITIES + NUM_SEQUENCES, DIM))
    frames = (centres[labels] + 0.5 * rng.normal(size=(len(labels), DIM))).astype("float32")
    x = {"frame_embeddings": frames, "labels": labels}
    y = {"logits": lsr_targets(labels, NUM_IDENTITIES)}
    assert_fit_reduces_loss(train, x, y, {"logits": LSRLoss()}, epochs=20)


def test_jit_compile_head(rng):
    head = randomize(SeqFaceHead(DIM, projection_dim=8), rng)
    inputs = {
        "frame_embeddings": rng.normal(size=(3, 4, DIM)).astype("float32"),
        "mask": np.arange(4)[None] < np.array([[4], [2], [1]]),
    }
    assert_jit_compile_matches(head, inputs)


def test_bad_arguments_raise(backbone):
    with pytest.raises(ValueError, match="no frame weights to train"):
        SeqFaceHead(DIM).training_model(NUM_IDENTITIES)
    with pytest.raises(ValueError, match="Unknown classifier"):
        SeqFace.from_backbone(backbone).training_model(NUM_IDENTITIES, classifier="arcface")
    with pytest.raises(ValueError, match="needs a SeqFaceHead"):
        SeqFace(backbone, NANHead(DIM))
    with pytest.raises(ValueError, match="projection_dim must be a positive int"):
        SeqFaceHead(DIM, projection_dim=0)

"""Training (case 14): triplet batches without a valid triplet, labels outside the classes of
a margin, center or DSA head, and a NaN loss in `keras-faceset train`."""

import itertools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_faceset.cli import main
from keras_faceset.cli import train as train_command
from keras_faceset.cli.train import checkpoint_path
from keras_faceset.layers import ArcFace, CosFace, L2SphereFace, NormalizedSoftmax, SphereFace
from keras_faceset.losses import (
    CenterLoss,
    DSALoss,
    LSRLoss,
    TripletLoss,
    lsr_loss,
    pairwise_distance,
    triplet_loss,
)
from tests.cli.test_cli_train import FAST, image_data, presets, weights_of  # noqa: F401

MINING = ("semi_hard", "hard", "all")
DISTANCES = ("squared_l2", "l2", "cosine")
MARGIN = 0.2


def _embeddings(batch: int = 6, dim: int = 4, seed: int = 0) -> tf.Variable:
    return tf.Variable(np.random.default_rng(seed).normal(size=(batch, dim)).astype("float32"))


def _loss_and_gradient(labels, embeddings, **options):
    with tf.GradientTape() as tape:
        loss = triplet_loss(labels, embeddings, margin=MARGIN, **options)
    return float(loss), tape.gradient(loss, embeddings).numpy()


# --- triplet batches without a valid triplet ---------------------------------------------


@pytest.mark.parametrize(("mining", "distance"), list(itertools.product(MINING, DISTANCES)))
@pytest.mark.parametrize("labels", [[3] * 6, list(range(6))], ids=["one identity", "distinct"])
def test_a_triplet_batch_of_one_identity_or_all_distinct_identities_gives_zero_loss(
    mining, distance, labels
):
    # also with all embeddings equal (zero distances: the square root's gradient at 0)
    for embeddings in (_embeddings(), tf.Variable(np.ones((6, 4), "float32"))):
        loss, gradient = _loss_and_gradient(labels, embeddings, mining=mining, distance=distance)
        assert loss == 0.0
        np.testing.assert_array_equal(gradient, 0.0)
        keras_loss = TripletLoss(mining=mining, margin=MARGIN, distance=distance)
        assert float(keras_loss(np.array(labels), embeddings)) == 0.0


@pytest.mark.parametrize("distance", DISTANCES)
def test_batch_hard_over_all_anchors_of_such_batches_is_its_documented_value(distance):
    embeddings = _embeddings()
    # one identity: no anchor has a negative, each counts the margin
    loss, gradient = _loss_and_gradient([3] * 6, embeddings, mining="hard", average="all_anchors")
    assert loss == pytest.approx(MARGIN)
    assert np.isfinite(gradient).all()
    # all distinct: each anchor counts max(margin - its closest negative, 0)
    loss, gradient = _loss_and_gradient(
        list(range(6)), embeddings, mining="hard", average="all_anchors", distance=distance
    )
    d = pairwise_distance(embeddings, distance).numpy() + np.diag([np.inf] * 6)
    assert loss == pytest.approx(np.maximum(MARGIN - d.min(axis=1), 0).mean(), abs=1e-6)
    assert np.isfinite(gradient).all()


def test_fitting_on_batches_without_a_triplet_keeps_the_weights_finite_and_unchanged():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), TripletLoss(mining="hard", distance="l2"))
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).normal(size=(12, 4)).astype("float32")
    y = np.array([0] * 6 + list(range(1, 7)), "int32")  # a batch of one, one of distinct
    history = model.fit(x, y, batch_size=6, epochs=2, shuffle=False, verbose=0).history
    assert history["loss"] == [0.0, 0.0]
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# --- labels outside the classes of a head ------------------------------------------------

CLASSES, DIM = 10, 8
HEADS = {
    "ArcFace": lambda: ArcFace(CLASSES),
    "CosFace": lambda: CosFace(CLASSES),
    "NormalizedSoftmax": lambda: NormalizedSoftmax(CLASSES),
    "SphereFace": lambda: SphereFace(CLASSES),
    "L2SphereFace": lambda: L2SphereFace(CLASSES),
    "CenterLoss": lambda: CenterLoss(CLASSES),
    "DSALoss": lambda: DSALoss(6, num_sequences=4),
}


MARGIN_HEADS = ("ArcFace", "CosFace", "NormalizedSoftmax", "SphereFace", "L2SphereFace")


@pytest.mark.parametrize("name", MARGIN_HEADS)
def test_a_margin_heads_minus_one_label_is_an_unlabeled_sample_without_margin(name):
    x, _ = _batch([0, 1])
    head = HEADS[name]()
    plain = ops.convert_to_numpy(head(x))
    margined = ops.convert_to_numpy(head([x, np.array([3, -1], "int32")]))
    np.testing.assert_allclose(margined[1], plain[1], rtol=1e-6)  # no margin on row 1
    if name != "NormalizedSoftmax":  # the one head without a margin
        assert not np.allclose(margined[0, 3], plain[0, 3])  # row 0's target has its margin
    np.testing.assert_allclose(np.delete(margined[0], 3), np.delete(plain[0], 3), rtol=1e-6)


def _head_model(name: str) -> keras.Model:
    x, y = keras.Input((DIM,)), keras.Input((), dtype="int32")
    out = HEADS[name]()([x, y])
    if name in ("CenterLoss", "DSALoss"):  # embeddings come back: add a softmax classifier
        out = keras.layers.Dense(CLASSES)(out)
    model = keras.Model([x, y], out)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("sgd", loss, jit_compile=False)
    return model


def _batch(labels):
    x = np.random.default_rng(0).normal(size=(len(labels), DIM)).astype("float32")
    return x, np.array(labels, "int32")


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize(("bad", "row"), [(10, 2), (-2, 1)], ids=["too large", "negative"])
def test_a_label_outside_the_classes_of_a_head_is_named_with_the_number_of_classes(name, bad, row):
    labels = [0, 9, 3][:row] + [bad] + [4]
    x, y = _batch(labels)
    head = HEADS[name]()
    owner = f"{name} layer {head.name}"
    head([x[:1], y[:1]])  # in range: fine
    lowest = -1 if name in MARGIN_HEADS else 0  # a margin head's -1: unlabeled, no margin
    with pytest.raises(
        ValueError,
        match=rf"label {bad} at batch row {row}: {owner}: a label is "
        rf"outside \[{lowest}, {CLASSES}\): labels index the {CLASSES} classes",
    ):
        head([x, y])
    model = _head_model(name)
    model.fit([x[:1], y[:1]], y[:1], verbose=0)  # in range: fine
    label, at_row = re.escape(f"[label:] [{bad}] [at batch row:] [{row}]"), "(.|\n)*"
    message = rf"{name} layer \w+: a label is outside \[{lowest}, {CLASSES}\){at_row}{label}"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        model.fit([x, y], np.minimum(np.abs(y), CLASSES - 1), shuffle=False, verbose=0)


# --- a NaN loss in `keras-faceset train` -------------------------------------------------


def test_a_nan_loss_stops_training_at_its_step_and_keeps_the_last_checkpoint(
    presets,  # noqa: F811
    image_data,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    out = tmp_path / "model.keras"
    checkpoints = tmp_path / "model.keras.checkpoints"
    command = ["train", "tiny", str(image_data), str(out), *FAST]
    assert main([*command, "--epochs", "1"]) == 0
    capsys.readouterr()
    first = checkpoint_path(checkpoints, 1)
    saved = {path: path.read_bytes() for path in (first, out)}

    examples = train_command._examples

    def with_nan_images(*args):  # the chips come back with NaN pixels
        chips, labels = examples(*args)
        chips[:] = np.nan
        return chips, labels

    monkeypatch.setattr(train_command, "_examples", with_nan_images)
    assert main([*command, "--epochs", "2", "--resume"]) == 1
    error = capsys.readouterr().err
    assert "training stopped at step 4: the loss is nan" in error  # epoch 2's first step
    assert f"the last checkpoint, {first} (epoch 1), is intact: continue from it" in error
    assert sorted(p.name for p in checkpoints.iterdir()) == [first.name]
    assert {path: path.read_bytes() for path in (first, out)} == saved
    assert all(np.isfinite(w).all() for w in weights_of(first))


def test_an_lsr_label_beyond_the_logits_is_named_and_negative_ones_stay_unlabeled():
    logits = np.random.default_rng(0).normal(size=(3, CLASSES)).astype("float32")
    unlabeled = ops.convert_to_numpy(lsr_loss(np.array([-1, 2, -5], "int32"), logits))
    uniform = -np.log(ops.convert_to_numpy(ops.softmax(logits))).mean(axis=1)
    np.testing.assert_allclose(unlabeled[[0, 2]], uniform[[0, 2]], rtol=1e-5)
    with pytest.raises(ValueError, match=rf"label {CLASSES} at batch row 1: lsr_loss over"):
        lsr_loss(np.array([0, CLASSES, -1], "int32"), logits)
    x = keras.Input((DIM,))
    model = keras.Model(x, keras.layers.Dense(CLASSES)(x))
    model.compile("sgd", LSRLoss(), jit_compile=False)
    features, _ = _batch([0, 1, 2])
    model.fit(features, np.array([0, -1, 9], "int32"), verbose=0)  # in range: fine
    with pytest.raises(tf.errors.InvalidArgumentError, match="label:.*12"):
        model.fit(features, np.array([0, 12, -1], "int32"), shuffle=False, verbose=0)

"""Every loss of `keras_faceset.losses` through the shared checks of `tests.layer_case`: the
`keras.losses.Loss` classes in a small model, the loss layers (`CenterLoss`, `DSALoss`) as
layers. Config and `.keras` round trips, one `fit` step, `jit_compile` and `mixed_bfloat16`."""

import keras
import numpy as np
import pytest

import keras_faceset.losses
from keras_faceset.losses import (
    CenterLoss,
    ContrastiveLoss,
    DSALoss,
    GaussianPrecisionLoss,
    LSRLoss,
    TripletLoss,
)
from tests import layer_case
from tests.layer_case import LayerCase, LossCase

BATCH, DIM, EMBEDDING = 12, 8, 4


def embedder(input_shape=(DIM,), units=EMBEDDING, normalize=True, use_bias=True) -> keras.Model:
    layers = [keras.Input(input_shape), keras.layers.Dense(units, use_bias=use_bias)]
    return keras.Sequential(layers + ([keras.layers.UnitNormalization()] if normalize else []))


def identities(labels):
    """Features around one random centre per identity, and the labels."""

    def data(rng):
        labels_ = np.asarray(labels, "int32")
        centres = rng.normal(size=(labels_.max() + 1, DIM)) * 1.5
        x = centres[np.maximum(labels_, 0)] + rng.normal(size=(len(labels_), DIM))
        return x.astype("float32"), labels_

    return data


def pairs(rng):
    """Stacked pairs `(B, 2, DIM)`, half of them same-identity (label 1)."""
    centres = rng.normal(size=(4, DIM)) * 1.5
    first = rng.integers(0, 4, size=BATCH)
    same = (np.arange(BATCH) % 2).astype("int32")
    second = np.where(same == 1, first, (first + rng.integers(1, 4, size=BATCH)) % 4)
    points = centres[np.stack([first, second], 1)] + rng.normal(size=(BATCH, 2, DIM))
    return points.astype("float32"), same


def residuals(rng):
    """Frame features and squared residuals >= 1 (a quality model's precision target)."""
    x = rng.normal(size=(BATCH, DIM)).astype("float32")
    return x, rng.uniform(1.0, 4.0, size=(BATCH, 1)).astype("float32")


FOUR_BY_THREE = np.repeat(np.arange(4), 3)
WITH_SINGLETONS = [0, 0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6]  # identities 2, 4, 6: one sample
WITH_UNLABELED = [0, 1, 2, 3, 4, -1, 0, 1, -1, 2, 3, 4]  # -1: samples of unlabeled sequences

LOSS_CASES = [
    LossCase("triplet", TripletLoss, embedder, identities(FOUR_BY_THREE)),
    LossCase(
        "triplet_hard_all_anchors",
        lambda: TripletLoss("hard", 0.5, "l2", average="all_anchors", reduction="sum"),
        embedder,
        identities(WITH_SINGLETONS),
    ),
    LossCase(
        "contrastive",
        lambda: ContrastiveLoss(margin=2.0),
        # A bias shared by both members of a pair cancels in their distance: no gradient.
        lambda: embedder((2, DIM), normalize=False, use_bias=False),
        pairs,
    ),
    LossCase(
        "contrastive_batch",
        lambda: ContrastiveLoss(margin=0.7, distance="cosine", pairs="batch"),
        embedder,
        identities(FOUR_BY_THREE),
    ),
    LossCase(
        "lsr",
        LSRLoss,
        lambda: embedder(units=5, normalize=False),
        identities(WITH_UNLABELED),
    ),
    LossCase(
        "gaussian_precision",
        GaussianPrecisionLoss,
        lambda: keras.Sequential(
            [keras.Input((DIM,)), keras.layers.Dense(1, activation="sigmoid")]
        ),
        residuals,
    ),
]


def embeddings_and_labels(rng, classes=3):
    embeddings = rng.normal(size=(BATCH, EMBEDDING)).astype("float32")
    return [embeddings, rng.integers(0, classes, size=BATCH).astype("int32")]


LAYER_CASES = [
    LayerCase(
        "center", lambda: CenterLoss(3, alpha=0.25, weight=0.5), embeddings_and_labels, embed=True
    ),
    # p = 1: every allowed negative, so the drawn mask is the same in every call.
    LayerCase(
        "dsa",
        lambda: DSALoss(2, 1, p=1.0, weight=0.5, lambda_=0.3, seed=2),
        embeddings_and_labels,
    ),
]


def test_every_loss_has_a_case():
    public = {
        name
        for name in keras_faceset.losses.__all__
        if isinstance(getattr(keras_faceset.losses, name), type)
    }
    covered = {type(case.make()).__name__ for case in [*LOSS_CASES, *LAYER_CASES]}
    assert covered == public


def _ids(cases):
    return [case.id for case in cases]


@pytest.mark.parametrize("case", LOSS_CASES, ids=_ids(LOSS_CASES))
def test_loss_config_round_trip(case):
    layer_case.check_loss_config_round_trip(case)


@pytest.mark.parametrize("case", LOSS_CASES, ids=_ids(LOSS_CASES))
def test_loss_keras_file_round_trip(case, tmp_path):
    layer_case.check_loss_keras_file_round_trip(case, tmp_path)


@pytest.mark.parametrize("case", LOSS_CASES, ids=_ids(LOSS_CASES))
def test_loss_fit_step(case):
    layer_case.check_loss_fit_step(case)


@pytest.mark.parametrize("case", LOSS_CASES, ids=_ids(LOSS_CASES))
def test_loss_jit_compile(case):
    layer_case.check_loss_jit_compile(case)


@pytest.mark.parametrize("case", LOSS_CASES, ids=_ids(LOSS_CASES))
def test_loss_mixed_bfloat16(case):
    layer_case.check_loss_mixed_bfloat16(case)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids(LAYER_CASES))
def test_layer_config_round_trip(case):
    layer_case.check_layer_config_round_trip(case)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids(LAYER_CASES))
def test_layer_keras_file_round_trip(case, tmp_path):
    layer_case.check_layer_keras_file_round_trip(case, tmp_path)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids(LAYER_CASES))
def test_layer_fit_step(case):
    layer_case.check_layer_fit_step(case)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids(LAYER_CASES))
def test_layer_jit_compile(case):
    layer_case.check_layer_jit_compile(case)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids(LAYER_CASES))
def test_layer_mixed_bfloat16(case):
    layer_case.check_layer_mixed_bfloat16(case)

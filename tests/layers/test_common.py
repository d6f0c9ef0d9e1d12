"""Every public layer through the shared checks of `tests.layer_case`: config and `.keras`
round trips, one `fit` step, `jit_compile` and `mixed_bfloat16`."""

import numpy as np
import pytest

import keras_faceset.layers
from keras_faceset.layers import (
    ArcFace,
    AttentionAggregation,
    CosFace,
    L2Normalize,
    L2SphereFace,
    MaskedMaxPooling,
    MaskedMeanPooling,
    NormalizedSoftmax,
    QualityHead,
    QualityPooling,
    SphereFace,
    TextureStatistics,
)
from tests import layer_case
from tests.layer_case import LayerCase

BATCH, FRAMES, DIM, CLASSES = 6, 5, 4, 3


def features(rng, shape=(BATCH, FRAMES, DIM)):
    return rng.normal(size=shape).astype("float32")


def frame_mask(rng):
    """A set mask with an empty set, a singleton and a full one."""
    mask = rng.random((BATCH, FRAMES)) < 0.6
    mask[0], mask[1], mask[2] = False, np.arange(FRAMES) == 2, True
    return mask


def sets(rng):
    return [features(rng), frame_mask(rng)]


def quality_sets(rng):
    x, mask = sets(rng)
    return [x, rng.uniform(0.05, 1.0, size=(BATCH, FRAMES)).astype("float32"), mask]


def embeddings_and_labels(rng):
    return [features(rng, (BATCH, DIM)), rng.integers(0, CLASSES, size=BATCH).astype("int32")]


CASES = [
    LayerCase("nan", lambda: AttentionAggregation(2, return_attention=True), sets),
    LayerCase(
        "nan_quality",
        lambda: AttentionAggregation(1, quality_features=True, max_logit=2.0),
        lambda rng: [features(rng), features(rng, (BATCH, FRAMES, 2)), frame_mask(rng)],
    ),
    LayerCase("l2_normalize", lambda: L2Normalize(axis=(1, 2), scale=3.0), features, embed=True),
    LayerCase(
        "l2_normalize_learnable",
        lambda: L2Normalize(learnable_scale=True),
        lambda rng: features(rng, (BATCH, DIM)),
    ),
    LayerCase("max_pooling", lambda: MaskedMaxPooling(), sets, embed=True),
    LayerCase("mean_pooling", lambda: MaskedMeanPooling(return_weights=True), sets, embed=True),
    LayerCase("quality_pooling", lambda: QualityPooling(), quality_sets, embed=True),
    LayerCase(
        "quality_head", lambda: QualityHead(filters=3), lambda rng: features(rng, (2, 3, 5, 5, 2))
    ),
    LayerCase(
        "texture_statistics",
        lambda: TextureStatistics(),
        lambda rng: [features(rng, (BATCH, 5, 5, 3)), features(rng, (BATCH, 3, 4, 2))],
        embed=True,
    ),
    LayerCase("normface", lambda: NormalizedSoftmax(CLASSES, scale=16.0), embeddings_and_labels),
    LayerCase("cosface", lambda: CosFace(CLASSES), embeddings_and_labels),
    # The angular margins amplify the cosine's bfloat16 rounding (a few 2^-8 steps): ArcFace's
    # cos(θ + m) by 1 + sin m / tan θ, SphereFace's ψ = ±T_m(cos θ) - 2k by up to m².
    LayerCase("arcface", lambda: ArcFace(CLASSES), embeddings_and_labels, bf16_tolerance=4e-2),
    LayerCase(
        "sphereface",
        lambda: SphereFace(CLASSES, margin=3, lambda_=0.5),
        embeddings_and_labels,
        bf16_tolerance=4e-2,
    ),
    LayerCase(
        "l2sphereface", lambda: L2SphereFace(CLASSES), embeddings_and_labels, bf16_tolerance=4e-2
    ),
]
IDS = [case.id for case in CASES]


def test_every_public_layer_has_a_case():
    covered = {type(case.make()).__name__ for case in CASES}
    assert covered == set(keras_faceset.layers.__all__)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_round_trip(case):
    layer_case.check_layer_config_round_trip(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_keras_file_round_trip(case, tmp_path):
    layer_case.check_layer_keras_file_round_trip(case, tmp_path)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fit_step(case):
    layer_case.check_layer_fit_step(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_compile(case):
    layer_case.check_layer_jit_compile(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mixed_bfloat16(case):
    layer_case.check_layer_mixed_bfloat16(case)

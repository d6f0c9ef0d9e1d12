"""keras_faceset.zoo.build_head: the presets' heads, with overrides and weights."""

import keras
import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.models import MeanHead, NANHead, QANHead, SeqFaceHead
from keras_faceset.zoo import build_head
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS

CLASSES = {"nan": NANHead, "nan1": NANHead, "qan": QANHead, "seqface": SeqFaceHead}


@pytest.mark.parametrize("name", sorted(zoo.PRESETS))
def test_build_head_is_the_presets_builder_with_its_kwargs(name):
    spec = zoo.PRESETS[name].head
    keras.utils.set_random_seed(3)
    head = build_head(name)
    assert type(head) is CLASSES.get(name, MeanHead)
    keras.utils.set_random_seed(3)
    direct = type(head)(**spec.kwargs)
    for a, b in zip(head.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # same draws: a training run reproduces


def test_overrides_replace_single_kwargs():
    keras.utils.set_random_seed(4)
    head = build_head("nan1", feature_shape=256)
    keras.utils.set_random_seed(4)
    direct = NANHead(**{**zoo.PRESETS["nan1"].head.kwargs, "feature_shape": 256})
    assert head.feature_shape == (256,) and head.count_params() == direct.count_params()
    for a, b in zip(head.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_file_gives_the_shipped_head():
    spec = zoo.PRESETS["qan"].head
    head = build_head("qan", SHIPPED_WEIGHTS / spec.weights)
    shipped = zoo.load("qan", form="head")
    rng = np.random.default_rng(0)
    inputs = {
        "frame_embeddings": rng.normal(size=(2, 3, 128)).astype(np.float32),
        "frame_features": rng.uniform(0, 2, (2, 3, 448)).astype(np.float32),
        "mask": np.array([[1, 1, 1], [1, 1, 0]], bool),
    }
    np.testing.assert_array_equal(head(inputs)["embedding"], shipped(inputs)["embedding"])

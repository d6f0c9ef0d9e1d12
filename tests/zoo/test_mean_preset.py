"""The mean preset: dlib_resnet's unit frame embeddings averaged, through the set API, CLI and
export, offline and without trained weights."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models import MeanHead, MeanSet
from tests.conftest import REPO

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # Powell, Serena 1, Serena 2


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_preset_is_a_set_model_of_dlib_resnet_with_a_weightless_mean_head(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path / "home"))
    preset = zoo.get_preset("mean")
    assert preset.is_set_model and preset.backbone_preset == "dlib_resnet"
    assert preset.head.weights is None and preset.head.results_model == "mean_dlib"
    assert preset.crop == zoo.get_preset("dlib_resnet").crop
    assert preset.thresholds == {"1e-02": 0.0512}
    head = zoo.load("mean", form="head")
    assert type(head) is MeanHead and head.count_params() == 0


@pytest.fixture(scope="module")
def embedders():
    return FaceEmbedder("mean", align="center"), FaceEmbedder("dlib_resnet", align="center")


def test_embed_sets_is_the_normalised_mean_of_the_backbones_unit_embeddings(embedders):
    mean, dlib = embedders
    assert isinstance(mean.task, MeanSet) and mean.takes_sets and not dlib.takes_sets
    frames = dlib.embed(PHOTOS).astype(np.float64)  # unit dlib_resnet embeddings
    sets, weights = mean.embed_sets([PHOTOS, PHOTOS[1:], PHOTOS[:1]])
    expected = unit(np.stack([frames.mean(0), frames[1:].mean(0), frames[0]]))
    np.testing.assert_allclose(sets, expected, atol=1e-5)
    for w, size in zip(weights, (3, 2, 1), strict=True):
        np.testing.assert_allclose(w, np.full(size, 1 / size), atol=1e-6)
    # the two Serena Williams photos are one person at the preset's threshold, Powell another
    distance = 1.0 - sets[1] @ unit(frames[0])
    assert distance > mean.thresholds["1e-02"]
    assert 1.0 - frames[1] @ frames[2] < mean.thresholds["1e-02"]


@pytest.mark.slow  # a CLI process: TensorFlow start-up and the dlib conversion
def test_cli_verify_compares_two_sets_with_the_presets_threshold(tmp_path):
    serena, powell = tmp_path / "serena", tmp_path / "powell"
    for folder, photos in ((serena, PHOTOS[1:]), (powell, PHOTOS[:1])):
        folder.mkdir()
        for photo in photos:
            shutil.copy(photo, folder)
    command = [sys.executable, "-m", "keras_faceset.cli", "verify", "mean", "--align", "center"]
    result = subprocess.run(
        [*command, str(serena), str(powell), "--json"], capture_output=True, text=True
    )
    answer = json.loads(result.stdout)
    assert result.returncode == 1 and answer["same"] is False, result.stderr[-2000:]
    assert answer["threshold"] == 0.0512
    assert [frame["weight"] for frame in answer["weights"]["a"]] == pytest.approx([0.5, 0.5])
    assert answer["distance"] == pytest.approx(0.16, abs=0.01)

"""The shipped set heads on real dlib frames: near-uniform weights when no frame stands out, a
small weight for a ruined frame (the example photos, centre-cropped; degradations at full
severity on the chip)."""

import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.data.degrade import degrade
from keras_faceset.data.images import load_image
from keras_faceset.embedder import FaceEmbedder
from tests.conftest import REPO

PHOTOS = sorted((REPO / "examples" / "images").glob("*.jpg"))  # Powell, Serena 1, Serena 2
HEADS = ("nan", "nan1", "qan")
RUIN = ("noise", "blur", "occlusion", "downscale")


@pytest.fixture(scope="module")
def frames():
    """dlib descriptors and texture statistics of: Serena 1, Serena 2, their mirror images,
    then Serena 1 ruined by each of `RUIN`."""
    embedder = FaceEmbedder("nan", align="center")
    chips = embedder.chips([load_image(p).numpy() for p in PHOTOS[1:]])
    ruined = [degrade(chips[0], kind, 1.0, (1, 2)).numpy() for kind in RUIN]
    return embedder.frame_outputs(np.concatenate([chips, chips[:, :, ::-1], np.stack(ruined)]))


@pytest.fixture(scope="module")
def heads():
    return {name: zoo.load(name, form="head") for name in (*HEADS, "mean")}


def weights(head, frames, rows) -> np.ndarray:
    inputs = {"frame_embeddings": frames["frame_embeddings"][rows][None]}
    if head.feature_shape is not None:
        inputs["frame_features"] = frames["frame_features"][rows][None]
    inputs["mask"] = np.ones((1, len(rows)), bool)
    return np.asarray(head(inputs)["weights"][0])


@pytest.mark.parametrize("name", HEADS)
def test_weights_stay_near_uniform_when_no_frame_stands_out(name, frames, heads):
    head = heads[name]
    np.testing.assert_allclose(weights(head, frames, [0, 0, 0, 0]), 0.25, atol=1e-6)
    clean = weights(head, frames, [0, 1, 2, 3])  # two clean photos and their mirror images
    assert clean.sum() == pytest.approx(1.0, abs=1e-5)
    assert clean.max() / clean.min() < 1.2, clean  # measured 1.01 (nan) to 1.15 (qan)


@pytest.mark.parametrize("name", HEADS)
def test_a_ruined_frame_is_down_weighted(name, frames, heads):
    for ruin, kind in enumerate(RUIN):
        w = weights(heads[name], frames, [0, 1, 2, 3, 4 + ruin])
        assert w[4] < 0.2 * (1 / 5), (kind, w)  # measured 0.011 to 0.029 against 0.2 uniform
        assert w[:4].min() > 0.2, (kind, w)  # the clean frames share the rest evenly
        mean = weights(heads["mean"], frames, [0, 1, 2, 3, 4 + ruin])
        np.testing.assert_allclose(mean, 0.2, atol=1e-6)

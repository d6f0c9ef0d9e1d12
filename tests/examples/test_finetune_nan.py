"""examples/finetune_nan.py on a small folder of real LFW sets."""

import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_faceset.models  # noqa: F401  (registers NANHead for load_model)
from keras_faceset import zoo
from tests.conftest import REPO


@pytest.mark.slow
def test_finetune_lowers_the_loss_and_saves_a_working_head(set_root, tmp_path):
    output = tmp_path / "my_nan.keras"
    script = REPO / "examples" / "finetune_nan.py"
    command = [sys.executable, str(script), str(set_root), "-o", str(output), "--epochs", "15"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 sets of 5 identities, 40 frames" in result.stdout
    losses = re.search(r"loss: (\S+) before, (\S+) after", result.stdout).groups()
    before, after = map(float, losses)
    assert after < before

    head = keras.saving.load_model(output)
    shipped = zoo.load("nan", form="head")
    rng = np.random.default_rng(0)
    inputs = {
        "frame_embeddings": rng.normal(size=(2, 5, 128)).astype("float32"),
        "frame_features": rng.uniform(0, 2, size=(2, 5, 448)).astype("float32"),
        "mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool),
    }
    tuned = head(inputs)
    np.testing.assert_allclose(np.linalg.norm(tuned["embedding"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(tuned["weights"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(tuned["weights"])[0, 3:], 0.0)
    original = shipped(inputs)
    assert np.max(np.abs(np.asarray(tuned["embedding"]) - original["embedding"])) > 1e-4

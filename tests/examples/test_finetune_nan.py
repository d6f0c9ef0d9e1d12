"""examples/finetune_nan.py on a small folder of real LFW sets, then the CLI on its .keras file."""

import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.models import NAN
from tests.conftest import REPO


@pytest.mark.slow
def test_finetune_the_whole_model_then_verify_and_export_it(set_root, tmp_path):
    output = tmp_path / "my_nan.keras"
    script = REPO / "examples" / "finetune_nan.py"
    command = [sys.executable, str(script), str(set_root), "-o", str(output), "--epochs", "15"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 sets of 5 identities, 40 frames" in result.stdout
    before, after = map(
        float, re.search(r"loss: (\S+) before, (\S+) after", result.stdout).groups()
    )
    assert after < before

    tuned, shipped = keras.saving.load_model(output), zoo.load("nan")
    assert isinstance(tuned, NAN) and not tuned.backbone.trainable
    for a, b in zip(tuned.backbone.get_weights(), shipped.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the backbone was frozen
    changed = [
        np.max(np.abs(a - b))
        for a, b in zip(tuned.head.get_weights(), shipped.head.get_weights(), strict=True)
    ]
    assert max(changed) > 1e-6  # the head learned

    powell = set_root / "Colin_Powell"
    cli = [sys.executable, "-m", "keras_faceset.cli"]
    verify = [*cli, "verify", "nan", str(powell / "set0"), str(powell / "set1")]
    answer = subprocess.run(
        [*verify, "--model", str(output), "--threshold", "0.2", "--json"],
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 0, answer.stderr[-2000:]  # 0: same person
    decision = json.loads(answer.stdout)
    assert decision["same"] is True and decision["distance"] < 0.2
    unanswered = subprocess.run([*verify, "--model", str(output)], capture_output=True, text=True)
    assert unanswered.returncode == 2 and "--threshold" in unanswered.stderr  # no measured one

    exported = subprocess.run(
        [*cli, "export", "nan", str(tmp_path / "models"), "--model", str(output), "--no-warmup"],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (tmp_path / "models" / "nan" / "1" / "saved_model.pb").is_file()

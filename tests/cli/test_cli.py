"""The `keras-faceset` command line, run as users run it: in a subprocess."""

import subprocess
import sys

import numpy as np
import pytest

from keras_faceset import __version__
from tests.conftest import REPO

EXAMPLES = REPO / "examples" / "images"
SERENA_1, SERENA_2 = EXAMPLES / "Serena_Williams_0001.jpg", EXAMPLES / "Serena_Williams_0002.jpg"
POWELL = EXAMPLES / "Colin_Powell_0001.jpg"


def run(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "keras_faceset.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        pytest.fail(f"keras-faceset {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def test_version():
    assert run("--version").stdout.strip() == f"keras-faceset {__version__}"


def test_list_and_info():
    listing = run("list").stdout
    assert "facenet" in listing and "dlib_resnet" in listing and "research use" in listing
    assert "source.sha256: 55533b28a958" in run("info", "dlib_resnet").stdout


def test_unknown_model_is_a_one_line_error_and_exit_1():
    result = run("info", "facnet", check=False)
    assert result.returncode == 1
    from keras_faceset.zoo import PRESETS

    assert result.stderr.strip().splitlines() == [
        "keras-faceset info: error: Unknown model 'facnet'. Did you mean 'facenet'? "
        f"Available: {', '.join(sorted(PRESETS))}."
    ]


def _distance(output: str) -> float:
    line = next(line for line in output.splitlines() if line.startswith("cosine distance:"))
    return float(line.split(":")[1])


def test_verify_tells_same_from_different_people():
    same = run("verify", "dlib_resnet", SERENA_1, SERENA_2, "--threshold", "0.1").stdout
    different = run("verify", "dlib_resnet", SERENA_1, POWELL, "--threshold", "0.1").stdout
    assert "same person" in same and "different people" in different
    assert _distance(same) < 0.1 < _distance(different)


def test_verify_missing_file_is_a_clean_error(tmp_path):
    result = run("verify", "dlib_resnet", SERENA_1, tmp_path / "nope.jpg", check=False)
    assert result.returncode == 1 and "nope.jpg" in result.stderr
    assert "Traceback" not in result.stderr


def test_embed_a_folder_matches_verify(tmp_path):
    out = tmp_path / "faces.npz"
    run("embed", "dlib_resnet", EXAMPLES, "-o", out)
    saved = np.load(out)
    names = [p.rsplit("/", 1)[-1] for p in saved["paths"]]
    assert names == sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    embeddings = saved["embeddings"]
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    distance = 1 - embeddings[names.index(SERENA_1.name)] @ embeddings[names.index(SERENA_2.name)]
    verify = run("verify", "dlib_resnet", SERENA_1, SERENA_2, "--threshold", "0.1").stdout
    assert abs(distance - _distance(verify)) < 1e-4


def test_verify_uses_the_preset_threshold_measured_on_lfw():
    from keras_faceset.zoo import get_preset

    threshold = get_preset("dlib_resnet").thresholds["1e-03"]
    same = run("verify", "dlib_resnet", SERENA_1, SERENA_2).stdout
    different = run("verify", "dlib_resnet", SERENA_1, POWELL, "--far", "0.001").stdout
    assert f"decision at FAR 1e-3 (threshold {threshold:.4f}): same person" in same
    assert "): different people" in different


def test_verify_two_sets_with_nan_prints_attention_and_the_set_distance(tmp_path):
    import shutil

    from keras_faceset.embedder import FaceEmbedder

    set_a, set_b = tmp_path / "a", tmp_path / "b"
    set_a.mkdir(), set_b.mkdir()
    shutil.copy(SERENA_1, set_a)
    for image in (SERENA_2, POWELL):
        shutil.copy(image, set_b)
    out = run("verify", "nan", set_a, set_b, "--threshold", "0.1").stdout
    line = next(line for line in out.splitlines() if line.startswith("set B weights:"))
    weights = [float(part.split()[-1]) for part in line.split(":", 1)[1].split(",")]
    assert len(weights) == 2 and abs(sum(weights) - 1) < 2e-3
    embedder = FaceEmbedder("nan")
    (a, _), (b, expected) = embedder.embed_set([SERENA_1]), embedder.embed_set([POWELL, SERENA_2])
    np.testing.assert_allclose(weights, expected, atol=1e-3)
    assert abs(_distance(out) - (1 - float(a @ b))) < 1e-4
    assert "decision at threshold 0.1 (given): same person" in out

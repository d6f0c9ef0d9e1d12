"""`export --precision`: a bfloat16 SavedModel served by a fresh TF-only process answers as
`FaceEmbedder(precision="bfloat16")`; `--precision int8` writes the int8 `.tflite` and its
manifest, which a fresh LiteRT process serves as `FaceEmbedder(precision="int8")` embeds (the
tiny 32x32 preset, calibrated on the example photos: no LFW); `--precision int8-dynamic` the
same with no calibration."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_faceset import embedder as embedder_module
from keras_faceset.cli import main
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.export import ExportSpec, export_saved_model
from keras_faceset.files import sha256_file
from keras_faceset.models.quantize import MIN_CALIBRATION_FACES, TFLITE_PRECISIONS
from tests.export.helpers import fresh_results, start_fresh_process
from tests.test_embedder_int8 import PHOTOS, presets, unit_frames, write_faces  # noqa: F401
from tests.zoo.test_registry import tiny  # noqa: F401

BFLOAT16_ATOL = 1e-5
"""Served bfloat16 against `FaceEmbedder`'s bfloat16, per unit-embedding component: the same
bfloat16 graph in another process (measured 6e-8, eager and graph mode; bfloat16 against
float32 differs by 3.3e-3, so a float32 export fails this)."""
INT8_ATOL = 1e-6
"""The exported file is the embedder's, run by the same interpreter on another thread count
(measured 3e-8; int8 against float32 differs by 3.4e-3)."""
FRESH_LITERT = Path(__file__).with_name("fresh_litert.py")


@pytest.mark.slow  # a fresh TensorFlow process (and the export with its warm-up file)
def test_a_bfloat16_export_answers_as_the_bfloat16_embedder_in_a_tf_only_process(
    presets,  # noqa: F811
    tmp_path,
):
    bfloat16 = FaceEmbedder("tiny", precision="bfloat16", align="center")
    chips = bfloat16.chips(PHOTOS)
    expected, float32 = unit_frames(bfloat16, chips), unit_frames(FaceEmbedder("tiny"), chips)
    model_dir = export_saved_model(
        ExportSpec.from_preset("tiny"), tmp_path / "models", precision="bfloat16"
    )
    calls = {"chips": ("embed_images", {"images": chips})}
    work = tmp_path / "fresh"
    work.mkdir()
    results = fresh_results(start_fresh_process(model_dir, calls, work), work)
    assert "keras_faceset" not in set(results["modules"])
    for loader in ("tf2", "v1"):
        served = results[f"{loader}|chips|embedding"]
        assert served.dtype == np.float32 and served.shape == expected.shape
        np.testing.assert_allclose(served, expected, atol=BFLOAT16_ATOL, rtol=0)
    # bfloat16 is not float32: the served answers are the bfloat16 ones
    assert np.abs(float32 - expected).max() > 100 * BFLOAT16_ATOL, "bfloat16 in float32?"


@pytest.fixture
def few_faces(monkeypatch, tmp_path):
    """9 example-photo faces, with the minimum lowered to 8 to keep the conversion quick."""
    monkeypatch.setattr(embedder_module, "MIN_CALIBRATION_FACES", 8)
    write_faces(tmp_path / "faces", range(3))
    return tmp_path / "faces"


def test_int8_export_writes_the_embedders_model_and_a_manifest_that_serves_it(
    presets,  # noqa: F811
    few_faces,
    tmp_path,
    capsys,
):
    base = tmp_path / "models"
    argv = ["export", "tiny", str(base), "--precision", "int8", "--calibration", str(few_faces)]
    assert main(argv) == 0
    target = base / "tiny.int8.tflite"
    assert capsys.readouterr().out.strip() == str(target)
    manifest = json.loads((base / "tiny.int8.json").read_text())
    embedder = FaceEmbedder("tiny", precision="int8", calibration=few_faces)
    assert sha256_file(target) == sha256_file(embedder.frame_model.path) == manifest["sha256"]
    assert manifest["preset"] == "tiny" and manifest["file"] == target.name
    assert manifest["input"]["shape"] == [None, 32, 32, 3]
    assert manifest["input"]["crop"] == {"method": "five_point", "size": 32, "padding": 0.25}
    assert manifest["output"]["shape"] == [None, 16]
    assert manifest["calibration"] == {**embedder.int8_calibration, "source": str(few_faces)}
    assert manifest["calibration"]["images"] == 9 and len(manifest["calibration"]["sha256"]) == 64

    chips = embedder.chips(PHOTOS)
    int8 = unit_frames(embedder, chips)
    served = _served(base / "tiny.int8.json", chips, tmp_path)
    np.testing.assert_allclose(served, int8, atol=INT8_ATOL, rtol=0)
    float32 = unit_frames(FaceEmbedder("tiny"), chips)
    assert np.abs(int8 - float32).max() > 100 * INT8_ATOL  # int8, not float32
    assert np.sum(int8 * float32, axis=1).min() > 0.99

    assert main(argv) == 1  # never overwritten
    assert "already exists" in capsys.readouterr().err


def _served(manifest, chips: np.ndarray, tmp_path) -> np.ndarray:
    """The unit embeddings of `chips` from the export `manifest` says, served by a fresh
    process that imports neither keras_faceset nor (with LiteRT) Keras."""
    np.save(tmp_path / "chips.npy", chips)
    command = [sys.executable, str(FRESH_LITERT), str(manifest)]
    command += [str(tmp_path / "chips.npy"), str(tmp_path / "served.npz")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "served.npz") as served:
        assert served["sha256_ok"] and "keras_faceset" not in set(served["modules"])
        if served["engine"] == "litert":  # tf.lite, the fallback, comes with TensorFlow's Keras
            assert "keras" not in set(served["modules"])
        return served["embeddings"]


def test_int8_dynamic_export_needs_no_faces_and_serves_the_embedders_model(
    presets,  # noqa: F811
    tmp_path,
    capsys,
):
    base = tmp_path / "models"
    argv = ["export", "tiny", str(base), "--precision", "int8-dynamic", "--name", "face"]
    assert main(argv) == 0
    target = base / "face.int8-dynamic.tflite"
    assert capsys.readouterr().out.strip() == str(target)
    assert sorted(p.name for p in base.iterdir()) == ["face.int8-dynamic.json", target.name]
    manifest = json.loads((base / "face.int8-dynamic.json").read_text())
    embedder = FaceEmbedder("tiny", precision="int8-dynamic", align="center")
    assert embedder.frame_model.path.name == "tiny.int8-dynamic.tflite"
    assert sha256_file(target) == sha256_file(embedder.frame_model.path) == manifest["sha256"]
    assert manifest["precision"] == "int8-dynamic" and manifest["calibration"] is None
    assert manifest["preset"] == "tiny" and manifest["name"] == "face"
    assert manifest["file"] == target.name and manifest["bytes"] == target.stat().st_size
    assert manifest["output"]["shape"] == [None, 16]
    chips = embedder.chips(PHOTOS)
    served = _served(base / "face.int8-dynamic.json", chips, tmp_path)
    np.testing.assert_allclose(served, unit_frames(embedder, chips), atol=INT8_ATOL, rtol=0)
    assert main(argv) == 1  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_the_tflite_export_refuses_an_unknown_precision(tmp_path):
    from keras_faceset.export import export_int8

    with pytest.raises(ValueError, match=r"expected one of \('int8', 'int8-dynamic'\)"):
        export_int8("facenet", tmp_path, precision="float32")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "options, message",
    [
        (["--precision", "int8", "--xla"], "none of --xla"),
        (["--precision", "int8", "--version", "2", "--float16"], "--version, --float16"),
        (["--precision", "int8", "--model", "x.keras"], "none of --model"),
        (["--calibration", "faces"], "--calibration is for --precision int8"),
        (
            ["--precision", "int8-dynamic", "--calibration", "faces"],
            "--precision int8-dynamic needs none: drop it or ask for int8",
        ),
        (["--precision", "int8-dynamic", "--xla"], "--precision int8-dynamic writes a preset's"),
    ],
)
def test_int8_export_refuses_what_only_a_saved_model_takes(tmp_path, capsys, options, message):
    assert main(["export", "facenet", str(tmp_path), *options]) == 1
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_int8_is_refused_for_a_set_preset_with_the_alternative(tmp_path, capsys):
    assert main(["export", "nan", str(tmp_path), "--precision", "int8"]) == 1
    assert 'for a set preset or a --model file use "bfloat16"' in capsys.readouterr().err


def test_export_help_names_the_calibration_minimum():
    from keras_faceset.cli import build_parser

    parser = build_parser()
    export = parser._subparsers._group_actions[0].choices["export"]
    (option,) = [a for a in export._actions if a.dest == "calibration"]
    assert f"at least {MIN_CALIBRATION_FACES} must show a face" in option.help
    (precision,) = [a for a in export._actions if a.dest == "precision"]
    assert tuple(precision.choices) == ("float32", "bfloat16", *TFLITE_PRECISIONS)
    assert TFLITE_PRECISIONS == ("int8", "int8-dynamic")
    assert export.parse_args(["tiny", "out", "--precision", "int8-dynamic"]).precision

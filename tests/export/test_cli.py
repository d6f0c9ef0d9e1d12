"""`add_export_command`: the `export` sub-command the main CLI registers."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.export import add_export_command
from keras_faceset.models import NAN
from tests.export.helpers import SIZE, reference_embed, tiny_backbone
from tests.models.set_helpers import randomize


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-faceset")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    return parser


def test_export_command_writes_the_keras_file_as_the_requested_version(tmp_path, capsys, rng):
    backbone = tiny_backbone()
    backbone.save(tmp_path / "tiny.keras")
    argv = ["export", str(tmp_path / "tiny.keras"), str(tmp_path / "models")]
    args = _parser().parse_args([*argv, "--version", "7", "--name", "faces", "--no-warmup"])
    args.run(args)
    target = tmp_path / "models" / "faces" / "7"
    assert capsys.readouterr().out.strip() == str(target)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(target)).signatures["embed_images"](images=images)
    expected = reference_embed(backbone, images, (SIZE, SIZE))
    np.testing.assert_allclose(served["embedding"], expected, atol=1e-5, rtol=0)


def test_export_options_parse():
    args = _parser().parse_args(["export", "facenet", "models", "--float16", "--xla"])
    assert (args.model, args.base_dir, args.version, args.float16, args.xla) == (
        "facenet",
        "models",
        None,
        True,
        True,
    )
    assert not args.no_warmup and args.name is None
    assert (args.model_file, args.no_fold) == (None, False)
    args = _parser().parse_args(["export", "nan", "m", "--model", "x.keras", "--no-fold"])
    assert (args.model, args.model_file, args.no_fold) == ("nan", "x.keras", True)
    assert args.precision == "float32"
    args = _parser().parse_args(["export", "facenet", "m", "--precision", "bfloat16"])
    assert args.precision == "bfloat16"


def _fine_tuned_nan(path, size: int = 150):
    """A small NAN task (tiny backbone at the nan preset's input size, random head weights)
    saved as a .keras file, as `model.save` after fine-tuning writes it."""
    model = NAN.from_backbone(tiny_backbone(size=size), projection_dim=8)
    randomize(model.head, np.random.default_rng(5), 0.5)
    model.save(path)
    return model


def test_export_with_model_serves_the_saved_task_under_the_presets_name(tmp_path, capsys, rng):
    model = _fine_tuned_nan(tmp_path / "finetuned.keras")
    argv = ["export", "nan", str(tmp_path / "models"), "--model", str(tmp_path / "finetuned.keras")]
    args = _parser().parse_args([*argv, "--no-warmup"])
    args.run(args)
    target = tmp_path / "models" / "nan" / "1"
    assert capsys.readouterr().out.strip() == str(target)
    images = rng.integers(0, 256, (2, 3, 150, 150, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    served = tf.saved_model.load(str(target)).signatures["serving_default"]
    served = served(images=images, mask=mask)
    expected = model({"images": images.astype("float32"), "mask": mask})
    for key in ("embedding", "weights"):
        np.testing.assert_allclose(served[key], expected[key], atol=1e-5, rtol=0)
    assert np.ptp(served["weights"].numpy()[1]) > 1e-3  # the saved head's attention, not a mean


@pytest.mark.parametrize(
    ("file", "error", "message"),
    [
        ("finetuned.h5", ValueError, r"finetuned.h5 is not a .keras file: give a model saved"),
        ("gone.keras", FileNotFoundError, "gone.keras does not exist"),
        (
            "small.keras",
            ValueError,
            r"takes \(32, 32\) images, preset 'nan' takes \(150, 150\): give the preset",
        ),
    ],
)
def test_export_with_a_bad_model_file_is_a_clear_error(tmp_path, file, error, message):
    (tmp_path / "finetuned.h5").write_bytes(b"not a keras archive")
    _fine_tuned_nan(tmp_path / "small.keras", size=32)
    args = _parser().parse_args(["export", "nan", str(tmp_path), "--model", str(tmp_path / file)])
    with pytest.raises(error, match=message):
        args.run(args)
    assert not (tmp_path / "nan").exists()


def test_with_model_the_positional_argument_must_be_a_preset(tmp_path):
    args = _parser().parse_args(["export", "a.keras", str(tmp_path), "--model", "b.keras"])
    with pytest.raises(ValueError, match="with --model, MODEL names the zoo preset"):
        args.run(args)


def test_a_missing_keras_file_is_a_file_not_found_error(tmp_path):
    args = _parser().parse_args(["export", str(tmp_path / "gone.keras"), str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="gone.keras does not exist"):
        args.run(args)


def test_registering_the_command_does_not_import_tensorflow():
    code = (
        "import argparse, sys\n"
        "from keras_faceset.export.cli import add_export_command\n"
        "add_export_command(argparse.ArgumentParser().add_subparsers())\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # `keras-faceset list` stays fast

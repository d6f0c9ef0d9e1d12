"""`add_export_command`: the `export` sub-command the main CLI registers."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.export import add_export_command
from tests.export.helpers import SIZE, reference_embed, tiny_backbone


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

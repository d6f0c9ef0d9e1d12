"""Running the CLI as users run it (a subprocess) or in this process (no TensorFlow import per
command), and small real inputs made from the three example photos, so the default suite needs
no ../shared."""

import contextlib
import io
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

EXAMPLES = REPO / "examples" / "images"
SERENA_1, SERENA_2 = EXAMPLES / "Serena_Williams_0001.jpg", EXAMPLES / "Serena_Williams_0002.jpg"
POWELL = EXAMPLES / "Colin_Powell_0001.jpg"
TF_LOG_LINES = ("cuInit", "oneDNN", "I0000", "W0000", "E0000", "absl::InitializeLog")


def run(*args, check=True, cwd=None):
    """`python -m keras_faceset.cli ARGS` on this checkout (also from another `cwd`)."""
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-m", "keras_faceset.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
    )
    if check and result.returncode != 0:
        pytest.fail(f"keras-faceset {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def run_in_process(*args, check=True, cwd=None) -> subprocess.CompletedProcess:
    """`keras_faceset.cli.main(ARGS)` with stdout and stderr captured, answering as `run` does
    (exit code, stdout, stderr), for tests not about the process boundary; what the command
    changes process-wide (TensorFlow's log level variable, progress bars) is restored."""
    from keras_faceset import progress
    from keras_faceset.cli import main

    argv = [str(arg) for arg in args]
    out, err = io.StringIO(), io.StringIO()
    level, enabled, here = os.environ.get("TF_CPP_MIN_LOG_LEVEL"), progress._enabled, os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse's errors and --version
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        os.chdir(here)
        progress.set_enabled(enabled)
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    result = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if check and code != 0:
        pytest.fail(f"keras-faceset {args} failed ({code}):\n{result.stderr}")
    return result


def no_log_lines(result) -> None:
    """Neither TensorFlow's C++ log lines nor a progress bar (stderr is a pipe) on stderr."""
    lines = [line for line in result.stderr.splitlines() if any(s in line for s in TF_LOG_LINES)]
    assert not lines, lines
    assert "\r" not in result.stderr


def photo(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def variants(path) -> list[np.ndarray]:
    """Three photos of one face: as taken, mirrored, and 25 % brighter."""
    image = photo(path)
    brighter = np.clip(image.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    return [image, image[:, ::-1], brighter]


def save(path, image: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def grey(path, level: int = 128):
    """A plain grey 250x250 image: no face in it."""
    return save(path, np.full((250, 250, 3), level, np.uint8))


def write_video(path, images) -> None:
    """An MJPG .avi of `images` (paths or RGB arrays of 250x250)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (250, 250))
    for image in images:
        rgb = photo(image) if not isinstance(image, np.ndarray) else image
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()


def labelled_folder(root):
    """root/<identity>/<image>: Serena_Williams 6 images (two photos x `variants`),
    Colin_Powell 3: 36 pairs, 18 genuine and 18 impostor."""
    for name, photos in (("Serena_Williams", (SERENA_1, SERENA_2)), ("Colin_Powell", (POWELL,))):
        for source in photos:
            for i, image in enumerate(variants(source)):
                save(root / name / f"{source.stem}_{i}.png", image)
    return root

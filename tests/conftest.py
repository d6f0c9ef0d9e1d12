"""Shared fixtures: where ../shared is, and seeded randomness."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KERAS_FACESET_SHARED", REPO.parent / "shared"))
LFW_DIR = SHARED / "data" / "lfw"
DLIB_DAT = SHARED / "weights" / "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="session", autouse=True)
def _own_weight_folders(tmp_path_factory):
    """Weights converted or downloaded by tests go to temporary folders, never to the user's
    `~/.keras/keras_faceset` or `~/.cache/keras_faceset_sources` (CLI subprocesses inherit
    them); a test may point either variable elsewhere (monkeypatch)."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("KERAS_FACESET_HOME", "KERAS_FACESET_SOURCES"):
            patch.setenv(variable, str(tmp_path_factory.mktemp(variable.lower())))
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def _tensorflow_seed():
    """TensorFlow's global seed, set once: `tf.random.set_seed` clears TensorFlow's kernel
    caches, so setting it before every test would make every traced function (the detector's
    cascade above all) be instantiated and optimised again in each test, seconds each."""
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def _seed_keras(_tensorflow_seed):
    """What `keras.utils.set_random_seed(0)` does, before every test, but TensorFlow's seed
    (`_tensorflow_seed`): Python's and NumPy's generators and Keras's global seed generator
    (the one behind initializers and `keras.random` without a seed) start again from 0."""
    import random

    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, 0)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(0)
    np.random.seed(0)


def require(path: Path) -> Path:
    """Fail (not skip) when a file the slow suite needs is missing: CI has ../shared."""
    if not path.exists():
        pytest.fail(f"{path} is missing; set KERAS_FACESET_SHARED to the shared folder")
    return path


@pytest.fixture(scope="session")
def facenet_h5() -> Path:
    """The original facenet_keras.h5: $FACENET_H5, else ../shared/bin/fetch-facenet-h5."""
    if "FACENET_H5" in os.environ:
        return require(Path(os.environ["FACENET_H5"]))
    script = require(SHARED / "bin" / "fetch-facenet-h5")
    result = subprocess.run([str(script)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{script} failed: {result.stderr}")
    return require(Path(result.stdout.strip().splitlines()[-1]))

"""`keras-faceset train` on tiny synthetic folders of people: an image preset (`tiny`, a small
conv backbone on 32x32 chips) fine-tuned end to end and a set preset (`tiny_nan`, a NAN head
on it) trained on frozen frame embeddings; checkpoints, resume, and the model it writes read
by `verify --model` and `export --model`."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.cli import main, parse_args
from keras_faceset.cli.train import checkpoint_path
from keras_faceset.embedder import FaceEmbedder, load_task_file
from keras_faceset.models import SetEmbeddingModel
from keras_faceset.strategies import STRATEGIES
from keras_faceset.zoo import PRESETS
from keras_faceset.zoo.presets import Head
from tests.cli.helpers import save
from tests.conftest import REPO
from tests.export.helpers import tiny_backbone
from tests.zoo.test_registry import tiny  # noqa: F401

SIZE, DIM, PEOPLE = 32, 16, 4
CROP = {"method": "five_point", "size": SIZE, "padding": 0.25}
FAST = ["--align", "center", "--people", "3", "--per-person", "3", "--steps", "3", "-q"]


def tiny_image_backbone() -> keras.Model:
    return tiny_backbone(SIZE, DIM)


def convert(path) -> keras.Model:
    """The `tiny` preset's "conversion": the seeded backbone (its source file is checked by
    sha256 before this runs)."""
    return tiny_image_backbone()


def tiny_presets(base) -> dict:
    """`tiny` (`base`, the zoo tests' preset with its source file) as an image preset on 32x32
    chips, and `tiny_nan`, a NAN head on its backbone."""
    image = dataclasses.replace(
        base,
        input_size=SIZE,
        embedding_dim=DIM,
        crop=CROP,
        thresholds={},
        builder="tests.cli.test_cli_train:tiny_image_backbone",
        converter="tests.cli.test_cli_train:convert",
        head=None,  # the preset's own MeanHead
    )
    head = Head(
        "keras_faceset.models.nan:NANHead", {"dim": DIM, "num_blocks": 1}, "tiny_nan", "tiny"
    )
    sets = dataclasses.replace(
        PRESETS["nan1"], name="tiny_nan", head=head, thresholds={}, input_size=SIZE, crop=CROP
    )
    return {"tiny": image, "tiny_nan": sets}


@pytest.fixture
def presets(tiny, monkeypatch):  # noqa: F811
    for name, preset in tiny_presets(PRESETS["tiny"]).items():
        monkeypatch.setitem(PRESETS, name, preset)


def person_images(rng, count: int) -> list[np.ndarray]:
    """Each person a 4x4 colour pattern (blown up to 48x48) plus per-image noise."""
    images = []
    for pattern in rng.integers(0, 256, (PEOPLE, 4, 4, 3)):
        base = np.kron(pattern, np.ones((12, 12, 1)))
        for _ in range(count):
            noisy = base + rng.normal(0, 40, base.shape)
            images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return images


@pytest.fixture
def image_data(tmp_path):
    images = person_images(np.random.default_rng(1), 6)
    for i, image in enumerate(images):
        save(tmp_path / "people" / f"person{i // 6}" / f"{i % 6}.png", image)
    return tmp_path / "people"


def losses(output: str) -> list[float]:
    return [float(line.split()[-1]) for line in output.splitlines() if line.startswith("epoch")]


def weights_of(path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


def assert_same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) >= 1
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def write_sets(root, rng) -> None:
    """root/<person>/<set>/<frame>: 4 people x 3 sets x 3 frames."""
    for i, image in enumerate(person_images(rng, 9)):
        person, rest = divmod(i, 9)
        save(root / f"person{person}" / f"set{rest // 3}" / f"{rest % 3}.png", image)


def test_image_preset_loss_decreases_and_resume_continues(presets, image_data, tmp_path, capsys):
    whole, half = tmp_path / "whole.keras", tmp_path / "half.keras"
    options = [*FAST, "--learning-rate", "1e-2"]
    assert main(["train", "tiny", str(image_data), str(whole), "--epochs", "3", *options]) == 0
    trained = losses(capsys.readouterr().out)
    assert len(trained) == 3 and trained[-1] < 0.7 * trained[0]
    assert main(["train", "tiny", str(image_data), str(half), "--epochs", "2", *options]) == 0
    assert losses(capsys.readouterr().out) == pytest.approx(trained[:2], abs=1e-6)
    checkpoints = tmp_path / "half.keras.checkpoints"
    command = ["train", "tiny", str(image_data), str(half), "--epochs", "3", *options]
    assert main([*command, "--resume"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("epoch 3/3") and losses(output) == pytest.approx(trained[2:], 1e-5)
    # the resumed run ends where the uninterrupted one does, and saved every epoch
    assert_same_weights(weights_of(half), weights_of(whole))
    assert_same_weights(weights_of(checkpoint_path(checkpoints, 3)), weights_of(whole))
    first = weights_of(checkpoint_path(checkpoints, 1))
    assert max(np.abs(a - b).max() for a, b in zip(first, weights_of(whole), strict=True)) > 1e-3
    assert not list(checkpoints.glob(".*part*"))  # written atomically, nothing left over

    # verify --model embeds with the trained backbone
    photos = [str(sorted((image_data / f"person{i}").iterdir())[0]) for i in (0, 1)]
    argv = ["verify", "tiny", "--model", str(whole), *photos, "--align", "center", "--json"]
    main([*argv, "--threshold", "0.5"])
    distance = json.loads(capsys.readouterr().out)["distance"]
    chips = FaceEmbedder("tiny", align="center").chips(photos).astype("float32")
    a, b = keras.saving.load_model(whole)(chips).numpy()
    expected = 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert distance == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_export_serves_the_trained_model(presets, image_data, tmp_path):
    """`export --model` of what `train` wrote (slow: the export builds the photo signatures)."""
    out = tmp_path / "model.keras"
    assert main(["train", "tiny", str(image_data), str(out), "--epochs", "1", *FAST]) == 0
    assert main(["export", "tiny", str(tmp_path / "served"), "--model", str(out)]) == 0
    served = tf.saved_model.load(str(tmp_path / "served" / "tiny" / "1"))
    chips = np.stack(person_images(np.random.default_rng(2), 1))[:, 8:40, 8:40]
    embedding = served.signatures["embed_images"](images=chips)["embedding"].numpy()
    expected = keras.saving.load_model(out)(chips.astype("float32")).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedding, expected, rtol=0, atol=1e-5)


def test_set_preset_trains_its_head_and_writes_a_task(presets, tmp_path, capsys):
    write_sets(tmp_path / "sets", np.random.default_rng(3))
    out = tmp_path / "nan.keras"
    argv = ["train", "tiny_nan", str(tmp_path / "sets"), str(out), "--epochs", "3", *FAST]
    assert main([*argv, "--learning-rate", "3e-2", "--loss", "contrastive"]) == 0
    trained = losses(capsys.readouterr().out)
    assert trained[-1] < trained[0]
    task = load_task_file(out, PRESETS["tiny_nan"])
    assert isinstance(task, SetEmbeddingModel)
    head = keras.saving.load_model(checkpoint_path(tmp_path / "nan.keras.checkpoints", 3))
    assert_same_weights([np.asarray(w) for w in task.head.get_weights()], head.get_weights())


def test_bad_runs_say_what_to_do(presets, image_data, tmp_path):
    def run(*argv):
        args = parse_args(["train", "tiny", str(image_data), *argv, *FAST])
        return args.run(args)

    with pytest.raises(ValueError, match="OUT must be a .keras file"):
        run(str(tmp_path / "model.h5"))
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint epoch-NNNN.keras"):
        run(str(tmp_path / "model.keras"), "--resume")
    checkpoint_path(tmp_path / "model.keras.checkpoints", 1).parent.mkdir()
    checkpoint_path(tmp_path / "model.keras.checkpoints", 1).write_bytes(b"")
    with pytest.raises(ValueError, match="checkpoints of an earlier run: pass --resume"):
        run(str(tmp_path / "model.keras"))


def test_strategy_choices_are_the_distribute_strategies():
    assert STRATEGIES == ("default", "mirrored", "multi_worker")
    args = parse_args(["train", "x", "d", "o.keras", "--strategy", "mirrored"])
    assert (args.strategy, args.cpu_replicas) == ("mirrored", 2)


@pytest.mark.slow
def test_mirrored_training_matches_one_device(tmp_path):
    """`--strategy mirrored` over 2 logical CPU devices trains the set head as one device does
    (fresh interpreters: the CPU is split before TensorFlow starts), and refuses a P x K that
    does not split evenly."""
    write_sets(tmp_path / "sets", np.random.default_rng(3))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def train(out: str, *options: str):
        command = [sys.executable, __file__, str(tmp_path), str(tmp_path / out), *options]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    runs = {}
    for strategy in ("default", "mirrored"):
        result = train(f"{strategy}.keras", "--strategy", strategy)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[strategy] = (losses(result.stdout), weights_of(tmp_path / f"{strategy}.keras"))
    assert runs["mirrored"][0] == pytest.approx(runs["default"][0], abs=1e-5)
    assert_same_weights(runs["mirrored"][1], runs["default"][1])
    result = train("odd.keras", "--strategy", "mirrored", "--people", "3", "--per-person", "3")
    assert result.returncode == 1 and "do not split evenly over 2 replicas" in result.stderr


def _train_in_this_process(root: str, out: str, *options: str) -> int:
    """`train tiny_nan ROOT/sets OUT` with the tiny presets registered (a fresh interpreter)."""
    import hashlib

    from keras_faceset import zoo
    from tests.zoo.test_registry import SOURCE_BYTES

    sources = Path(root) / "sources"
    sources.mkdir(exist_ok=True)
    (sources / "tiny.bin").write_bytes(SOURCE_BYTES)
    os.environ.update(KERAS_FACESET_SOURCES=str(sources), KERAS_FACESET_HOME=f"{root}/home")
    source = zoo.Source(
        filename="tiny.bin",
        sha256=hashlib.sha256(SOURCE_BYTES).hexdigest(),
        size=len(SOURCE_BYTES),
        url="http://127.0.0.1:9/tiny.bin",
    )
    base = dataclasses.replace(PRESETS["dlib_resnet"], name="tiny", source=source)
    PRESETS.update(tiny_presets(base))
    argv = ["train", "tiny_nan", f"{root}/sets", out, "--epochs", "2", *FAST]
    return main([*argv, "--people", "4", "--per-person", "2", "--learning-rate", "3e-2", *options])


if __name__ == "__main__":
    sys.exit(_train_in_this_process(*sys.argv[1:]))

"""Every preset in `PRESETS`, the same checks: it loads offline (or says what to fetch), its task
has the documented shapes, survives a `.keras` round trip and exports for TF Serving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_faceset import zoo
from keras_faceset.export import ExportSpec, export_saved_model
from keras_faceset.models import MeanHead, SetEmbeddingModel

NAMES = sorted(zoo.PRESETS)
OFFLINE = [
    n for n in NAMES if zoo.get_preset(zoo.get_preset(n).backbone_preset).source.python_package
]
"""Presets whose weights come with an installed package (no download)."""


def _image_sets(preset, rng, sets=2, frames=3) -> dict[str, np.ndarray]:
    size = preset.input_size
    images = rng.integers(0, 256, (sets, frames, size, size, 3)).astype("float32")  # uint8 values
    return {"images": images, "mask": np.array([[True, True, False], [True, True, True]])}


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(tmp_path / "sources"))


@pytest.mark.parametrize("name", OFFLINE)
def test_loads_offline_into_an_empty_cache(name, empty_cache, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", _no_network)
    task = zoo.load(name, form="task")
    preset = zoo.get_preset(name)
    assert isinstance(task, SetEmbeddingModel) and task.name
    assert task.output["embedding"].shape[-1] == preset.embedding_dim
    # a trained head (seqface: a trained mean) unless the preset has no head weights (mean)
    assert (type(task.head) is MeanHead) != bool(preset.head.weights)


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(OFFLINE)))
def test_offline_without_the_file_names_it_and_where_to_put_it(name, empty_cache, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", _no_network)
    source = zoo.get_preset(name).source
    with pytest.raises(OSError, match=f"{source.filename}.*KERAS_FACESET_SOURCES"):
        zoo.load(name)


def _no_network(*args, **kwargs):
    raise OSError("offline: no route to host")


FAST = "nan"
"""The preset the default suite runs through round trip and export (a set head on the dlib
backbone); every other preset runs the same checks under -m slow (each takes about a minute)."""


@pytest.mark.parametrize(
    "name", [n if n == FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
)
def test_task_shapes_keras_round_trip_and_export(name, rng, tmp_path):
    preset = zoo.get_preset(name)
    task = zoo.load(name, weights=None, form="task")
    x = _image_sets(preset, rng)
    out = task.predict(x, verbose=0)
    assert out["embedding"].shape == (2, preset.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["weights"].sum(axis=1), 1.0, atol=1e-5)
    assert out["weights"][0, 2] == 0.0  # the masked frame

    task.save(tmp_path / "task.keras")
    restored = keras.saving.load_model(tmp_path / "task.keras")
    assert type(restored) is type(task)
    again = restored.predict(x, verbose=0)
    np.testing.assert_allclose(again["embedding"], out["embedding"], atol=1e-5)

    spec = ExportSpec.from_model(task, name=name)
    path = export_saved_model(spec, tmp_path / "models", warmup_requests=False)
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    result = served(images=tf.constant(x["images"].astype("uint8")), mask=tf.constant(x["mask"]))
    np.testing.assert_allclose(result["embedding"].numpy(), out["embedding"], atol=1e-4)

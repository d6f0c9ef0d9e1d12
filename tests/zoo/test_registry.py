import dataclasses
import hashlib
import multiprocessing
import warnings

import keras
import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.zoo import cache, registry
from keras_faceset.zoo.presets import PRESETS
from tests.zoo import tiny_model

KERNEL = np.arange(8, dtype="<f4")
SOURCE_BYTES = KERNEL.tobytes()


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registered `tiny` preset whose source file sits in a sources dir; empty cache."""
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "tiny.bin").write_bytes(SOURCE_BYTES)
    preset = dataclasses.replace(
        PRESETS["dlib_resnet"],
        name="tiny",
        non_commercial=True,
        builder="tests.zoo.tiny_model:build",
        converter="tests.zoo.tiny_model:convert",
        source=zoo.Source(
            filename="tiny.bin",
            sha256=hashlib.sha256(SOURCE_BYTES).hexdigest(),
            size=len(SOURCE_BYTES),
            url="http://127.0.0.1:9/tiny.bin",
        ),
    )
    monkeypatch.setitem(PRESETS, "tiny", preset)
    # a new preset: its licence notice not yet shown in this process (other tests load "tiny")
    monkeypatch.setattr(registry, "_NOTICES_SHOWN", set())
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(sources))
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path / "home"))
    return sources


def _kernel(model):
    return model.get_layer("dense").get_weights()[0].ravel()


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'facenet'"):
        zoo.load("facenett")


def test_list_has_every_preset_with_its_sha256():
    table = zoo.list()
    assert set(table["name"]) >= {"facenet", "dlib_resnet"}
    row = table.set_index("name").loc["dlib_resnet"]
    assert row["sha256"] == PRESETS["dlib_resnet"].source.sha256


def test_list_shows_each_presets_best_measured_figure():
    table = zoo.list().set_index("name")
    assert table.loc["dlib_resnet", "lfw_accuracy"] == pytest.approx(0.9915)  # with --flip
    assert table.loc["qan", "lfw_sets_degraded_tar@far=1e-2"] == pytest.approx(0.965)
    image = table["task"] == "image-embedding"
    assert table.loc[image, "lfw_accuracy"].notna().all()
    assert table.loc[~image, "lfw_sets_degraded_tar@far=1e-2"].notna().all()


def test_load_converts_once_then_uses_the_cache(tiny, tmp_path):
    with pytest.warns(UserWarning, match="tiny weights"):  # its licence notice, shown once
        first = zoo.load("tiny")
    np.testing.assert_array_equal(_kernel(first), KERNEL)
    cached = tmp_path / "home" / "tiny" / "tiny.weights.h5"
    assert cached.is_file()
    assert (cached.parent / "tiny.weights.h5.sha256").read_text().strip() == cache.sha256_file(
        cached
    )
    (tiny / "tiny.bin").unlink()  # the cache alone must now suffice
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the licence notice is not repeated
        np.testing.assert_array_equal(_kernel(zoo.load("tiny")), KERNEL)
    assert not [p for p in cached.parent.iterdir() if ".part" in p.name]


def test_offline_with_nothing_on_disk_names_the_file_and_where_to_put_it(tiny):
    (tiny / "tiny.bin").unlink()
    expected = r"tiny\.bin \(sha256 [0-9a-f]{64}\) was not found\. Put it in"
    with pytest.raises(OSError, match=expected):
        zoo.load("tiny")


def test_wrong_sha256_source_is_rejected_by_name(tiny):
    (tiny / "tiny.bin").write_bytes(SOURCE_BYTES[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match=r"tiny\.bin is not the expected tiny\.bin: sha256"):
        zoo.load("tiny")


def test_corrupt_cache_is_reported_and_converted_again(tiny, tmp_path):
    zoo.load("tiny")
    cached = tmp_path / "home" / "tiny" / "tiny.weights.h5"
    cached.write_bytes(cached.read_bytes()[:100])
    with pytest.warns(UserWarning, match=r"tiny\.weights\.h5 is not the expected tiny weights"):
        model = zoo.load("tiny")
    np.testing.assert_array_equal(_kernel(model), KERNEL)


def test_explicit_paths_source_or_converted(tiny, tmp_path):
    np.testing.assert_array_equal(_kernel(zoo.load("tiny", weights=tiny / "tiny.bin")), KERNEL)
    converted = tmp_path / "mine.weights.h5"
    model = tiny_model.build()
    model.get_layer("dense").set_weights([-KERNEL.reshape(4, 2)])
    model.save_weights(converted)
    np.testing.assert_array_equal(_kernel(zoo.load("tiny", weights=converted)), -KERNEL)
    with pytest.raises(FileNotFoundError, match="nowhere.bin does not exist"):
        zoo.load("tiny", weights=tmp_path / "nowhere.bin")


def test_a_converted_file_of_another_architecture_is_refused_naming_it(tiny, tmp_path):
    other = tmp_path / "other.weights.h5"
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs)).save_weights(other)
    expected = r"cannot load .*other\.weights\.h5 as the weights of tiny \(.*loaded.*\)\. Give"
    with pytest.raises(ValueError, match=expected):
        zoo.load("tiny", weights=other)
    assert not (tmp_path / "home" / "tiny").exists()  # no cache entry


def test_random_init_needs_no_file(tiny):
    (tiny / "tiny.bin").unlink()
    assert isinstance(zoo.load("tiny", weights=None), keras.Model)


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), cache.atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def _load_in_subprocess(queue):
    model = registry.load("tiny")
    queue.put(_kernel(model).tolist())


def test_two_processes_loading_into_an_empty_cache_both_succeed(tiny, tmp_path, monkeypatch):
    """Both get the weights; one converts, the other waits on the cache lock and reads them."""
    conversions, convert = tmp_path / "conversions", tiny_model.convert

    def logged(path):
        with open(conversions, "a") as handle:
            handle.write("converted\n")
        return convert(path)

    monkeypatch.setattr(tiny_model, "convert", logged)  # the forked workers inherit it
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_load_in_subprocess, args=(queue,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    for result in results:
        np.testing.assert_array_equal(result, KERNEL)
    files = sorted(p.name for p in (tmp_path / "home" / "tiny").iterdir())
    assert files == [".lock", "tiny.weights.h5", "tiny.weights.h5.sha256"]
    assert conversions.read_text().splitlines() == ["converted"]

"""Weights and the cache: bad files, offline, concurrent loads, kills, read-only and full disks.

Every case ends in a clear error or a good cache; none leaves a cache entry a later run would
take for good weights. Processes are real (`child.py`), racing on dlib_resnet, whose source
comes with the face_recognition_models package, into a temporary `KERAS_FACESET_HOME`.
"""

import errno
import os

import keras
import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.models.backbones.dlib_resnet import DlibResNet
from keras_faceset.models.convert.dlib_dat import convert_dlib_dat, load_dlib_weights
from keras_faceset.zoo import cache
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS
from tests.reliability.helpers import (
    fill,
    finished,
    hidden_leftovers,
    kill_when,
    remount_read_only,
    start_child,
    tmpfs,
    wait_for,
)
from tests.zoo.test_registry import KERNEL, SOURCE_BYTES, _kernel

DLIB = zoo.get_preset("dlib_resnet")
ENTRY = ["dlib_resnet.weights.h5", "dlib_resnet.weights.h5.sha256"]


def entry_files(home, name="dlib_resnet"):
    folder = home / name
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def dlib_reference():
    """dlib_resnet converted straight from its source file (no cache)."""
    return convert_dlib_dat(cache.find_source(DLIB.source, download=False)).get_weights()


def assert_dlib_weights(model, reference):
    for got, expected in zip(model.get_weights(), reference, strict=True):
        np.testing.assert_array_equal(got, expected)


# --- 7. bad weights files -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_source_is_refused_by_name_and_creates_no_cache_entry(tiny, tmp_path, damage):
    data = SOURCE_BYTES[:-4] if damage == "truncated" else SOURCE_BYTES[:-1] + b"\1"
    (tiny / "tiny.bin").write_bytes(data)
    expected = r"tiny\.bin is not the expected tiny\.bin: sha256.*replace it"
    with pytest.raises(ValueError, match=expected):
        zoo.load("tiny")
    assert entry_files(tmp_path / "home", "tiny") in ([], [".lock"])


@pytest.mark.parametrize(("name", "other"), [("nan", "qan"), ("qan", "nan2")])
def test_weights_of_another_architecture_are_refused_naming_the_file(name, other):
    path = SHIPPED_WEIGHTS / f"{other}_dlib.weights.h5"
    with pytest.raises(ValueError, match=rf"{path.name}.*{name}"):
        zoo.load(name, weights=path, form="head")


@pytest.mark.parametrize("content", ["not hdf5", "truncated"])
def test_a_weights_file_that_is_not_hdf5_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "head.weights.h5"
    shipped = (SHIPPED_WEIGHTS / "nan2_dlib.weights.h5").read_bytes()
    path.write_bytes(b"junk" * 100 if content == "not hdf5" else shipped[: len(shipped) // 2])
    with pytest.raises(ValueError, match=r"head\.weights\.h5"):
        zoo.load("nan", weights=path, form="head")


def test_a_cache_entry_of_another_architecture_is_converted_again(tiny, tmp_path):
    zoo.load("tiny")
    target = tmp_path / "home" / "tiny" / "tiny.weights.h5"
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs)).save_weights(target)
    target.with_name("tiny.weights.h5.sha256").write_text(cache.sha256_file(target) + "\n")
    with pytest.warns(UserWarning, match=r"tiny\.weights\.h5 as the weights of tiny.*again"):
        model = zoo.load("tiny")
    np.testing.assert_array_equal(_kernel(model), KERNEL)
    (tiny / "tiny.bin").unlink()  # the entry written again is good: the cache alone suffices
    np.testing.assert_array_equal(_kernel(zoo.load("tiny")), KERNEL)


def test_dlib_records_are_all_checked_before_any_weight_is_assigned(monkeypatch):
    model = DlibResNet()
    layers = model.dlib_layers()
    wrong = layers[:-1] + [layers[0]]  # the last record (fc) meets a convolution
    monkeypatch.setattr(model, "dlib_layers", lambda: wrong)
    before = model.get_weights()
    expected = r"record at byte \d+ \(fc, \[\(256, 128\)\]\) does not fit layer stem_conv"
    with pytest.raises(ValueError, match=expected):
        load_dlib_weights(model, cache.find_source(DLIB.source, download=False))
    for got, expected in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)


# --- 8. offline -----------------------------------------------------------------------------


def test_offline_with_an_empty_cache_names_the_file_where_to_put_it_and_leaves_nothing(
    tiny, tmp_path
):
    (tiny / "tiny.bin").unlink()  # the preset's URL, 127.0.0.1:9, does not answer
    with pytest.raises(OSError) as error:
        zoo.load("tiny")
    message = str(error.value)
    assert "could not download http://127.0.0.1:9/tiny.bin" in message
    assert f"tiny.bin (sha256 {zoo.get_preset('tiny').source.sha256}) was not found" in message
    assert f"Put it in {tiny} (or set KERAS_FACESET_SOURCES to its folder)" in message
    assert list(tiny.iterdir()) == [] and entry_files(tmp_path / "home", "tiny") == [".lock"]


# --- 9. processes loading into an empty cache at once ---------------------------------------


def race(count, tmp_path, monkeypatch):
    """`count` processes loading dlib_resnet into one empty cache, released together."""
    home, go, log = tmp_path / "home", tmp_path / "go", tmp_path / "conversions"
    monkeypatch.setenv("KERAS_FACESET_HOME", str(home))
    children = []
    for i in range(count):
        out, ready = tmp_path / f"child{i}.log", tmp_path / f"ready{i}"
        children.append((start_child("load", log, ready, go, log=out), out, ready))
    for process, out, ready in children:
        wait_for(ready, process, out)
    go.write_text("go")
    digests = {finished(process, out).split()[-1] for process, out, _ in children}
    return home, digests, log.read_text().splitlines()


# Slow: fresh interpreters converting dlib_resnet. The default suite races forked processes on
# the tiny preset (zoo/test_registry.py::test_two_processes_loading_into_an_empty_cache_...).
@pytest.mark.slow
@pytest.mark.parametrize("count", [2, 8], ids=["2 processes", "8 processes"])
def test_processes_loading_one_preset_at_once_all_succeed_with_one_conversion(
    count, tmp_path, monkeypatch, dlib_reference
):
    home, digests, conversions = race(count, tmp_path, monkeypatch)
    assert len(digests) == 1 and conversions == ["converted"]
    assert entry_files(home) == [".lock", *ENTRY] and hidden_leftovers(home) == []
    assert_dlib_weights(zoo.load("dlib_resnet"), dlib_reference)


# --- 10. killed mid-conversion or mid-write -------------------------------------------------


@pytest.mark.slow
def test_loads_killed_mid_conversion_and_mid_write_leave_no_entry_and_the_next_recovers(
    tmp_path, monkeypatch, dlib_reference
):
    children = {}
    for stage in ("convert", "write"):  # both at once, each into its own empty cache
        home, signal_file, log = (tmp_path / f"{stage}.{what}" for what in ("home", "here", "log"))
        env = {"KERAS_FACESET_HOME": str(home)}
        children[stage] = home, signal_file, log, start_child(stage, signal_file, log=log, env=env)
    for stage, (home, signal_file, log, process) in children.items():
        kill_when(signal_file, process, log)
        assert not set(ENTRY) & set(entry_files(home)), stage  # nothing a reader would take
        if stage == "write":  # killed with its temporary half written
            assert [name.endswith(".part.weights.h5") for name in hidden_leftovers(home)] == [True]
        monkeypatch.setenv("KERAS_FACESET_HOME", str(home))
        assert_dlib_weights(zoo.load("dlib_resnet"), dlib_reference)
        assert entry_files(home) == [".lock", *ENTRY] and hidden_leftovers(home) == [], stage


# --- 11. read-only cache, full disk ---------------------------------------------------------


@pytest.fixture(params=["tmpfs", "chmod"])
def read_only(request, tmp_path):
    """A function making a folder read-only: a tmpfs remounted ro (for root, which chmod does
    not stop), or chmod 555 (for other users)."""
    folder = tmp_path / "cache"
    if request.param == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into a chmod 555 folder; the tmpfs case runs instead")
        folder.mkdir()
        yield folder, lambda: folder.chmod(0o555)
        folder.chmod(0o755)
        return
    with tmpfs(folder, "1m"):
        yield folder, lambda: remount_read_only(folder)


def test_a_read_only_cache_that_holds_the_weights_loads_and_an_empty_one_says_what_to_do(
    tiny, monkeypatch, read_only
):
    folder, make_read_only = read_only
    monkeypatch.setenv("KERAS_FACESET_HOME", str(folder))
    zoo.download("tiny")
    (folder / "empty").mkdir()
    make_read_only()
    np.testing.assert_array_equal(_kernel(zoo.load("tiny")), KERNEL)
    monkeypatch.setenv("KERAS_FACESET_HOME", str(folder / "empty"))
    expected = r"cannot write to .*empty/tiny: the folder is read-only"
    with pytest.raises(OSError, match=expected) as e:
        zoo.load("tiny")
    assert e.value.errno in (errno.EROFS, errno.EACCES)
    assert "set KERAS_FACESET_HOME to another folder" in str(e.value)
    assert "keras_faceset.zoo.download(name)" in str(e.value)
    assert list((folder / "empty").iterdir()) == []


def _disk_full(*args, **kwargs):
    with open(args[-1], "wb") as handle:  # the temporary, half written
        handle.write(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(params=["tmpfs", "simulated"])
def full_disk(request, tmp_path, monkeypatch):
    """A full `KERAS_FACESET_HOME` and a function freeing it: a 64 kB tmpfs filled up, or,
    where none can be mounted, `save_weights` failing as it does there (ENOSPC)."""
    home = tmp_path / "home"
    monkeypatch.setenv("KERAS_FACESET_HOME", str(home))
    if request.param == "simulated":
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(keras.Model, "save_weights", _disk_full)
            yield home, patch.undo
        return
    with tmpfs(home, "64k"):
        fill(home)
        yield home, (home / "filler").unlink


def test_a_full_disk_is_a_clear_error_leaving_nothing_and_a_freed_one_recovers(tiny, full_disk):
    home, free = full_disk
    with pytest.raises(OSError, match=r"cannot write to .*home/tiny: the disk is full") as error:
        zoo.load("tiny")
    assert error.value.errno == errno.ENOSPC
    assert "Free space there" in str(error.value)
    assert entry_files(home, "tiny") == [".lock"] and hidden_leftovers(home) == []
    free()
    np.testing.assert_array_equal(_kernel(zoo.load("tiny")), KERNEL)
    assert entry_files(home, "tiny") == [".lock", "tiny.weights.h5", "tiny.weights.h5.sha256"]


def test_a_package_file_is_found_without_importing_the_package(tmp_path, monkeypatch):
    """`cache.package_file` reads an installed package's folder without running its
    ``__init__`` (face_recognition_models' imports pkg_resources, gone from setuptools >= 81):
    here an ``__init__`` that fails on import."""
    import sys

    package = tmp_path / "fails_on_import"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg_resources_gone import nothing\n")
    (package / "models" / "weights.dat").write_bytes(b"1234")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = cache.package_file("fails_on_import", "models/weights.dat")
    assert found == package / "models" / "weights.dat" and found.read_bytes() == b"1234"
    assert "fails_on_import" not in sys.modules
    assert cache.package_file("fails_on_import", "models/other.dat") is None
    assert cache.package_file("no_such_package_here", "models/weights.dat") is None

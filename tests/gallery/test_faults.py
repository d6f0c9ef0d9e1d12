"""Gallery faults: damaged files named (and repaired), a writer killed mid-write, two writers."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from keras_faceset.gallery import Gallery, GalleryFileError, IndexFileError, store
from tests.conftest import REPO
from tests.gallery.conftest import synthetic_people


@pytest.fixture
def gallery(enrolled):
    return enrolled(count=12)


def answers(gallery, people):
    queries = np.concatenate([media[1][:1] for media in people.values()])
    return [(a.person, a.score) for a in gallery.search_vectors(queries)]


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_index_is_named_and_repair_rebuilds_it(gallery, how):
    gallery, people = gallery
    before = answers(gallery, people)
    index = gallery.path / gallery.version / "index.npz"
    damage(index, how)
    with pytest.raises(IndexFileError, match=f"{index} is truncated or corrupt.*Gallery.repair"):
        Gallery.open(gallery.path)
    repaired = Gallery.repair(gallery.path)
    assert repaired.version != gallery.version and "repaired" in repaired.metadata
    assert answers(Gallery.open(gallery.path), people) == before


@pytest.mark.parametrize("table", ["people", "media", "embeddings"])
def test_a_damaged_table_is_named_and_an_intact_version_offered(gallery, table):
    gallery, people = gallery
    first, before = gallery.version, answers(gallery, people)
    gallery.add_frames({"late": [people["person000"][0]]})
    path = gallery.path / gallery.version / f"{table}.parquet"
    damage(path, "flip")
    if table != "embeddings":  # searching never reads the per-face table
        with pytest.raises(GalleryFileError, match=f"gallery table {path} is truncated or corrupt"):
            Gallery.open(gallery.path)
    with pytest.raises(
        GalleryFileError, match=f"{path}.*intact versions kept: .*{first}; .*version='{first}'"
    ):
        Gallery.repair(gallery.path)
    rolled = Gallery.repair(gallery.path, version=first)
    assert len(rolled) == 12 and "late" not in rolled.list()["person"].tolist()
    assert answers(Gallery.open(gallery.path), people) == before


CHILD = """
import os, sys, time
from keras_faceset.gallery import Gallery, store
from tests.gallery.conftest import synthetic_people

path, name, mode, signal_file = sys.argv[1:5]
write_table = store.write_table

def slow_write(target, table):
    write_table(target, table)
    open(signal_file, "a").close()
    time.sleep(3600 if mode == "hang" else 0.5)

store.write_table = slow_write
gallery = Gallery.open(path)
open(signal_file + ".open", "a").close()
while mode == "race" and not os.path.exists(signal_file + ".go"):
    time.sleep(0.01)
people = synthetic_people(1, seed=len(name))
gallery.add_frames({name: people["person000"]})
"""


def child(path, name, mode, signal_file):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = textwrap.dedent(CHILD)
    args = [sys.executable, "-c", script, str(path), name, mode, str(signal_file)]
    return subprocess.Popen(args, env=env, cwd=REPO, stderr=subprocess.PIPE)


def wait_for(path, process, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"writer exited {process.returncode}: {process.stderr.read().decode()}")
        if time.time() > deadline:
            pytest.fail(f"{path} did not appear")
        time.sleep(0.05)


def test_a_writer_killed_mid_write_leaves_the_previous_gallery_intact(gallery, tmp_path):
    gallery, people = gallery
    before, version = answers(gallery, people), gallery.version
    signal_file = tmp_path / "wrote-a-table"
    writer = child(gallery.path, "killed", "hang", signal_file)
    wait_for(signal_file, writer)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert list(gallery.path.glob(".v*.part"))  # the half-written version is still there
    reopened = Gallery.open(gallery.path)
    assert reopened.version == version and "killed" not in reopened.list()["person"].tolist()
    assert answers(reopened, people) == before
    reopened.add_frames({"after": synthetic_people(1, seed=5)["person000"]})
    assert not list(gallery.path.glob(".v*.part")) and len(reopened) == 13


@pytest.mark.slow
def test_two_writers_at_once_are_serialised_and_both_adds_kept(gallery, tmp_path):
    gallery, _ = gallery
    signals = [tmp_path / "a", tmp_path / "b"]
    writers = [child(gallery.path, f"writer {s.name}", "race", s) for s in signals]
    for s, writer in zip(signals, writers, strict=True):
        wait_for(tmp_path / f"{s.name}.open", writer)  # both read the same version
    for s in signals:
        (tmp_path / f"{s.name}.go").touch()
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read().decode()
    final = Gallery.open(gallery.path)
    assert {"writer a", "writer b"} <= set(final.list()["person"]) and len(final) == 14
    assert len(final.index) == 14 and int(final.version[1:]) == int(gallery.version[1:]) + 2


def test_readers_keep_their_version_while_writers_prune_it(gallery, monkeypatch):
    gallery, people = gallery
    reader, before = Gallery.open(gallery.path), answers(gallery, people)
    for i in range(store.KEEP_VERSIONS):
        gallery.add_frames({f"new {i}": synthetic_people(1, seed=i)["person000"]})
    assert not (gallery.path / reader.version).exists()  # pruned: the reader holds it in memory
    assert answers(reader, people) == before
    reader.refresh()
    assert reader.version == gallery.version and len(reader) == 12 + store.KEEP_VERSIONS
    calls = []
    read = store.GalleryStore._read

    def pruned_once(self, name):  # the version read is deleted under the reader, once
        calls.append(name)
        if len(calls) == 1:
            raise FileNotFoundError(name)
        return read(self, name)

    monkeypatch.setattr(store.GalleryStore, "_read", pruned_once)
    assert Gallery.open(gallery.path).version == gallery.version and len(calls) == 2

"""A gallery folder on disk: immutable versions, a pointer file, a writer lock.

::

    GALLERY/
      CURRENT                 the live version's name, e.g. "v000007" (replaced atomically)
      writer.lock             flock'ed by a writer for the whole of its read-modify-write
      v000007/
        metadata.json         model, templates, index kind, calibration, id counters
        people.parquet        one row per person (its template in person mode)
        media.parquet         one row per enrolled photo or video (its set embedding)
        embeddings.parquet    one row per usable face (frame outputs, box, detector score)
        index.npz             the search index over the templates
      v000006/ ...            the previous versions (`KEEP_VERSIONS` in all), then deleted

A write builds the whole new version in a hidden ``.v000008.<pid>-<hex>.part/`` folder, renames
it to ``v000008/`` and then replaces ``CURRENT`` (`keras_faceset.files.atomic_path`): a reader
sees the old version or the new one, never a mix, and a writer killed at any point leaves the
previous version as it was (the next writer deletes the leftover ``.part`` folder). Readers
take no lock; one that finds its version pruned under it starts again from ``CURRENT``.
Parquet pages carry CRC checksums (verified on reading) and the index is a CRC-checked
``.npz``, so a damaged file is named by `GalleryFileError`, not read as good data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.files import atomic_path, file_lock
from keras_faceset.gallery.index import VectorIndex

POINTER = "CURRENT"
LOCK = "writer.lock"
METADATA = "metadata.json"
INDEX = "index.npz"
TABLES = ("people", "media", "embeddings")
KEEP_VERSIONS = 3
FORMAT = 1
READ_ATTEMPTS = 3


class GalleryFileError(ValueError):
    """A gallery file that cannot be read (missing, truncated or corrupt): names the file."""


@dataclass
class Table:
    """Scalar columns as a DataFrame and vector columns as float32 arrays (rows aligned)."""

    frame: pd.DataFrame
    vectors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, rows) -> Table:
        """The rows `rows` (a boolean mask or positions), renumbered from 0."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return Table(
            self.frame.iloc[rows].reset_index(drop=True),
            {key: value[rows] for key, value in self.vectors.items()},
        )

    @staticmethod
    def concat(tables: list[Table]) -> Table:
        """The rows of `tables` in order (empty ones add nothing, not even their columns)."""
        tables = [t for t in tables if len(t)] or tables[:1]
        keys = tables[0].vectors.keys()
        return Table(
            pd.concat([t.frame for t in tables], ignore_index=True),
            {key: np.concatenate([t.vectors[key] for t in tables]) for key in keys},
        )


def write_table(path: Path, table: Table) -> None:
    """`table` as Parquet: vectors as fixed-size lists of float32, page checksums on."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table.frame, preserve_index=False)
    for key, value in table.vectors.items():
        value = np.ascontiguousarray(value, np.float32)
        flat = pa.array(value.reshape(-1), pa.float32())
        arrow = arrow.append_column(key, pa.FixedSizeListArray.from_arrays(flat, value.shape[1]))
    pq.write_table(arrow, path, write_page_checksum=True)


def read_table(path: Path) -> Table:
    """A table `write_table` wrote; `GalleryFileError` naming `path` when it is damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        arrow = pq.read_table(path, page_checksum_verification=True)
        vectors = {}
        for field in arrow.schema:
            if pa.types.is_fixed_size_list(field.type):
                column = arrow.column(field.name).combine_chunks()
                values = column.flatten().to_numpy(zero_copy_only=False)
                vectors[field.name] = values.reshape(len(column), field.type.list_size)
        frame = arrow.drop_columns(list(vectors)).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise GalleryFileError(
            f"gallery table {path} is truncated or corrupt ({err}). The gallery's earlier "
            "versions may be intact: Gallery.repair(path) lists them"
        ) from err
    return Table(frame, {key: np.asarray(value, np.float32) for key, value in vectors.items()})


@dataclass
class Version:
    """One version of a gallery: its metadata, people and media tables and index (the per-face
    embeddings table is read on demand, by writers: ``GalleryStore.table(name, "embeddings")``)."""

    name: str
    metadata: dict
    people: Table
    media: Table
    index: VectorIndex


class GalleryStore:
    """The versioned folder of one gallery (layout in the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def exists(self) -> bool:
        return (self.root / POINTER).is_file()

    def current(self) -> str:
        """The live version's folder name."""
        pointer = self.root / POINTER
        if not pointer.is_file():
            raise FileNotFoundError(
                f"{self.root} is not a gallery (no {POINTER} file): create one with "
                "Gallery.create(path, model)"
            )
        return pointer.read_text().strip()

    def versions(self) -> list[str]:
        """The version folders on disk, oldest first."""
        return sorted(p.name for p in self.root.glob("v[0-9]*") if p.is_dir())

    def read(self, name: str | None = None) -> Version:
        """Version `name` (default: the live one), read whole."""
        for attempt in range(READ_ATTEMPTS):
            version = name or self.current()
            try:
                return self._read(version)
            except FileNotFoundError:
                if name is not None or attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _read(self, name: str) -> Version:
        people, media = self.table(name, "people"), self.table(name, "media")
        return Version(name, self.metadata(name), people, media, self.index(name))

    def metadata(self, name: str) -> dict:
        path = self.root / name / METADATA
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise GalleryFileError(f"gallery metadata {path} is corrupt ({err})") from err

    def table(self, name: str, key: str) -> Table:
        """Table `key` ("people", "media" or "embeddings") of version `name`."""
        return read_table(self.root / name / f"{key}.parquet")

    def index(self, name: str) -> VectorIndex:
        return VectorIndex.load(self.root / name / INDEX)

    def intact(self, name: str) -> bool:
        """Whether version `name`'s metadata and tables read back (its index is not checked:
        `Gallery.repair` rebuilds it)."""
        try:
            self.metadata(name)
            for key in TABLES:
                self.table(name, key)
        except (GalleryFileError, FileNotFoundError):
            return False
        return True

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the writer lock (blocks until other writers are done)."""
        with file_lock(self.root / LOCK):
            yield

    def commit(
        self,
        metadata: dict,
        tables: dict[str, Table | None],
        index: VectorIndex | None,
        base: str | None,
    ) -> str:
        """Write a new version and make it live; call it holding `writer`. A table or index
        given as None is hard-linked from version `base` unchanged. Returns the version name."""
        number = max([int(v[1:]) for v in self.versions()] or [0]) + 1
        name = f"v{number:06d}"
        part = self.root / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"
        part.mkdir(parents=True)
        try:
            for key in TABLES:
                target = part / f"{key}.parquet"
                if tables.get(key) is None:
                    _link(self.root / base / target.name, target)
                else:
                    write_table(target, tables[key])
            if index is None:
                _link(self.root / base / INDEX, part / INDEX)
            else:
                index.save(part / INDEX)
            (part / METADATA).write_text(json.dumps({**metadata, "format": FORMAT}, indent=1))
            part.rename(self.root / name)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
        with atomic_path(self.root / POINTER) as tmp:
            tmp.write_text(name + "\n")
        self._prune(name)
        return name

    def _prune(self, live: str) -> None:
        """Delete versions older than the newest `KEEP_VERSIONS` and dead writers' leftovers."""
        for stale in self.root.glob(".v*.part"):
            shutil.rmtree(stale, ignore_errors=True)
        for old in self.versions()[:-KEEP_VERSIONS]:
            if old != live:
                shutil.rmtree(self.root / old, ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    """A file of the previous version, unchanged: a hard link (a copy where links fail)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)

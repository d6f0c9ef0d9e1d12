"""On-disk cache of aligned chips, keyed by the image file's sha256 and the alignment settings."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from keras_faceset.files import atomic_path

RECORD_FIELDS = ("chip", "box", "landmarks", "confidence", "fallback", "face_count")


def settings_key(settings: dict) -> str:
    """A short stable hash of JSON-serialisable alignment settings."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ChipCache:
    """One ``.npz`` per aligned image: ``<directory>/<settings key>/<content sha256>.npz``.

    The content hash is that of the file's bytes (or of an array's dtype, shape and bytes), so a
    file edited in place, even by one byte, is a miss; the settings key covers the method, its
    parameters and the detector's settings. Writes are atomic (temporary file + rename), so
    concurrent writers and interrupted runs never leave a partial entry; an unreadable entry is
    treated as a miss and rewritten. Each settings folder holds a ``settings.json``.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, content_hash: str, key: str) -> Path:
        return self.directory / key / f"{content_hash}.npz"

    def load(self, content_hash: str, key: str) -> dict[str, np.ndarray] | None:
        """The stored record, or None on a miss."""
        path = self.path(content_hash, key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {name: data[name] for name in RECORD_FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def save(self, content_hash: str, key: str, record: dict[str, np.ndarray], settings: dict):
        """Store `record` (the `RECORD_FIELDS` arrays) atomically."""
        folder = self.directory / key
        if not (folder / "settings.json").is_file():
            with atomic_path(folder / "settings.json") as tmp:
                tmp.write_text(json.dumps(settings, sort_keys=True, indent=1))
        with atomic_path(self.path(content_hash, key)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **{name: record[name] for name in RECORD_FIELDS})

    def __repr__(self) -> str:
        return f"ChipCache({str(self.directory)!r})"

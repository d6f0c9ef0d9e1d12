"""Files on disk written safely: sha256 digests, atomic writes, an inter-process lock.

Everything that writes a cache or an artefact goes through `atomic_path`, so a crash never
leaves a half-written file where a reader would take it for a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

READ_ERRORS = (ValueError, OSError)
"""What reading an input raises: missing, unreadable, undecodable or truncated files, empty
folders, bad arrays. Batch jobs catch these per item, report it and go on."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Raise ValueError naming `path` when its content does not hash to `expected`."""
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"{path} is not the expected {what}: sha256 {actual}, expected {expected}. "
            "The file is corrupt, truncated or a different version; replace it."
        )


@contextlib.contextmanager
def atomic_path(dest: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds.

    `suffix` ends the temporary name, for writers that insist on one (Keras: `.weights.h5`).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part{suffix}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def remove_parts(folder: Path) -> list[Path]:
    """Delete the temporaries that `atomic_path` writers killed mid-write (SIGKILL, power loss)
    left in `folder`, and return them. Call it only while holding the lock that every writer
    of `folder` takes: a live writer's temporary would go too."""
    leftovers = sorted(p for p in folder.glob(".*.part*") if p.is_file())
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX `flock`); a no-op where unavailable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: conversions may race, but writes stay atomic
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

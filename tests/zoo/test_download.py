"""Downloads of original weights files land only in the sources folder; archives are removed.

No network: the "published" files are local `file://` URLs.
"""

import dataclasses
import hashlib
import io
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from keras_faceset import zoo
from keras_faceset.zoo import cache

PAYLOAD = bytes(range(256)) * 4
MEMBER = "pkg-1.0/model/tiny.bin"


@pytest.fixture
def empty_tmpdir(tmp_path, monkeypatch) -> Path:
    """TMPDIR pointed at an empty folder (and `tempfile` made to read it again)."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return folder


def published(tmp_path: Path, payload: bytes = PAYLOAD, member: str | None = MEMBER) -> zoo.Source:
    """A source expecting PAYLOAD, published at a file:// URL holding `payload`: as `member` of
    a .tar.gz archive, or the bare file when `member` is None. The published name is unique to
    the test, so a copy in Keras's shared fallback folder would be this test's."""
    folder = tmp_path / "published"
    folder.mkdir()
    if member is None:
        path = folder / f"{tmp_path.name}.bin"
        path.write_bytes(payload)
    else:
        path = folder / f"{tmp_path.name}.tar.gz"
        entry = tarfile.TarInfo(member)
        entry.size = len(payload)
        with tarfile.open(path, "w:gz") as tar:
            tar.addfile(entry, io.BytesIO(payload))
    return zoo.Source(
        filename="tiny.bin",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        size=len(PAYLOAD),
        url=path.as_uri(),
        member=member,
        archive_sha256=cache.sha256_file(path) if member else None,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def in_keras_fallback(source: zoo.Source) -> bool:
    """Whether a download of `source` sits in a folder Keras falls back to."""
    name = source.url.rsplit("/", 1)[-1]
    folders = {Path("/tmp"), Path(tempfile.gettempdir())}
    return any((folder / ".keras" / "downloads" / name).exists() for folder in folders)


def test_download_lands_only_in_a_new_sources_folder_and_the_archive_is_removed(
    tmp_path, monkeypatch, empty_tmpdir
):
    source = published(tmp_path)
    sources = tmp_path / "not" / "yet" / "sources"
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(sources))
    got = cache.find_source(source)
    assert got == sources / "tiny.bin" and got.read_bytes() == PAYLOAD
    assert files_under(sources) == ["tiny.bin"]  # no archive, no downloads/ folder
    assert files_under(empty_tmpdir) == [] and not in_keras_fallback(source)
    assert cache.find_source(source, download=False) == got  # found there from now on


def test_a_bare_file_is_moved_into_the_sources_folder(tmp_path, empty_tmpdir):
    source = published(tmp_path, member=None)
    got = cache.download_source(source, tmp_path / "sources")
    assert got.read_bytes() == PAYLOAD
    assert files_under(tmp_path / "sources") == ["tiny.bin"]
    assert files_under(empty_tmpdir) == [] and not in_keras_fallback(source)


def test_the_extracted_file_is_checked_against_its_sha256_and_not_kept(tmp_path):
    source = published(tmp_path, payload=PAYLOAD[::-1])  # right archive hash, wrong content
    with pytest.raises(ValueError, match=r"is not the expected tiny\.bin: sha256"):
        cache.download_source(source, tmp_path / "sources")
    assert files_under(tmp_path / "sources") == [] and not in_keras_fallback(source)


def test_an_archive_with_the_wrong_sha256_is_refused_and_not_kept(tmp_path):
    source = dataclasses.replace(published(tmp_path), archive_sha256="0" * 64)
    expected = r"(?s)could not download .*tiny\.bin \(sha256 [0-9a-f]{64}\) was not found"
    with pytest.raises(OSError, match=expected):
        cache.download_source(source, tmp_path / "sources")
    assert files_under(tmp_path / "sources") == [] and not in_keras_fallback(source)


def test_no_output_when_stderr_is_not_a_terminal(tmp_path, capsys):
    cache.download_source(published(tmp_path), tmp_path / "sources")
    assert capsys.readouterr() == ("", "")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_goes_to_stderr_and_stdout_stays_clean(
    tmp_path, monkeypatch, capsys
):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    source = published(tmp_path)
    cache.download_source(source, tmp_path / "sources")
    assert f"Downloading data from {source.url}" in terminal.getvalue()
    assert capsys.readouterr().out == ""

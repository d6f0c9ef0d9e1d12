"""One bad media does not abort an add: a corrupt or missing photo, a folder without photos, a
photo without a face or malformed frame outputs are skipped and reported with why, the rest
enrolled, and nothing is written when no one is left. Real example photos, a real truncated
JPEG; the `gallery add` command in-process (its subprocess test is in tests/cli, slow)."""

import shutil

import numpy as np
import pytest
from PIL import Image

from keras_faceset.cli import main
from keras_faceset.gallery import Gallery
from tests.cli.helpers import POWELL, SERENA_1, SERENA_2
from tests.gallery.conftest import mean_template, synthetic_people

GREY = np.full((250, 250, 3), 128, np.uint8)


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    """Serena's two photos, a truncated copy of Powell's JPEG (a real corrupt file), a text
    file named .jpg and a grey photo without a face, in one folder."""
    folder = tmp_path_factory.mktemp("album") / "serena"
    folder.mkdir()
    shutil.copy(SERENA_1, folder / "a.jpg")
    shutil.copy(SERENA_2, folder / "b.jpg")
    data = POWELL.read_bytes()
    (folder / "c_truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "d_text.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(GREY).save(folder / "e_grey.png")
    return folder


@pytest.fixture(scope="module")
def added(tmp_path_factory, album, dlib):
    """A gallery, its versions before, and the reports of one add_many with bad media."""
    root = tmp_path_factory.mktemp("gallery")
    gallery = Gallery.create(root / "g", dlib)
    before = gallery._store.versions()
    (root / "empty").mkdir()
    people = {
        "Serena": album,
        "Powell": [album / "c_truncated.jpg", POWELL, root / "missing.jpg"],
        "Nobody": [album / "d_text.jpg", root / "empty"],
    }
    return gallery, before, root, gallery.add_many(people)


def test_bad_photos_are_skipped_and_reported_and_the_rest_enrolled(added, album, dlib):
    gallery, before, root, (serena, powell, nobody) = added
    assert (serena.enrolled, serena.media, serena.faces) == (True, 2, 2)
    bad = [str(album / n) for n in ("c_truncated.jpg", "d_text.jpg", "e_grey.png")]
    assert sorted(serena.skipped_media) == bad
    why = serena.skipped_media
    assert why[bad[0]].startswith(f"cannot decode image {bad[0]}")
    assert "Unknown image file format" in why[bad[1]]
    assert why[bad[2]] == "no face found"
    assert serena.message == "3 of its 5 media skipped"
    assert (powell.enrolled, powell.media) == (True, 1)
    assert list(powell.skipped_media) == [bad[0], str(root / "missing.jpg")]
    assert "does not exist" in powell.skipped_media[str(root / "missing.jpg")]
    assert not nobody.enrolled and "holds no images" in nobody.skipped_media[str(root / "empty")]
    assert "not enrolled" in nobody.message

    assert len(gallery._store.versions()) == len(before) + 1  # one version, the people enrolled
    reopened = Gallery.open(gallery.path)
    assert reopened.list()["person"].tolist() == ["Serena", "Powell"]
    sources = reopened._version.media.frame["source"].tolist()
    assert sources == [str(album / "a.jpg"), str(album / "b.jpg"), str(POWELL)]
    want, _ = dlib.embed_sets([[SERENA_1, SERENA_2], [POWELL]])
    np.testing.assert_allclose(reopened._version.people.vectors["template"], want, atol=1e-5)


def test_nothing_is_written_when_no_media_is_usable(added, album):
    gallery = added[0]
    versions = gallery._store.versions()
    report = gallery.add("Broken", [album / "c_truncated.jpg", album / "e_grey.png"])
    assert not report.enrolled and len(report.skipped_media) == 2
    assert gallery._store.versions() == versions
    assert Gallery.open(gallery.path).list()["person"].tolist() == ["Serena", "Powell"]


def test_a_corrupt_query_is_answered_with_its_error(added, album):
    broken, serena = added[0].search([album / "c_truncated.jpg", SERENA_2])
    assert broken.person is None
    assert broken.error.startswith(f"cannot decode image {album / 'c_truncated.jpg'}")
    assert serena.person == "Serena"


def test_malformed_frame_outputs_are_skipped(tmp_path, dlib):
    gallery = Gallery.create(tmp_path / "g", dlib)
    people = synthetic_people(2)
    bad = {
        "short": np.ones((2, 64), np.float32),
        "nan": np.full((2, 128), np.nan, np.float32),
        "empty": np.zeros((0, 128), np.float32),
    }
    good = people["person000"]
    reports = gallery.add_frames(
        {
            "person000": [
                good[0],
                {"frame_embeddings": bad["short"], "source": "short"},
                {"frame_embeddings": bad["nan"], "source": "nan"},
                {"frame_embeddings": bad["empty"], "source": "empty"},
                good[1],
            ],
            "nobody": [{"source": "no vectors"}],
        }
    )
    assert (reports[0].enrolled, reports[0].media) == (True, 2)
    assert reports[0].skipped_media == {
        "short": "frame_embeddings of shape (2, 64), expected (frames, 128)",
        "nan": "frame_embeddings hold NaN or infinite values",
        "empty": "no frames",
    }
    assert not reports[1].enrolled
    assert reports[1].skipped_media == {"no vectors": "no frame_embeddings given"}
    template = gallery._version.people.vectors["template"]
    np.testing.assert_allclose(template[0], mean_template(good[:2]), atol=1e-5)


def test_gallery_add_command_skips_bad_files_and_fails_only_when_nothing_is_added(
    tmp_path, album, dlib, capsys
):
    path = Gallery.create(tmp_path / "g", dlib).path
    assert main(["gallery", "add", str(path), "Serena", str(album), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "Serena: 2 media, 2 faces" in out
    assert "added 1 of 1 people (2 media, 2 faces); skipped 3 media" in out
    assert f"skipped {album / 'c_truncated.jpg'}: cannot decode image" in err
    assert f"skipped {album / 'e_grey.png'}: no face found" in err
    broken = [str(album / "c_truncated.jpg"), str(album / "d_text.jpg")]
    assert main(["gallery", "add", str(path), "Broken", *broken, "-q"]) == 1
    out, err = capsys.readouterr()
    assert (
        f"added 0 of 1 people (0 media, 0 faces); skipped 2 media: nothing written to {path}" in out
    )
    assert "Broken: not enrolled" in err
    assert Gallery.open(path).list()["person"].tolist() == ["Serena"]

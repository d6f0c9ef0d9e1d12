"""`keras_faceset.pipelines.embed_gallery` on Beam's DirectRunner: rows equal to the in-process
`FaceEmbedder`, every input embedded or in the dead letter, re-runs writing the same files,
and the output enrolled by the gallery code. Runs in the beam environment (.ci/run)."""

import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("apache_beam")

from keras_faceset.embedder import FaceEmbedder  # noqa: E402
from keras_faceset.gallery import Gallery, GalleryModelError  # noqa: E402
from keras_faceset.pipelines import add_to_gallery, embed_gallery, read_output  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"
IN_MEMORY = ("--runner", "DirectRunner", "--direct_running_mode", "in_memory")
TWO_WORKERS = (
    "--runner",
    "DirectRunner",
    "--direct_num_workers",
    "2",
    "--direct_running_mode",
    "multi_processing",
)
LIMIT_S = 420


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    """ALBUM/<person>/: the example photos, their mirror images and one byte-identical copy;
    a text file named .jpg and a faceless grey picture."""
    root = tmp_path_factory.mktemp("album")
    for photo in sorted(EXAMPLES.glob("*.jpg")):
        folder = root / photo.stem.rsplit("_", 1)[0]
        folder.mkdir(exist_ok=True)
        shutil.copy(photo, folder / photo.name)
        ImageOps.mirror(Image.open(photo)).save(folder / f"{photo.stem}_flip.jpg", quality=95)
    shutil.copy(EXAMPLES / "Colin_Powell_0001.jpg", root / "Colin_Powell" / "copy.jpg")
    (root / "Colin_Powell" / "notes.jpg").write_text("not an image")
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(root / "Colin_Powell" / "wall.png")
    return root


@pytest.fixture(scope="module")
def dlib():
    return FaceEmbedder("dlib_resnet")


def run_bounded(command, limit_s=LIMIT_S):
    """Run `command` in a session of its own; kill the whole group (Beam's worker processes
    too) when it ends or overruns."""
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = process.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        out = ""
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def two_workers(album, tmp_path_factory):
    """The album embedded by `keras-faceset embed dlib_resnet --runner DirectRunner` with 2
    worker processes."""
    output = tmp_path_factory.mktemp("two-workers") / "out"
    cli = [sys.executable, "-m", "keras_faceset.cli", "embed", "dlib_resnet", str(album)]
    printed = run_bounded([*cli, "-q", "-o", str(output), *TWO_WORKERS])
    assert f"7 embedded, 2 in {output}/dead-letter.jsonl (of 9 inputs)" in printed
    return output


def files(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_rows_equal_the_in_process_embedder(two_workers, album, dlib):
    media, faces, _, info = read_output(two_workers)
    sources = list(media.frame["source"])
    assert sorted(sources) == sorted(str(p) for p in album.rglob("*.jpg") if p.name != "notes.jpg")
    np.testing.assert_allclose(media.vectors["embedding"], dlib.embed_images(sources), atol=1e-5)
    aligned = dlib.align_faces(sources)
    np.testing.assert_allclose(
        faces.vectors["frame_embeddings"],
        dlib.frame_outputs(aligned.chips)["frame_embeddings"],
        atol=1e-4,
    )
    boxes = faces.frame[["x1", "y1", "x2", "y2"]].to_numpy()
    np.testing.assert_allclose(boxes, aligned.boxes, atol=1e-3)
    assert list(faces.frame["media_id"]) == list(media.frame["media_id"])
    assert (media.frame["set_id"] == [str(Path(s).parent) for s in sources]).all()
    assert set(media.frame["model"]) == {"dlib_resnet"}
    assert set(media.frame["model_version"]) == {dlib.frame_key}
    assert [list(w) for w in media.frame["weights"]] == [[1.0]] * len(media)
    assert info["shard_count"] == 8 and len(info["shards"]) == 8


def test_the_pipeline_gives_the_rows_of_in_process_embed(two_workers, album, tmp_path):
    """`keras-faceset embed` in one process: the same embeddings for the photos with a face;
    its faceless photo (central crop, face_found False) and unreadable file are the
    pipeline's dead letters."""
    import pandas as pd

    from keras_faceset.cli import main

    assert main(["embed", "dlib_resnet", str(album), "-q", "-o", str(tmp_path / "e.parquet")]) == 0
    in_process = pd.read_parquet(tmp_path / "e.parquet").set_index("path")
    media, _, dead, _ = read_output(two_workers)
    assert set(in_process.index) == set(media.frame["source"]) | {
        str(album / "Colin_Powell" / "wall.png")
    }
    assert not in_process.loc[str(album / "Colin_Powell" / "wall.png"), "face_found"]
    rows = np.stack(in_process.loc[list(media.frame["source"]), "embedding"])
    np.testing.assert_allclose(media.vectors["embedding"], rows, atol=1e-5)
    errors = pd.read_csv(tmp_path / "e.parquet.errors.csv")
    assert set(errors["path"]) | {str(album / "Colin_Powell" / "wall.png")} == set(dead["source"])


def test_every_input_is_embedded_or_dead_lettered(two_workers, album):
    media, _, dead, info = read_output(two_workers)
    inputs = [p for p in album.rglob("*") if p.is_file()]
    assert len(media) + len(dead) == len(inputs) == info["inputs"] == 9
    assert (info["embedded"], info["dead_letter"]) == (7, 2)
    reasons = dict(zip(dead["source"], dead["reason"], strict=True))
    assert set(reasons) == {str(album / "Colin_Powell" / n) for n in ("notes.jpg", "wall.png")}
    assert "cannot decode image" in reasons[str(album / "Colin_Powell" / "notes.jpg")]
    assert reasons[str(album / "Colin_Powell" / "wall.png")] == "no face found"
    assert media.frame["media_id"].is_unique  # the byte-identical copy is a row of its own


def test_a_rerun_writes_the_same_files_and_never_duplicates(two_workers, album, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(two_workers, output)
    before = files(output)
    embed_gallery([album], str(output), "dlib_resnet", pipeline_args=IN_MEMORY)
    assert files(output) == before  # in one process, the same bytes as with two workers
    again = [album, album / "Colin_Powell" / "copy.jpg"]  # a file given twice: one row
    embed_gallery(again, str(output), "dlib_resnet", shards=2, pipeline_args=IN_MEMORY)
    media, faces, dead, info = read_output(output)
    first, _, first_dead, _ = read_output(two_workers)
    order = np.argsort(media.frame["media_id"].to_numpy())
    reference = np.argsort(first.frame["media_id"].to_numpy())
    assert list(media.frame["media_id"].iloc[order]) == list(
        first.frame["media_id"].iloc[reference]
    )
    np.testing.assert_array_equal(
        media.vectors["embedding"][order], first.vectors["embedding"][reference]
    )
    assert dead.equals(first_dead)
    shard_files = sorted(p.name for p in output.glob("*.parquet"))
    assert shard_files == sorted(name for pair in info["shards"] for name in pair)
    assert len(shard_files) == 4  # the eight shards of the earlier run are gone


def test_the_gallery_enrols_and_searches_the_output(two_workers, dlib, tmp_path):
    gallery = Gallery.create(tmp_path / "gallery", dlib)
    reports = add_to_gallery(gallery, two_workers)
    assert {r.person: (r.enrolled, r.media) for r in reports} == {
        "Colin_Powell": (True, 3),
        "Serena_Williams": (True, 4),
    }
    media, _, _, _ = read_output(two_workers)
    colin = media.frame["set_id"].str.endswith("Colin_Powell").to_numpy()
    answers = gallery.search_vectors(media.vectors["embedding"], threshold=0.5)
    assert [a.person for a in answers] == [
        "Colin_Powell" if c else "Serena_Williams" for c in colin
    ]
    centre = Gallery.create(tmp_path / "centre", FaceEmbedder("dlib_resnet", align="center"))
    with pytest.raises(GalleryModelError, match="embed with the gallery's model"):
        add_to_gallery(centre, two_workers)


def test_the_gallery_command_enrols_the_output(two_workers, tmp_path, capsys):
    from keras_faceset.cli import main

    gallery = tmp_path / "gallery"
    assert main(["gallery", "create", str(gallery), "--model", "dlib_resnet", "-q"]) == 0
    assert main(["gallery", "add", str(gallery), "--embedded", str(two_workers), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Colin_Powell: 3 media" in printed and "Serena_Williams: 4 media" in printed
    assert sorted(Gallery.open(gallery).list()["person"]) == ["Colin_Powell", "Serena_Williams"]
    assert main(["gallery", "add", str(gallery), "Someone", "--embedded", str(two_workers)]) == 1
    assert "--people ROOT or --embedded OUTPUT" in capsys.readouterr().err


class FailsOnFlips(FaceEmbedder):
    """An embedder that raises on any batch holding a mirrored photo."""

    def align_faces(self, images):
        if any("flip" in str(image) for image in images):
            raise RuntimeError("simulated worker fault")
        return super().align_faces(images)


def test_an_element_that_raises_goes_to_the_dead_letter(album, tmp_path):
    output = tmp_path / "out"
    make = functools.partial(FailsOnFlips, "dlib_resnet")
    info = embed_gallery(
        [album / "Serena_Williams"], str(output), make, sets=False, pipeline_args=IN_MEMORY
    )
    media, _, dead, _ = read_output(output)
    assert (info["embedded"], info["dead_letter"]) == (2, 2)
    assert sorted(Path(s).name for s in media.frame["source"]) == [
        "Serena_Williams_0001.jpg",
        "Serena_Williams_0002.jpg",
    ]
    assert set(dead["reason"]) == {"RuntimeError: simulated worker fault"}


def test_sets_from_folders_and_a_manifest(album, tmp_path):
    """nan: a folder is one set, as are the manifest rows sharing a set_id; a set without a
    face is a dead letter."""
    serena = sorted(str(p) for p in (album / "Serena_Williams").glob("*.jpg"))
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    shutil.copy(album / "Colin_Powell" / "wall.png", faceless / "wall.png")
    colin = str(album / "Colin_Powell" / "Colin_Powell_0001.jpg")
    manifest = album.parent / "manifest.csv"  # paths relative to its folder
    lines = [f"{Path(p).relative_to(album.parent)},serena" for p in serena[:2]]
    lines.append(f"{Path(colin).relative_to(album.parent)},colin")
    manifest.write_text("path,set_id\n" + "\n".join(lines) + "\n")
    output = tmp_path / "out"
    info = embed_gallery(
        [album / "Serena_Williams", faceless],
        str(output),
        "nan",
        manifest=str(manifest),
        pipeline_args=IN_MEMORY,
    )
    media, faces, dead, _ = read_output(output)
    assert (info["embedded"], info["dead_letter"]) == (3, 1)
    assert list(dead["source"]) == [str(faceless)] and list(dead["reason"]) == ["no face found"]
    nan = FaceEmbedder("nan")
    by_set = {s: i for i, s in enumerate(media.frame["set_id"])}
    sets = {str(album / "Serena_Williams"): serena, "serena": serena[:2], "colin": [colin]}
    embeddings, weights = nan.embed_sets(list(sets.values()))
    for (set_id, frames), embedding, weight in zip(sets.items(), embeddings, weights, strict=True):
        row = by_set[set_id]
        np.testing.assert_allclose(media.vectors["embedding"][row], embedding, atol=1e-5)
        np.testing.assert_allclose(media.frame["weights"][row], weight, atol=1e-5)
        taken = faces.frame["media_id"] == media.frame["media_id"][row]
        assert list(faces.frame["frame"][taken]) == frames
    assert json.loads((output / "summary.json").read_text())["inputs"] == 4


@pytest.mark.slow
def test_lfw_images_with_two_workers_equal_the_in_process_embedder(tmp_path):
    """240 LFW images (the first people in sorted order) with 2 worker processes."""
    from tests.conftest import LFW_DIR, require

    images = sorted(require(LFW_DIR / "lfw-deepfunneled").rglob("*.jpg"))[:240]
    manifest = tmp_path / "lfw.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in images))
    output = tmp_path / "out"
    code = (
        "import sys; from keras_faceset.pipelines import embed_gallery; "
        "embed_gallery([], sys.argv[1], 'dlib_resnet', manifest=sys.argv[2], "
        "pipeline_args=sys.argv[3:])"
    )
    run_bounded([sys.executable, "-c", code, str(output), str(manifest), *TWO_WORKERS], 900)
    media, _, dead, info = read_output(output)
    assert len(media) + len(dead) == info["inputs"] == len(images)
    assert len(dead) <= 2, dead  # LFW's deep-funneled images nearly all show a face
    assert media.frame["media_id"].is_unique
    reference = FaceEmbedder("dlib_resnet").embed_images(list(media.frame["source"]))
    np.testing.assert_allclose(media.vectors["embedding"], reference, atol=1e-5)
    assert (media.frame["set_id"] == [str(Path(s).parent) for s in media.frame["source"]]).all()


def test_images_by_url_in_a_manifest(album, dlib, tmp_path):
    """file:// URLs (read as gs:// ones are, through TensorFlow's filesystems): the same
    embedding as the local file; a missing one is a dead letter."""
    photo = album / "Serena_Williams" / "Serena_Williams_0001.jpg"
    missing = f"file://{album}/missing.jpg"
    manifest = tmp_path / "urls.csv"
    manifest.write_text(f"path\nfile://{photo}\n{missing}\n")
    output = tmp_path / "out"
    embed_gallery([], str(output), "dlib_resnet", manifest=str(manifest), pipeline_args=IN_MEMORY)
    media, _, dead, _ = read_output(output)
    assert list(media.frame["source"]) == [f"file://{photo}"]
    assert list(media.frame["set_id"]) == [f"file://{photo.parent}"]
    np.testing.assert_allclose(media.vectors["embedding"], dlib.embed_images([photo]), atol=1e-5)
    assert list(dead["source"]) == [missing]
    assert dead["reason"][0].startswith(f"cannot read image {missing}")

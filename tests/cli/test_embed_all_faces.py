"""`keras-faceset embed --all-faces` in process on the example photos, a 2x2 collage of them
(four faces), a grey image (none), a text file named .jpg and a two-frame video: every face
against `FaceEmbedder.find_faces` and the in-graph `FacePipeline`, one-face photos against
`embed` without the option, parquet against npz, refusals."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from keras_faceset import zoo
from keras_faceset.cli import main
from keras_faceset.data.folders import read_video_frames
from keras_faceset.data.images import load_image
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models.face_pipeline import FacePipeline
from keras_faceset.vectors import unit_vectors
from tests.cli.helpers import POWELL, SERENA_1, SERENA_2, grey, photo, save, write_video

MODEL = "dlib_resnet"
PER_FACE = ("paths", "face", "face_count", "detector_score", "box", "landmarks", "embeddings")


def cli(*args) -> tuple[int, str, str]:
    """`keras-faceset ARGS` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*map(str, args), "-q"])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The three photos, collage.png (500 x 500: the photos and Colin Powell mirrored), grey.png,
    notes.jpg (text) and clip.avi (Serena, then Colin Powell)."""
    folder = tmp_path_factory.mktemp("in")
    images = [photo(path) for path in (POWELL, SERENA_1, SERENA_2)]
    top = np.concatenate([images[0], images[1]], axis=1)
    bottom = np.concatenate([images[2], images[0][:, ::-1]], axis=1)
    collage = save(folder / "collage.png", np.concatenate([top, bottom], axis=0))
    (folder / "notes.jpg").write_text("not an image")
    write_video(folder / "clip.avi", [SERENA_1, POWELL])
    paths = [POWELL, SERENA_1, SERENA_2, collage, grey(folder / "grey.png")]
    return paths, folder / "notes.jpg", folder / "clip.avi"


@pytest.fixture(scope="module")
def written(inputs, tmp_path_factory):
    """`embed --all-faces` of every input to faces.npz: its arrays, stdout and stderr."""
    images, notes, clip = inputs
    out = tmp_path_factory.mktemp("out") / "faces.npz"
    code, stdout, stderr = cli("embed", MODEL, *images, notes, clip, "--all-faces", "-o", out)
    assert code == 0, stderr
    return dict(np.load(out)), stdout, stderr


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder(MODEL)


def test_every_face_is_find_faces_with_the_embedders_embedding(written, inputs, embedder):
    saved, stdout, stderr = written
    images, notes, clip = inputs
    assert sorted(saved) == sorted(PER_FACE)
    assert "9 faces in 6 of 7 images, embeddings of dimension 128" in stdout
    assert f"no face found in 1 image(s), which have no row: {images[4]}" in stdout
    assert f"keras-faceset embed: skipped {notes}: cannot decode" in stderr
    names = [*map(str, images), f"{clip}#0", f"{clip}#1"]
    decoded = [load_image(path).numpy() for path in images] + list(read_video_frames(clip, [0, 1]))
    found = embedder.find_faces(decoded)
    assert found.face_count.tolist() == [1, 1, 1, 4, 0, 1, 1]
    assert saved["paths"].tolist() == [names[i] for i in found.image]
    assert saved["face"].tolist() == [0, 0, 0, 0, 1, 2, 3, 0, 0]
    assert saved["face_count"].tolist() == [1, 1, 1, 4, 4, 4, 4, 1, 1]
    np.testing.assert_allclose(saved["box"], found.boxes, atol=1e-4)
    np.testing.assert_allclose(saved["landmarks"], found.landmarks, atol=1e-4)
    np.testing.assert_allclose(saved["detector_score"], found.scores, atol=1e-6)
    expected = unit_vectors(embedder.frame_outputs(found.chips)["frame_embeddings"])
    np.testing.assert_allclose(saved["embeddings"], expected, atol=1e-5)
    collage = saved["paths"] == str(images[3])
    area = np.prod(saved["box"][collage, 2:] - saved["box"][collage, :2], axis=1)
    assert np.all(np.diff(area) <= 0)  # largest first
    powell = saved["embeddings"][collage] @ saved["embeddings"][0]  # the first input's face
    assert np.sum(powell > 0.9) == 2, powell  # in the collage, as taken and mirrored


@pytest.mark.slow
def test_the_collage_faces_match_the_in_graph_pipeline(written, inputs):
    """The same faces as `FacePipeline` (the export's embed_faces), whose chips are warped in
    the graph (within a grey level of `crop_face`'s): boxes within 0.05 px, embeddings within
    1e-4."""
    saved, _, _ = written
    collage = inputs[0][3]
    pipeline = FacePipeline.from_task(zoo.load(MODEL, form="task"), zoo.get_preset(MODEL).crop)
    graph = {
        key: value.numpy() for key, value in pipeline(load_image(collage).numpy()[None]).items()
    }
    rows = saved["paths"] == str(collage)
    ours, boxes = saved["embeddings"][rows], saved["box"][rows]
    match = np.argmin(np.abs(boxes[:, None] - graph["boxes"][None]).sum(-1), axis=1)
    assert sorted(match) == [0, 1, 2, 3]
    np.testing.assert_allclose(boxes, graph["boxes"][match], atol=0.05)
    np.testing.assert_allclose(ours, graph["embeddings"][match], atol=1e-4)


@pytest.mark.slow
def test_one_face_rows_as_embed_parquet_as_npz_no_face_refused(written, inputs, tmp_path):
    saved, _, _ = written
    photos = inputs[0][:3]
    code, _, stderr = cli("embed", MODEL, *photos, "-o", tmp_path / "one.npz")
    assert code == 0, stderr
    one = np.load(tmp_path / "one.npz")
    rows = np.isin(saved["paths"], list(map(str, photos)))
    assert saved["paths"][rows].tolist() == one["paths"].tolist()
    np.testing.assert_allclose(saved["embeddings"][rows], one["embeddings"], atol=1e-5)
    np.testing.assert_allclose(saved["box"][rows], one["box"], atol=1e-4)
    np.testing.assert_allclose(saved["detector_score"][rows], one["detector_score"], atol=1e-6)
    collage = inputs[0][3]
    code, stdout, stderr = cli("embed", MODEL, collage, "--all-faces", "-o", tmp_path / "c.parquet")
    assert code == 0, stderr
    assert "4 faces in 1 of 1 images" in stdout
    table = pd.read_parquet(tmp_path / "c.parquet")
    columns = ["path", "face", "face_count", "detector_score", "box", "landmarks", "embedding"]
    assert list(table.columns) == columns
    rows = saved["paths"] == str(collage)
    assert table["face"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(np.stack(table["box"]), saved["box"][rows], atol=1e-4)
    landmarks = np.stack([np.stack(points) for points in table["landmarks"]])
    np.testing.assert_allclose(landmarks, saved["landmarks"][rows], atol=1e-4)
    np.testing.assert_allclose(np.stack(table["embedding"]), saved["embeddings"][rows], atol=1e-5)
    none = tmp_path / "none.npz"
    code, _, stderr = cli("embed", MODEL, inputs[0][4], "--all-faces", "-o", none)  # grey
    assert code == 1 and "no face found in the 1 image(s) read" in stderr, stderr
    assert not none.exists()


def test_refusals_name_the_remedy(inputs, tmp_path):
    """Before any model is loaded: --align center, a set model."""
    out = tmp_path / "faces.npz"
    for model, args, message in (
        (MODEL, ["--align", "center"], "--all-faces needs detection: drop --align center"),
        ("nan", [], "nan is a set model, give an image model"),
    ):
        code, _, stderr = cli("embed", model, inputs[0][0], "--all-faces", *args, "-o", out)
        assert code == 1 and message in stderr, stderr
    assert not out.exists()

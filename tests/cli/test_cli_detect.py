"""`keras-faceset detect` (a subprocess for the first test, in this process for the others) on
the example photos, a 2x2 collage of them (four faces), a grey image (none) and files that are
no image: CSV and JSON against the in-graph detector in process, --max-faces, annotated PNGs
with --draw."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from keras_faceset.data.images import load_image
from keras_faceset.detect import LANDMARK_NAMES, Mtcnn
from tests.cli.helpers import (
    POWELL,
    SERENA_1,
    SERENA_2,
    grey,
    no_log_lines,
    photo,
    run,
    run_in_process,
    save,
)


@pytest.fixture
def inputs(tmp_path):
    """The three photos, collage.png (500 x 500, four faces), grey.png, a text file named
    .jpg and a JPEG cut short."""
    images = [photo(path) for path in (POWELL, SERENA_1, SERENA_2)]
    top = np.concatenate([images[0], images[1]], axis=1)
    bottom = np.concatenate([images[2], images[0][:, ::-1]], axis=1)
    collage = save(tmp_path / "in" / "collage.png", np.concatenate([top, bottom], axis=0))
    (tmp_path / "in" / "notes.jpg").write_text("not an image")
    (tmp_path / "in" / "cut.jpg").write_bytes(SERENA_1.read_bytes()[:3000])
    paths = [POWELL, SERENA_1, SERENA_2, collage, grey(tmp_path / "in" / "grey.png")]
    return paths, [tmp_path / "in" / "notes.jpg", tmp_path / "in" / "cut.jpg"]


@functools.cache
def detector(max_faces: int) -> Mtcnn:
    """One in-graph detector per max_faces for the module (each traces its graph once)."""
    return Mtcnn(max_faces=max_faces)


def expected_faces(path, max_faces=16):
    found = detector(max_faces).detect(load_image(path).numpy()[None])
    count = int(found["counts"][0])
    return {key: found[key][0, :count].numpy() for key in ("boxes", "scores", "landmarks")}


def test_detect_writes_every_face_to_csv_and_draws_them(tmp_path, inputs):
    images, broken = inputs
    out, drawn = tmp_path / "faces.csv", tmp_path / "drawn"
    result = run("detect", *images, *broken, "-o", out, "--draw", drawn)
    no_log_lines(result)
    assert "7 faces in 5 images" in result.stdout
    for path in broken:
        assert f"keras-faceset detect: skipped {path}: cannot decode" in result.stderr
    assert "2 skipped" in result.stderr
    table = pd.read_csv(out)
    counts = table.groupby("path", sort=False)["faces"].first()
    assert counts.to_dict() == {str(p): n for p, n in zip(images, [1, 1, 1, 4, 0], strict=True)}
    assert table[table["path"] == str(images[4])]["face"].isna().all()  # its one empty row
    collage = table[table["path"] == str(images[3])].reset_index()
    ours = expected_faces(images[3])
    np.testing.assert_allclose(collage[["x1", "y1", "x2", "y2"]], ours["boxes"], atol=0.006)
    np.testing.assert_allclose(collage["score"], ours["scores"], atol=6e-5)
    points = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]
    np.testing.assert_allclose(collage[points], ours["landmarks"].reshape(4, 10), atol=0.006)
    assert sorted(p.name for p in drawn.iterdir()) == sorted(f"{p.stem}.png" for p in images)
    annotated, original = photo(drawn / "collage.png"), photo(images[3])
    green = np.all(annotated == (0, 255, 0), axis=-1)
    x1, y1, x2, y2 = np.round(ours["boxes"][0]).astype(int)
    assert green[y1, x1 : x2 + 1].mean() > 0.9 and green[y1 : y2 + 1, x2].mean() > 0.9
    red = np.all(annotated == (255, 0, 0), axis=-1)
    assert red.sum() >= 4 * 5  # the landmarks
    near = np.zeros(green.shape, bool)  # the boxes, their score labels above them
    for x1, y1, x2, y2 in np.round(ours["boxes"]).astype(int):
        near[max(y1 - 20, 0) : y2 + 3, max(x1 - 3, 0) : x2 + 40] = True
    assert not np.any(np.any(annotated != original, axis=-1) & ~near)
    np.testing.assert_array_equal(photo(drawn / "grey.png"), photo(images[4]))  # nothing drawn


def test_detect_json_keeps_the_largest_faces(tmp_path, inputs):
    images, _ = inputs
    out = tmp_path / "faces.json"
    result = run_in_process("detect", images[3], images[4], "--max-faces", 2, "-o", out)
    assert "2 faces in 2 images" in result.stdout
    records = json.loads(out.read_text())
    assert [record["path"] for record in records] == [str(images[3]), str(images[4])]
    assert records[1]["faces"] == []
    faces, ours = records[0]["faces"], expected_faces(images[3], max_faces=2)
    np.testing.assert_allclose([face["box"] for face in faces], ours["boxes"], atol=0.006)
    assert list(faces[0]["landmarks"]) == list(LANDMARK_NAMES)
    every = expected_faces(images[3])["boxes"]
    area = (every[:, 2] - every[:, 0]) * (every[:, 3] - every[:, 1])
    box_area = [(b[2] - b[0]) * (b[3] - b[1]) for b in (face["box"] for face in faces)]
    assert min(box_area) >= np.sort(area)[-2] - 1  # the two largest of the four


def test_detect_refuses_a_wrong_output_and_nothing_readable(tmp_path, inputs):
    images, broken = inputs
    result = run_in_process("detect", images[0], "-o", tmp_path / "faces.txt", check=False)
    assert result.returncode == 1 and "output must end in .csv or .json" in result.stderr
    result = run_in_process("detect", *broken, tmp_path / "missing.jpg", check=False)
    assert result.returncode == 1 and "no image could be read" in result.stderr
    assert f"skipped {tmp_path / 'missing.jpg'}: " in result.stderr

"""`gallery`, `identify` and `cluster` as users run them, on the example photos: enrol two
people from a known_people folder, identify both faces of a collage and a video's tracks,
group an album's faces. Slow (about a minute: each command a fresh process); the same
behaviour runs in-process in tests/gallery."""

import csv
import json

import numpy as np
import pytest

from tests.cli.helpers import POWELL, SERENA_1, SERENA_2, photo, run, save, variants, write_video

pytestmark = pytest.mark.slow


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_enrol_identify_and_cluster(tmp_path):
    known = tmp_path / "known_people"
    for i, image in enumerate(variants(SERENA_1)):
        save(known / "Serena Williams" / f"{i}.png", image)
    save(known / "Colin Powell.jpg", photo(POWELL))
    gallery = tmp_path / "gallery"
    run("gallery", "create", gallery, "--model", "dlib_resnet")
    added = run("gallery", "add", gallery, "--people", known)
    assert "Serena Williams: 3 media, 3 faces" in added.stdout
    assert "Colin Powell: 1 media, 1 faces" in added.stdout
    listed = run("gallery", "list", gallery).stdout
    assert "Serena Williams" in listed and "Colin Powell" in listed
    again = run("gallery", "add", gallery, "Colin Powell", POWELL, check=False)
    assert again.returncode == 1 and "--append" in again.stderr  # no silent duplicate

    unknown = tmp_path / "unknown"
    save(unknown / "both.png", np.concatenate([photo(SERENA_2), photo(POWELL)], axis=1))
    (unknown / "broken.jpg").write_bytes(b"not a jpeg")
    video = tmp_path / "clip.avi"
    write_video(video, [SERENA_2] * 6 + [POWELL] * 6)
    out = tmp_path / "who.csv"
    run("identify", gallery, unknown, video, "--step", "2", "-o", out, "--draw", tmp_path / "d")
    table = rows(out)
    faces = [r for r in table if r["kind"] == "photo" and r["person"]]
    assert sorted(r["person"] for r in faces) == ["Colin Powell", "Serena Williams"]
    assert all(r["threshold_source"] for r in faces)
    assert any(r["error"] and "broken.jpg" in r["source"] for r in table)
    tracks = [r for r in table if r["kind"] == "video"]
    assert [r["person"] for r in tracks] == ["Serena Williams", "Colin Powell"]
    assert json.loads(tracks[0]["frames"]) == [0, 2, 4]
    assert (tmp_path / "d" / "both.png").is_file()
    assert (tmp_path / "d" / "clip_track0.png").is_file()

    album = tmp_path / "album"
    for i, image in enumerate([*variants(SERENA_2), *variants(POWELL)]):
        save(album / f"{i}.png", image)
    clustered = run("cluster", "dlib_resnet", album, "-o", tmp_path / "groups")
    assert "6 faces in 6 photos -> 2 clusters" in clustered.stdout
    labels = {
        r["source"].split("/")[-1]: r["cluster"] for r in rows(tmp_path / "groups" / "clusters.csv")
    }
    assert len({labels[f"{i}.png"] for i in range(3)}) == 1
    assert len({labels[f"{i}.png"] for i in range(3, 6)}) == 1
    assert labels["0.png"] != labels["3.png"]
    assert len(list((tmp_path / "groups").glob("cluster_*/*.png"))) == 6

"""identify_photos / identify_video with the real dlib_resnet preset on the example photos:
every face of a two-person collage is found and named; a video cut from one person to the
other gives two tracks, each named, with the set head's frame weights."""

import cv2
import numpy as np
import pytest

from keras_faceset.gallery import Gallery
from keras_faceset.gallery.identify import identify_photos, identify_video
from tests.cli.helpers import POWELL, SERENA_1, SERENA_2, photo, variants


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from keras_faceset.embedder import FaceEmbedder

    gallery = Gallery.create(tmp_path_factory.mktemp("g") / "people", FaceEmbedder("dlib_resnet"))
    gallery.add("Serena Williams", variants(SERENA_1))
    gallery.add("Colin Powell", variants(POWELL))
    return gallery


def test_every_face_of_a_photo_is_identified(gallery, tmp_path):
    collage = np.concatenate([photo(SERENA_2), photo(POWELL)], axis=1)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    grey = np.full((250, 250, 3), 128, np.uint8)
    matches = identify_photos(gallery, [collage, bad, grey])
    found = [m for m in matches if m.identification is not None]
    assert len(found) == 2 and {m.source for m in found} == {"<array 0>"}
    by_side = sorted(found, key=lambda m: m.box[0])  # Serena on the left, Powell on the right
    assert [m.identification.person for m in by_side] == ["Serena Williams", "Colin Powell"]
    assert by_side[1].box[0] >= 250 and all(m.detector_score > 0.9 for m in found)
    # the searched template is the face's own embedding: its score is the cosine to the person
    embedder = gallery.embedder
    chips = embedder.find_faces([collage]).chips
    direct = gallery.search_vectors(
        embedder.set_embeddings(embedder.frame_outputs(chips), [[0], [1]])[0]
    )
    assert [a.score for a in direct] == pytest.approx(
        [m.identification.score for m in found], abs=1e-5
    )
    errors = {m.source: m.error for m in matches if m.identification is None}
    assert "not" in errors[str(bad)].lower() or "decode" in errors[str(bad)].lower()
    assert errors["<array 2>"] == "no face found in <array 2>"


def test_a_video_gives_one_named_track_per_person(gallery, tmp_path):
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (250, 250))
    frames = [photo(SERENA_2)] * 8 + [np.full((250, 250, 3), 90, np.uint8)] * 4
    frames += [photo(POWELL)[:, ::-1]] * 8
    for i, frame in enumerate(frames):  # a slow pan: the face drifts 2 px a frame
        writer.write(np.ascontiguousarray(np.roll(frame, 2 * i, axis=1)[:, :, ::-1]))
    writer.release()
    tracks = identify_video(gallery, path, step=2, chunk=3)
    assert [t.identification.person for t in tracks] == ["Serena Williams", "Colin Powell"]
    assert [(t.first_frame, t.last_frame, t.detections) for t in tracks] == [(0, 6, 4), (12, 18, 4)]
    for track in tracks:
        assert track.frames == list(range(track.first_frame, track.last_frame + 1, 2))
        assert sum(track.weights) == pytest.approx(1.0, abs=1e-5)  # mean head: 1/4 each
        np.testing.assert_allclose(track.weights, 0.25, atol=1e-5)
        assert track.identification.score >= track.identification.threshold
        assert track.identification.candidates[0][0] == track.identification.person

"""`detect_video` on a small MJPG video written with OpenCV from the example photos: every face
of the sampled frames with its frame index, against each decoded frame detected alone and
the half of the frame each photo was put in; a generator of frames of two sizes, batches, a
video without faces, bad arguments."""

import cv2
import numpy as np
import pytest

from keras_faceset.data.folders import read_video_frames
from keras_faceset.data.images import load_image
from keras_faceset.detect import Mtcnn, VideoFaces, detect_video, iter_detect_video
from tests.conftest import REPO

POWELL, SERENA_1, SERENA_2 = (
    load_image(REPO / "examples" / "images" / f"{name}.jpg").numpy()
    for name in ("Colin_Powell_0001", "Serena_Williams_0001", "Serena_Williams_0002")
)
GREY = np.full_like(POWELL, 128)
SCENES = [  # (left half, right half) of each 250 x 500 frame
    (POWELL, SERENA_1),
    (GREY, SERENA_2),
    (GREY, GREY),
    (SERENA_1[:, ::-1], POWELL),
    (POWELL, GREY),
    (POWELL, SERENA_1),
    (GREY, SERENA_2),
]
FACES = [2, 1, 0, 2, 1, 2, 1]  # per frame


@pytest.fixture(scope="module")
def detector():
    return Mtcnn()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (500, 250))
    for left, right in SCENES:
        writer.write(np.ascontiguousarray(np.concatenate([left, right], axis=1)[:, :, ::-1]))
    writer.release()
    return path


def alone(detector, frame):
    """(boxes, scores, landmarks) of `frame` detected by itself."""
    found = detector.detect(frame[None])
    count = int(found["counts"][0])
    return tuple(found[key][0, :count].numpy() for key in ("boxes", "scores", "landmarks"))


def test_every_face_of_the_sampled_frames_with_its_frame_index(detector, video):
    parts = list(iter_detect_video(video, detector, step=2, batch_size=3))
    assert [part.frames.tolist() for part in parts] == [[0, 2, 4], [6]]
    found = VideoFaces.concatenate(parts)
    assert found.frames.tolist() == [0, 2, 4, 6]
    assert found.counts.tolist() == [FACES[i] for i in (0, 2, 4, 6)]
    assert found.frame.tolist() == [0, 0, 4, 6]
    assert found.boxes.shape == (4, 4) and found.landmarks.shape == (4, 5, 2)
    for index, frame in zip(found.frames, read_video_frames(video, [0, 2, 4, 6]), strict=True):
        boxes, scores, landmarks = alone(detector, frame)
        rows = found.frame == index
        np.testing.assert_allclose(found.boxes[rows], boxes, atol=1e-3)
        np.testing.assert_allclose(found.scores[rows], scores, atol=1e-5)
        np.testing.assert_allclose(found.landmarks[rows], landmarks, atol=1e-3)
    centre_x = (found.boxes[:, 0] + found.boxes[:, 2]) / 2
    assert sorted(centre_x[found.frame == 0] > 250) == [False, True]  # one face in each half
    assert centre_x[found.frame == 4][0] < 250 and centre_x[found.frame == 6][0] > 250
    assert np.all(found.scores > 0.9)


def test_a_generator_of_frames_of_two_sizes(detector, video):
    frames = list(read_video_frames(video, range(7)))
    frames[3] = frames[3][:, 250:]  # 250 x 250: Colin Powell alone
    found = detect_video(iter(frames), detector, step=3, batch_size=8)  # frames 0, 3, 6
    assert found.frames.tolist() == [0, 3, 6] and found.counts.tolist() == [2, 1, 1]
    boxes, _, landmarks = alone(detector, frames[3])
    np.testing.assert_allclose(found.boxes[found.frame == 3], boxes, atol=1e-3)
    np.testing.assert_allclose(found.landmarks[found.frame == 3], landmarks, atol=1e-3)


def test_no_face_and_no_frame(detector):
    grey = detect_video([np.full((120, 160, 3), 90, np.uint8)] * 2, detector)
    assert grey.counts.tolist() == [0, 0] and len(grey) == 0
    assert grey.boxes.shape == (0, 4) and grey.landmarks.shape == (0, 5, 2)
    none = detect_video(iter([]), detector)
    assert none.frames.shape == (0,) and none.boxes.shape == (0, 4)


def test_bad_arguments_are_named(detector, tmp_path):
    with pytest.raises(ValueError, match="step must be a positive int"):
        detect_video([GREY], detector, step=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        detect_video([GREY], detector, batch_size=0)
    with pytest.raises(ValueError, match=r"frame 1 must be uint8 RGB \(H, W, 3\)"):
        detect_video([GREY, GREY.astype(np.float32)], detector)
    with pytest.raises(ValueError, match="cannot open video"):
        detect_video(tmp_path / "missing.avi", detector)

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_faceset.data import folders


def write_png(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def write_video(path: Path, num_frames: int, size: int = 32) -> None:
    """An MJPG .avi whose frame i is uniformly gray at level 10 * i."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    for i in range(num_frames):
        writer.write(np.full((size, size, 3), 10 * i, np.uint8))
    writer.release()


def test_image_folder(tmp_path):
    write_png(tmp_path / "bob" / "b2.png", 2)
    write_png(tmp_path / "bob" / "b1.png", 1)
    write_png(tmp_path / "ann" / "a1.PNG", 3)
    (tmp_path / "ann" / "notes.txt").write_text("not an image")
    write_png(tmp_path / "ann" / ".hidden.png", 4)
    (tmp_path / "empty").mkdir()
    table = folders.image_folder(tmp_path)
    assert list(table.columns) == ["path", "identity", "label"]
    assert [Path(p).name for p in table["path"]] == ["a1.PNG", "b1.png", "b2.png"]
    assert table["identity"].tolist() == ["ann", "bob", "bob"]
    assert table["label"].tolist() == [0, 1, 1] and table["label"].dtype == np.int64


def test_set_folder_with_image_sets_and_even_sampling(tmp_path):
    for i in range(10):
        write_png(tmp_path / "ann" / "clip1" / f"f{i:02d}.png", i)
    write_png(tmp_path / "ann" / "clip2" / "f0.png", 0)
    write_png(tmp_path / "bob" / "s" / "x.png", 0)
    (tmp_path / "bob" / "empty_set").mkdir()
    table = folders.set_folder(tmp_path, max_frames=4)
    assert table["set_id"].tolist() == ["ann/clip1", "ann/clip2", "bob/s"]
    assert table["label"].tolist() == [0, 0, 1]
    # bins of 10 / 4 = 2.5 frames, centres 1.25, 3.75, 6.25, 8.75
    assert [Path(p).name for p in table["frames"][0]] == [
        "f01.png",
        "f03.png",
        "f06.png",
        "f08.png",
    ]
    assert len(folders.set_folder(tmp_path)["frames"][0]) == 10


def test_even_indices():
    assert folders.even_indices(20, 4) == [2, 7, 12, 17]
    assert folders.even_indices(3, 5) == [0, 1, 2]
    assert folders.even_indices(7, None) == list(range(7))
    with pytest.raises(ValueError, match="max_frames must be positive"):
        folders.even_indices(5, 0)


def test_set_folder_reads_videos_evenly(tmp_path):
    write_video(tmp_path / "carl" / "talk.avi", 20)
    table = folders.set_folder(tmp_path, max_frames=4)
    assert table["set_id"].tolist() == ["carl/talk.avi"]
    frames = table["frames"][0]
    assert frames == [(str(tmp_path / "carl" / "talk.avi"), i) for i in (2, 7, 12, 17)]
    images = folders.load_frames(frames)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), [20, 70, 120, 170], atol=2)
    reordered = folders.read_video_frames(frames[0][0], [17, 2, 17])
    np.testing.assert_array_equal(reordered, images[[3, 0, 3]])
    with pytest.raises(ValueError, match="ends before frame 20"):
        folders.read_video_frames(frames[0][0], [25])


def test_video_frames_streams_every_step_th_frame(tmp_path):
    path = tmp_path / "talk.avi"
    write_video(path, 20)
    streamed = list(folders.video_frames(path, step=6))
    assert [index for index, _ in streamed] == [0, 6, 12, 18]
    expected = folders.read_video_frames(path, [0, 6, 12, 18])
    np.testing.assert_array_equal(np.stack([frame for _, frame in streamed]), expected)
    with pytest.raises(ValueError, match="step must be a positive int"):
        next(folders.video_frames(path, step=0))
    with pytest.raises(ValueError, match="cannot open video"):
        next(folders.video_frames(tmp_path / "missing.avi"))


def test_load_frames_mixes_images_and_videos(tmp_path):
    write_video(tmp_path / "v.avi", 5, size=8)
    write_png(tmp_path / "a.png", 200)
    images = folders.load_frames([str(tmp_path / "a.png"), (str(tmp_path / "v.avi"), 3)])
    np.testing.assert_array_equal(images[0], np.full((8, 8, 3), 200, np.uint8))
    assert abs(images[1].mean() - 30) < 2


def test_bad_layouts_raise(tmp_path):
    with pytest.raises(ValueError, match="dataset folder not found"):
        folders.image_folder(tmp_path / "missing")
    (tmp_path / "ann").mkdir()
    with pytest.raises(ValueError, match="no images"):
        folders.image_folder(tmp_path)
    with pytest.raises(ValueError, match="no image sets or videos"):
        folders.set_folder(tmp_path)
    write_png(tmp_path / "ann" / "loose.png", 1)
    with pytest.raises(ValueError, match="directly in an identity folder"):
        folders.set_folder(tmp_path)
    write_png(tmp_path / "big.png", 1, size=16)
    write_png(tmp_path / "small.png", 1, size=8)
    with pytest.raises(ValueError, match="share one size"):
        folders.load_frames([str(tmp_path / "big.png"), str(tmp_path / "small.png")])

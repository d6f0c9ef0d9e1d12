"""Generic dataset layouts: one folder per identity holding images, image sets or videos.

``image_folder(root)`` reads ``root/<identity>/<image>``; ``set_folder(root)`` reads
``root/<identity>/<set>/<frames>`` and ``root/<identity>/<video file>`` (frames sampled evenly
with OpenCV).
Names starting with a dot are ignored; identities and files are sorted, so the tables (and the
integer labels, the identity's index in sorted order) are the same on every machine.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.data.images import load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")

Frame = str | tuple[str, int]


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _is(path: Path, extensions: Sequence[str]) -> bool:
    return path.is_file() and path.suffix.lower() in extensions


def _identity_dirs(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {root}")
    return [p for p in _entries(root) if p.is_dir()]


def image_folder(
    root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> pd.DataFrame:
    """Images of ``root/<identity>/<image>``: columns path, identity, label (int64).

    Identities without images are left out; a folder with no image at all raises ValueError.
    """
    records = [
        (str(path), identity_dir.name)
        for identity_dir in _identity_dirs(root)
        for path in _entries(identity_dir)
        if _is(path, extensions)
    ]
    if not records:
        raise ValueError(f"no images ({', '.join(extensions)}) in {root}/<identity>/")
    frame = pd.DataFrame.from_records(records, columns=["path", "identity"])
    return _with_labels(frame)


def _with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    names = sorted(frame["identity"].unique())
    frame["label"] = frame["identity"].map({name: i for i, name in enumerate(names)})
    frame["label"] = frame["label"].astype(np.int64)
    return frame


def even_indices(count: int, max_frames: int | None) -> list[int]:
    """`max_frames` indices spread evenly over ``range(count)``: the centres of equal bins,
    ``(2 i + 1) * count // (2 * max_frames)``; all of them when `count <= max_frames` or None."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    if max_frames is None or count <= max_frames:
        return list(range(count))
    return [(2 * i + 1) * count // (2 * max_frames) for i in range(max_frames)]


def set_folder(
    root: str | os.PathLike,
    max_frames: int | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    video_extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> pd.DataFrame:
    """Sets of ``root/<identity>/<set>/<frames>`` and ``root/<identity>/<video>``.

    Columns: set_id (``"<identity>/<set or video file name>"``), identity, label (int64), and
    frames: a list of image paths, or of ``(video path, frame index)`` for a video, at most
    `max_frames` of them chosen by `even_indices`. Empty sets and videos without frames are left
    out; loose images directly in an identity folder raise ValueError (use `image_folder`).
    """
    records = []
    for identity_dir in _identity_dirs(root):
        for entry in _entries(identity_dir):
            if entry.is_dir():
                paths = [str(p) for p in _entries(entry) if _is(p, extensions)]
                frames: list[Frame] = [paths[i] for i in even_indices(len(paths), max_frames)]
            elif _is(entry, video_extensions):
                indices = even_indices(video_frame_count(entry), max_frames)
                frames = [(str(entry), i) for i in indices]
            elif _is(entry, extensions):
                raise ValueError(
                    f"{entry} is an image directly in an identity folder; set_folder expects "
                    "<identity>/<set>/<frames> or <identity>/<video> (image_folder reads images)"
                )
            else:
                continue
            if frames:
                records.append((f"{identity_dir.name}/{entry.name}", identity_dir.name, frames))
    if not records:
        raise ValueError(f"no image sets or videos in {root}/<identity>/")
    frame = pd.DataFrame.from_records(records, columns=["set_id", "identity", "frames"])
    return _with_labels(frame)[["set_id", "identity", "label", "frames"]]


def _cv2():
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading videos needs OpenCV, a dependency of keras-faceset: reinstall it "
            "(pip install keras-faceset) or pip install opencv-python-headless"
        ) from err
    return cv2


def _open(path: str | os.PathLike):
    cv2 = _cv2()
    capture = cv2.VideoCapture(os.fspath(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}")
    return cv2, capture


def video_frame_count(path: str | os.PathLike) -> int:
    """Number of frames of a video: the container's count, or counted by decoding if absent."""
    cv2, capture = _open(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            count = 0
            while capture.grab():
                count += 1
        return count
    finally:
        capture.release()


def read_video_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of a video as uint8 RGB (n, H, W, 3).

    The video is decoded once, sequentially (exact, unlike seeking in compressed streams).
    """
    wanted = set(indices)
    if not wanted or min(wanted) < 0:
        raise ValueError(f"frame indices must be a non-empty list of indices >= 0, got {indices}")
    cv2, capture = _open(path)
    found = {}
    try:
        for index in range(max(wanted) + 1):
            if not capture.grab():
                raise ValueError(f"{path} ends before frame {index} (asked for {max(wanted)})")
            if index in wanted:
                found[index] = cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    return np.stack([found[i] for i in indices])


def video_frames(
    video: str | os.PathLike | Iterable[np.ndarray], step: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """Every `step`-th frame of a video as (frame index, frame): of a video file, uint8 RGB
    (H, W, 3) decoded one at a time; of an iterable of frames (e.g. a generator), the frames as
    they come. Memory holds one frame, whatever the video's length."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    if not isinstance(video, (str, os.PathLike)):
        yield from itertools.islice(enumerate(video), 0, None, step)
        return
    cv2, capture = _open(video)
    try:
        index = 0
        while capture.grab():
            if index % step == 0:
                yield index, cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def load_frames(frames: Sequence[Frame]) -> np.ndarray:
    """The frames of one set (image paths and/or (video, index) pairs) as uint8 (n, H, W, 3)."""
    if not frames:
        raise ValueError("frames is empty")
    images: list[np.ndarray | None] = [None] * len(frames)
    by_video: dict[str, list[int]] = {}
    for position, frame in enumerate(frames):
        if isinstance(frame, (str, os.PathLike)):
            images[position] = load_image(frame).numpy()
        else:
            by_video.setdefault(os.fspath(frame[0]), []).append(position)
    for video, positions in by_video.items():
        decoded = read_video_frames(video, [int(frames[p][1]) for p in positions])
        for position, image in zip(positions, decoded, strict=True):
            images[position] = image
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(f"the frames of a set must share one size, got {sorted(shapes)}")
    return np.stack(images)

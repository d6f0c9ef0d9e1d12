"""What a user points the library at, as sets of frames: image files, folders, videos.

An input becomes a named set of frames (`input_sets`): a folder -> its images, a video ->
frames sampled evenly, an image -> a set of one frame. A frame is an image path or a
``(video path, frame index)`` pair (`keras_faceset.data.folders.Frame`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_faceset.data.folders import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Frame,
    even_indices,
    load_frames,
    video_frame_count,
)


def image_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their images (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"{item} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist")
    return paths


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def input_sets(
    inputs: Sequence[str | os.PathLike], max_frames: int | None = 16
) -> list[tuple[str, list[Frame]]]:
    """Each input as a named set of frames: a folder -> its images (`image_paths`), a video ->
    `max_frames` frames sampled evenly (`keras_faceset.data.folders.even_indices`), an image ->
    a set of one frame."""
    sets: list[tuple[str, list[Frame]]] = []
    for item in map(Path, inputs):
        if item.is_file() and is_video(item):
            indices = even_indices(video_frame_count(item), max_frames)
            if not indices:
                raise ValueError(f"{item} has no frames")
            sets.append((str(item), [(str(item), i) for i in indices]))
        else:
            sets.append((str(item), [str(p) for p in image_paths([item])]))
    return sets


def set_inputs(frames: Sequence[Frame]) -> list[str] | list[np.ndarray]:
    """A set's frames as `FaceEmbedder` inputs: image paths as they are (the chip cache keys
    files), video frames decoded to arrays."""
    if all(isinstance(frame, str) for frame in frames):
        return list(frames)
    return list(load_frames(frames))


def frame_label(frame: Frame) -> str:
    """A frame's name in outputs: its path, or ``video.mp4#12`` for frame 12 of a video."""
    return frame if isinstance(frame, str) else f"{frame[0]}#{frame[1]}"

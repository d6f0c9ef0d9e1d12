"""Faces of a video: the in-graph MTCNN batched over sampled frames, every face of every frame
with its frame index (linking the faces of consecutive frames into tracks is the gallery's
`FaceTracker`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from keras_faceset.data.folders import video_frames
from keras_faceset.detect.cascade import Mtcnn, shared_mtcnn

VideoInput = str | os.PathLike | Iterable[np.ndarray]


@dataclass(frozen=True)
class VideoFaces:
    """The faces of sampled video frames, one row per face, ordered by frame, then by score.

    frames: int64 (T,) the index in the video of each sampled frame; counts: int32 (T,) the
    faces found in it. Per face: frame int64 (F,) its frame's index in the video, boxes float32
    (F, 4) x1, y1, x2, y2, scores (F,), landmarks (F, 5, 2) (x, y) in `LANDMARK_NAMES` order.
    """

    frames: np.ndarray
    counts: np.ndarray
    frame: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    ARRAYS = ("frames", "counts", "frame", "boxes", "scores", "landmarks")

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def concatenate(cls, parts: Sequence[VideoFaces]) -> VideoFaces:
        """The frames and faces of `parts`, in order (none: no frame)."""
        if not parts:
            return cls(*_empty())
        return cls(*(np.concatenate([getattr(p, key) for p in parts]) for key in cls.ARRAYS))


def iter_detect_video(
    video: VideoInput,
    detector: Mtcnn | None = None,
    step: int = 1,
    batch_size: int = 32,
) -> Iterator[VideoFaces]:
    """The faces of every `step`-th frame of `video` (a video file, or an iterable of uint8 RGB
    frames (H, W, 3), e.g. a generator, read as it goes), `batch_size` frames at a time through
    `detector` (default: ``shared_mtcnn()``, the process's default detector). One
    `VideoFaces` per batch: memory holds one batch of frames, whatever the video's length.
    Frames of different sizes are padded into a batch with their true sizes
    (each gets what it gets alone)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    detector = detector if detector is not None else shared_mtcnn()
    sampled = video_frames(video, step)
    while batch := list(itertools.islice(sampled, batch_size)):
        yield _detect(detector, batch)


def detect_video(
    video: VideoInput,
    detector: Mtcnn | None = None,
    step: int = 1,
    batch_size: int = 32,
) -> VideoFaces:
    """Every face of every `step`-th frame of `video` with its frame index, in one
    `VideoFaces` (`iter_detect_video`'s batches joined)."""
    return VideoFaces.concatenate(list(iter_detect_video(video, detector, step, batch_size)))


def _detect(detector: Mtcnn, batch: list[tuple[int, np.ndarray]]) -> VideoFaces:
    """One batch of (frame index, frame) through the detector."""
    for index, image in batch:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"frame {index} must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}"
            )
    sizes = np.array([image.shape[:2] for _, image in batch], np.int32)
    padded = np.zeros((len(batch), *sizes.max(axis=0), 3), np.uint8)
    for row, (_, image) in enumerate(batch):
        padded[row, : image.shape[0], : image.shape[1]] = image
    found = {key: value.numpy() for key, value in detector.detect(padded, sizes).items()}
    counts = found["counts"].astype(np.int32)
    valid = np.arange(detector.max_faces)[None] < counts[:, None]  # (B, max_faces)
    frames = np.array([index for index, _ in batch], np.int64)
    return VideoFaces(
        frames=frames,
        counts=counts,
        frame=np.repeat(frames, counts),
        boxes=found["boxes"][valid].astype(np.float32),
        scores=found["scores"][valid].astype(np.float32),
        landmarks=found["landmarks"][valid].astype(np.float32),
    )


def _empty() -> tuple[np.ndarray, ...]:
    return (
        np.zeros(0, np.int64),
        np.zeros(0, np.int32),
        np.zeros(0, np.int64),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        np.zeros((0, 5, 2), np.float32),
    )

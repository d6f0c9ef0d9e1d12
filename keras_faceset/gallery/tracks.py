"""Face tracks in a video: detections on sampled frames linked by box overlap and embedding
similarity, each track a set of frames for a set head.

A detection joins the live track that maximises ``IoU + cos`` among those it may join:
``cos >= link_similarity`` and either ``IoU >= min_iou`` (it stayed in place) or
``cos >= reid_similarity`` (it moved, or came back after a gap). Each track and each
detection is used once per frame, best pairs first (greedy matching, as in IOU trackers).
A track ends after `max_missed` sampled frames without a detection; `pop_ended` hands the
ended tracks over and forgets them, so over a long video the tracker holds only the live ones.

Memory per track is bounded: a running sum of its unit embeddings for linking, and at most
`max_frames` frames (frame index, box, the embedding and features given) kept for the set
head; when a track outgrows them every second kept frame is dropped, so the kept frames stay
spread over the whole track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keras_faceset.vectors import unit_vectors


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes `a` (n, 4) and `b` (m, 4), x1, y1, x2, y2: (n, m)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class Track:
    """One face followed through a video. The kept detections: `frames` (frame indices),
    `boxes`, `embeddings` and `features` (as given to `FaceTracker.update`; features None
    when none were given); `first_frame` and `last_frame` span every detection the track was
    given, `detections` counts them."""

    track_id: int
    first_frame: int
    last_frame: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] | None = None
    detections: int = 0
    missed: int = 0
    total: np.ndarray | None = None

    def add(self, frame: int, box, embedding, features, direction, max_frames: int) -> None:
        self.last_frame, self.detections, self.missed = frame, self.detections + 1, 0
        self.total = direction if self.total is None else self.total + direction
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, np.float64))
        self.embeddings.append(np.asarray(embedding, np.float32))
        if features is not None:
            self.features = [*(self.features or []), np.asarray(features, np.float32)]
        if len(self.frames) > max_frames:
            self.frames, self.boxes = self.frames[::2], self.boxes[::2]
            self.embeddings = self.embeddings[::2]
            self.features = None if self.features is None else self.features[::2]

    @property
    def direction(self) -> np.ndarray:
        """The unit mean of the track's unit embeddings (what a new detection is compared to)."""
        return self.total / max(np.linalg.norm(self.total), 1e-12)


class FaceTracker:
    """Link per-frame face detections into `Track`s (see the module docstring).

    ::

        tracker = FaceTracker(link_similarity=0.3, reid_similarity=0.6)
        for frame, (boxes, embeddings) in enumerate(detections):   # (n, 4), (n, dim)
            track_ids = tracker.update(frame, boxes, embeddings)  # one id per detection
        tracks = tracker.tracks()                                  # every track, by id
    """

    def __init__(
        self,
        link_similarity: float,
        reid_similarity: float,
        min_iou: float = 0.3,
        max_missed: int = 5,
        max_frames: int = 64,
    ):
        if not -1.0 <= link_similarity <= reid_similarity <= 1.0:
            raise ValueError(
                "expected -1 <= link_similarity <= reid_similarity <= 1 (cosine similarities), "
                f"got {link_similarity}, {reid_similarity}"
            )
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        for name, value in (("max_missed", max_missed), ("max_frames", max_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.link_similarity, self.reid_similarity = link_similarity, reid_similarity
        self.min_iou, self.max_missed, self.max_frames = min_iou, max_missed, max_frames
        self._live: list[Track] = []
        self._ended: list[Track] = []
        self._last_frame = -1
        self._next_id = 0

    def update(self, frame: int, boxes, embeddings, features=None) -> list[int]:
        """Add one sampled frame's detections: boxes (n, 4), embeddings (n, dim) and optional
        per-face `features` (n, ...) kept for the set head; returns each detection's track id.
        Frames must come in increasing order."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if frame <= self._last_frame:
            raise ValueError(f"frames must increase: got {frame} after {self._last_frame}")
        directions = np.zeros((0, 1), np.float32)
        if len(boxes):
            directions = unit_vectors(embeddings, name="embeddings")
            if len(directions) != len(boxes):
                raise ValueError(
                    f"got {len(boxes)} boxes and {len(directions)} embeddings for frame {frame}"
                )
        if features is not None and len(features) != len(boxes):
            raise ValueError(f"got {len(boxes)} boxes and {len(features)} features")
        self._last_frame = frame
        assigned = self._match(boxes, directions)
        ids = []
        for i, box in enumerate(boxes):
            track = assigned.get(i)
            if track is None:
                track = Track(self._next_id, frame, frame)
                self._next_id += 1
                self._live.append(track)
            face_features = None if features is None else features[i]
            track.add(
                frame,
                box,
                embeddings[i],
                face_features,
                directions[i].astype(np.float64),
                self.max_frames,
            )
            ids.append(track.track_id)
        matched = {id(track) for track in assigned.values()}
        for track in self._live:
            if id(track) not in matched and track.last_frame != frame:
                track.missed += 1
        self._ended += [t for t in self._live if t.missed >= self.max_missed]
        self._live = [t for t in self._live if t.missed < self.max_missed]
        return ids

    def _match(self, boxes: np.ndarray, embeddings: np.ndarray) -> dict[int, Track]:
        """Detection index -> live track, best ``IoU + cos`` pairs first."""
        if not self._live or len(boxes) == 0:
            return {}
        iou = box_iou(np.stack([t.boxes[-1] for t in self._live]), boxes)
        cos = np.stack([t.direction for t in self._live]) @ embeddings.T.astype(np.float64)
        allowed = (cos >= self.link_similarity) & (
            (iou >= self.min_iou) | (cos >= self.reid_similarity)
        )
        score = np.where(allowed, iou + cos, -np.inf)
        assigned: dict[int, Track] = {}
        for flat in np.argsort(-score, axis=None, kind="stable"):
            t, d = np.unravel_index(flat, score.shape)
            if not np.isfinite(score[t, d]):
                break
            track = self._live[t]
            if d not in assigned and all(track is not other for other in assigned.values()):
                assigned[int(d)] = track
        return assigned

    def tracks(self) -> list[Track]:
        """Every track so far (ended and live) that `pop_ended` has not handed over, by id."""
        return sorted(self._ended + self._live, key=lambda track: track.track_id)

    def pop_ended(self, end_live: bool = False) -> list[Track]:
        """The tracks that have ended (with `end_live`, at the end of the video: the live ones
        too), by id; the tracker forgets them (track ids keep counting up)."""
        ended, self._ended = self._ended, []
        if end_live:
            ended, self._live = ended + self._live, []
        return sorted(ended, key=lambda track: track.track_id)

"""Who is in these photos and videos: every face searched in a `Gallery`.

Photos: each face found (`FaceEmbedder.find_faces`) is a query of one frame. Videos: faces are
found on every `step`-th frame, linked into tracks (`FaceTracker`), and each track, a set of
frames, is aggregated by the gallery's set head into one template and identified, with the
weight the head gave each kept frame. Frames are processed `chunk` at a time and each track
is identified once it ends (`iter_identify_video`), so memory does not grow with the video's
length.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from keras_faceset import zoo
from keras_faceset.data.folders import video_frames
from keras_faceset.data.images import load_image
from keras_faceset.data.inputs import image_paths
from keras_faceset.files import READ_ERRORS
from keras_faceset.gallery.gallery import Gallery, Identification
from keras_faceset.gallery.tracks import FaceTracker, Track


@dataclass
class FaceMatch:
    """One face of a photo: where it is, and who it is (`identification`); for a photo in
    which no face was found (or that could not be read) `box` is None and `error` says why."""

    source: str
    face: int
    box: list[float] | None
    detector_score: float | None
    identification: Identification | None
    error: str | None = None


@dataclass
class TrackMatch:
    """One face track of a video: its span, the frames kept for its template with the set
    head's weight of each, their boxes, and who it is."""

    source: str
    track_id: int
    first_frame: int
    last_frame: int
    detections: int
    frames: list[int]
    weights: list[float]
    boxes: list[list[float]]
    identification: Identification
    best_frames: list[int] = field(default_factory=list)


def identify_photos(
    gallery: Gallery,
    photos: Sequence[str | os.PathLike | np.ndarray],
    k: int = 5,
    fpir: float = 1e-2,
    threshold: float | None = None,
    max_faces: int | None = None,
) -> list[FaceMatch]:
    """Every face of each photo (paths, folders of photos, (H, W, 3) arrays) searched in
    `gallery`, largest face first. A photo that cannot be read, or shows no face, gets one
    row with its `error`; the rest go on."""
    embedder = gallery.embedder
    names, images, matches = [], [], []
    for position, photo in enumerate(_photos(photos)):
        if isinstance(photo, np.ndarray):
            names.append(f"<array {position}>")
            images.append(photo)
            continue
        try:
            images.append(load_image(photo).numpy())
            names.append(os.fspath(photo))
        except READ_ERRORS as error:
            matches.append(FaceMatch(os.fspath(photo), 0, None, None, None, str(error)))
    if not images:
        return matches
    found = embedder.find_faces(images, max_faces=max_faces)
    answers = iter([])
    if len(found):
        outputs = embedder.frame_outputs(found.chips)
        templates, _, _ = embedder.set_embeddings(outputs, [[i] for i in range(len(found))])
        ordinal = np.arange(len(found)) - np.searchsorted(found.image, found.image)
        labels = [f"{names[i]}#face{n}" for i, n in zip(found.image, ordinal, strict=True)]
        answers = iter(gallery.search_vectors(templates, k, fpir, threshold, labels))
    face = 0
    for position, name in enumerate(names):
        if found.face_count[position] == 0:
            matches.append(FaceMatch(name, 0, None, None, None, f"no face found in {name}"))
        for ordinal in range(found.face_count[position]):
            box = [round(float(v), 1) for v in found.boxes[face]]
            score = round(float(found.scores[face]), 4)
            matches.append(FaceMatch(name, ordinal, box, score, next(answers)))
            face += 1
    return matches


def tracker_for(gallery: Gallery, max_missed: int = 5, max_frames: int = 64) -> FaceTracker:
    """A `FaceTracker` with the gallery backbone's verification thresholds: a detection may
    join a track at cosine similarity ``1 - d(FAR 1e-2)`` in place, ``1 - d(FAR 1e-3)`` after
    a jump (``d``: the image preset's cosine-distance thresholds)."""
    backbone = zoo.get_preset(gallery.embedder.preset.backbone_preset)
    thresholds = backbone.thresholds
    if not {"1e-02", "1e-03"} <= set(thresholds):
        raise ValueError(f"{backbone.name} has no thresholds at FAR 1e-2 and 1e-3 to track with")
    return FaceTracker(
        link_similarity=1.0 - thresholds["1e-02"],
        reid_similarity=1.0 - thresholds["1e-03"],
        max_missed=max_missed,
        max_frames=max_frames,
    )


def identify_video(
    gallery: Gallery,
    video: str | os.PathLike | Iterable[np.ndarray],
    step: int = 5,
    k: int = 5,
    fpir: float = 1e-2,
    threshold: float | None = None,
    tracker: FaceTracker | None = None,
    min_detections: int = 1,
    chunk: int = 32,
    name: str = "<video>",
) -> list[TrackMatch]:
    """The face tracks of `video` (every `step`-th frame searched for faces), each identified
    by its set-head template, by track id; see `iter_identify_video`."""
    found = iter_identify_video(
        gallery, video, step, k, fpir, threshold, tracker, min_detections, chunk, name
    )
    return sorted(found, key=lambda match: match.track_id)


def iter_identify_video(
    gallery: Gallery,
    video: str | os.PathLike | Iterable[np.ndarray],
    step: int = 5,
    k: int = 5,
    fpir: float = 1e-2,
    threshold: float | None = None,
    tracker: FaceTracker | None = None,
    min_detections: int = 1,
    chunk: int = 32,
    name: str = "<video>",
) -> Iterator[TrackMatch]:
    """The face tracks of `video` (a video file, or an iterable of uint8 RGB frames (H, W, 3),
    any length: a generator is read as it goes), each identified by its set-head template as
    soon as it has ended (at most `chunk` sampled frames later), in the order they end. Every
    `step`-th frame is searched for faces; tracks with fewer than `min_detections` detections
    are left out. Memory holds one chunk of frames and the live tracks, whatever the video's
    length: ended tracks are handed over (`FaceTracker.pop_ended`) and forgotten. `tracker`
    defaults to `tracker_for(gallery)`; track labels are `<video path or name>#track<id>`."""
    tracker = tracker if tracker is not None else tracker_for(gallery)
    source = name if not isinstance(video, (str, os.PathLike)) else os.fspath(video)
    sampled = video_frames(video, step)
    frames: list[tuple[int, np.ndarray]] = []
    for frame in sampled:
        frames.append(frame)
        if len(frames) == chunk:
            _track(gallery.embedder, tracker, frames)
            frames = []
            ended = tracker.pop_ended()
            yield from _identify_tracks(gallery, source, ended, k, fpir, threshold, min_detections)
    if frames:
        _track(gallery.embedder, tracker, frames)
    ended = tracker.pop_ended(end_live=True)
    yield from _identify_tracks(gallery, source, ended, k, fpir, threshold, min_detections)


def _identify_tracks(
    gallery: Gallery, source: str, tracks: list[Track], k, fpir, threshold, min_detections: int
) -> list[TrackMatch]:
    """Each of `tracks` (with at least `min_detections` detections) identified by its
    set-head template."""
    tracks = [t for t in tracks if t.detections >= min_detections]
    if not tracks:
        return []
    vectors = {"frame_embeddings": np.concatenate([t.embeddings for t in tracks])}
    if tracks[0].features is not None:
        vectors["frame_features"] = np.concatenate([t.features for t in tracks])
    sizes = np.array([len(t.frames) for t in tracks])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows = [range(s, s + n) for s, n in zip(starts, sizes, strict=True)]
    templates, weights, _ = gallery.embedder.set_embeddings(vectors, rows)
    labels = [f"{source}#track{t.track_id}" for t in tracks]
    answers = gallery.search_vectors(templates, k, fpir, threshold, labels)
    return [
        _track_match(source, track, w[: len(track.frames)], answer)
        for track, w, answer in zip(tracks, weights, answers, strict=True)
    ]


def _track(embedder, tracker: FaceTracker, frames: list[tuple[int, np.ndarray]]) -> None:
    """Find the faces of a chunk of frames and give them to `tracker`, frame by frame."""
    found = embedder.find_faces([image for _, image in frames])
    outputs = embedder.frame_outputs(found.chips) if len(found) else {}
    for position, (index, _) in enumerate(frames):
        rows = np.flatnonzero(found.image == position)
        embeddings = outputs["frame_embeddings"][rows] if len(rows) else np.zeros((0, 1))
        features = outputs.get("frame_features")
        tracker.update(
            index, found.boxes[rows], embeddings, None if features is None else features[rows]
        )


def _track_match(source: str, track: Track, weights, answer: Identification) -> TrackMatch:
    weights = [round(float(w), 6) for w in weights]
    best = [track.frames[i] for i in np.argsort(weights, kind="stable")[::-1][:4]]
    return TrackMatch(
        source,
        track.track_id,
        track.first_frame,
        track.last_frame,
        track.detections,
        list(track.frames),
        weights,
        [[round(float(v), 1) for v in box] for box in track.boxes],
        answer,
        best,
    )


def _photos(photos) -> list:
    """Paths (folders expanded to their photos) and arrays, in order."""
    if isinstance(photos, (str, os.PathLike, np.ndarray)):
        photos = [photos]
    out = []
    for photo in photos:
        out += [photo] if isinstance(photo, np.ndarray) else image_paths([photo])
    return out

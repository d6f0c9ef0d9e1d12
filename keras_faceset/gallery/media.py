"""What a gallery is given, as media, and the usable faces in them.

A *media* item is one photo (a path or an (H, W, 3) array), one video (frames sampled evenly
with OpenCV, `keras_faceset.data.inputs.input_sets`) or one clip given as an (T, H, W, 3) array;
a folder stands for each photo in it. A video or a clip is one set of frames. `extract_faces`
aligns every frame with the embedder's preset, keeps the frames where a face was found and runs
the embedder's frame model on those only. A media that cannot be read (a missing, unreadable or
corrupt file, a folder without photos) is kept as an item with its `error`, so the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.align.pipeline import to_rgb_uint8
from keras_faceset.data.images import load_image
from keras_faceset.data.inputs import frame_label, image_paths, input_sets, is_video, set_inputs
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.files import READ_ERRORS
from keras_faceset.gallery.store import Table
from keras_faceset.models.set_inference import head_sets

MediaInput = str | os.PathLike | np.ndarray
"""A photo or video path, a folder of photos, an (H, W, 3) photo or a (T, H, W, 3) clip."""


@dataclass
class MediaItem:
    """One photo, video or clip: its name, kind and the frames the embedder reads; `error`
    says why a media that could not be read has no frames."""

    source: str
    kind: str
    frames: list = field(repr=False)
    labels: list[str] = field(repr=False)
    error: str | None = None


@dataclass
class Faces:
    """The usable faces of a list of media, one row each (column ``item``: which media):
    frame label, box, detector score, faces in the frame, and the frame outputs
    (`FaceEmbedder.frame_outputs`) as vectors; `without_face` the frames of each media
    where none was found; `errors` why each media could not be read (None: it was)."""

    table: Table
    without_face: list[list[str]]
    errors: list[str | None]

    def rows(self, item: int) -> np.ndarray:
        return np.flatnonzero(self.table.frame["item"].to_numpy() == item)


def media_items(media: MediaInput | Sequence[MediaInput], max_frames: int | None = 16):
    """`media` (one input or a list) as `MediaItem`s: a folder as each of its photos; a video
    that cannot be read, a missing path or a folder without photos as an item with its error."""
    if isinstance(media, (str, os.PathLike, np.ndarray)):
        media = [media]
    items: list[MediaItem] = []
    for position, item in enumerate(media):
        if isinstance(item, np.ndarray):
            if item.ndim == 4:
                labels = [f"<clip {position}>#{t}" for t in range(len(item))]
                items.append(MediaItem(f"<clip {position}>", "clip", list(item), labels))
            else:
                items.append(
                    MediaItem(f"<array {position}>", "array", [item], [f"<array {position}>"])
                )
            continue
        kind = "video" if Path(item).is_file() and is_video(item) else "image"
        try:
            if kind == "video":
                name, frames = input_sets([item], max_frames)[0]
                labels = list(map(frame_label, frames))
                items.append(MediaItem(name, kind, set_inputs(frames), labels))
            else:
                paths = image_paths([item])
                items.extend(MediaItem(str(p), kind, [str(p)], [str(p)]) for p in paths)
        except READ_ERRORS as error:
            items.append(MediaItem(os.fspath(item), kind, [], [], str(error)))
    if not items:
        raise ValueError("no media given")
    return items


def extract_faces(embedder: FaceEmbedder, items: Sequence[MediaItem]) -> Faces:
    """The usable faces of `items`: with ``align="preset"`` the frames where MTCNN found a face,
    with ``"center"`` (no detection) every frame. A media whose frames cannot be read (a
    corrupt photo) is left out with its error (`Faces.errors`); the others go on."""
    errors = [item.error for item in items]
    try:
        return _faces(embedder, items, errors)
    except READ_ERRORS:
        unreadable = {i: _read_error(item) for i, item in enumerate(items) if item.frames}
        unreadable = {i: error for i, error in unreadable.items() if error is not None}
        if not unreadable:
            raise  # not a media's fault
    errors = [unreadable.get(i, error) for i, error in enumerate(errors)]
    kept = [
        item if i not in unreadable else MediaItem(item.source, item.kind, [], [], errors[i])
        for i, item in enumerate(items)
    ]
    return _faces(embedder, kept, errors)


def _read_error(item: MediaItem) -> str | None:
    """Why a frame of `item` cannot be decoded, or None when all can."""
    try:
        for frame in item.frames:
            if isinstance(frame, np.ndarray):
                to_rgb_uint8(frame, item.source)
            else:
                load_image(frame)
    except READ_ERRORS as error:
        return str(error)
    return None


def _faces(embedder: FaceEmbedder, items: Sequence[MediaItem], errors: list) -> Faces:
    """`extract_faces` of items whose frames can all be read (an unreadable one raises)."""
    frames = [frame for item in items for frame in item.frames]
    owner = np.repeat(np.arange(len(items)), [len(item.frames) for item in items])
    labels = [label for item in items for label in item.labels]
    columns = {"item": owner, "frame": labels}
    if not frames:  # no media could be read
        return Faces(Table(pd.DataFrame(columns), {}), [[] for _ in items], errors)
    if embedder.align == "preset":
        aligned = embedder.align_faces(frames)
        chips, usable = aligned.chips, ~aligned.fallback
        boxes = aligned.boxes
        columns.update(detector_score=aligned.confidence, face_count=aligned.face_count)
    else:
        chips, usable = embedder.chips(frames), np.ones(len(frames), bool)
        boxes = np.full((len(frames), 4), np.nan, np.float32)
        columns.update(
            detector_score=np.full(len(frames), np.nan), face_count=-np.ones(len(frames))
        )
    for axis, name in enumerate(("x1", "y1", "x2", "y2")):
        columns[name] = boxes[:, axis]
    frame = pd.DataFrame(columns).astype({"face_count": np.int32})
    vectors = embedder.frame_outputs(chips[usable]) if usable.any() else {}
    table = Table(frame[usable].reset_index(drop=True), vectors)
    without: list[list[str]] = [[] for _ in items]
    for position in np.flatnonzero(~usable):
        without[owner[position]].append(labels[position])
    return Faces(table, without, errors)


def set_templates(head, faces: Table, rows: Sequence[np.ndarray]) -> np.ndarray:
    """The set head's unit embeddings (N, D) of the sets of `faces` rows `rows` (each
    non-empty); `head_sets` batches them by length."""
    vectors = faces.vectors
    return head_sets(head, vectors["frame_embeddings"], rows, vectors.get("frame_features"))[0]

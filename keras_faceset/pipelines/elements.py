"""What a gallery-embedding pipeline embeds: inputs as elements, elements as rows.

An *element* is one thing that becomes one row or one dead letter: for an image preset one
image (a folder stands for each of its images, a video for each sampled frame), for a set
preset one set (a folder of frames, a video, one image, or the rows of a manifest sharing a
``set_id``). `embed_elements` runs the gallery's face extraction
(`keras_faceset.gallery.media.extract_faces`: `FaceEmbedder` alignment, usable faces only,
the frame model) and the embedder's set head, so a row holds what `FaceEmbedder` gives in
process. Nothing here needs Apache Beam.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_faceset.data.folders import Frame
from keras_faceset.data.images import load_image
from keras_faceset.data.inputs import frame_label, image_paths, input_sets, is_video, set_inputs
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.files import READ_ERRORS
from keras_faceset.gallery.media import MediaItem, extract_faces
from keras_faceset.gallery.store import Table

NO_FACE = "no face found"


@dataclass
class Element:
    """One image or set to embed: its set id, name (`source`), kind ("image", "frame" of a
    video, "set"), frames (image paths or (video, index) pairs), and `error` when it could not
    be read at all; `skipped` lists "frame: reason" for frames of a set that could not be."""

    set_id: str
    source: str
    kind: str
    frames: list[Frame] = field(default_factory=list)
    error: str | None = None
    skipped: list[str] = field(default_factory=list)


@dataclass
class DeadLetter:
    """An input that gave no row, and why."""

    source: str
    set_id: str
    reason: str

    def record(self) -> dict:
        return {"source": self.source, "set_id": self.set_id, "reason": self.reason}


@dataclass
class Embedded:
    """One row of the media table and its faces (rows of the embeddings table, in order)."""

    media_id: int
    media: dict
    embedding: np.ndarray
    faces: Table


def media_id(source: str) -> int:
    """A deterministic 63-bit id of an element's name: the same input gets the same id in
    every run, on every worker."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def expand(source: str, set_id: str | None, per_image: bool, max_frames: int | None):
    """The elements of one input: with `per_image` each image of a folder (set id: its
    folder) and each sampled frame of a video (set id: the video), else the whole input as one
    set (set id: the input). An input that cannot be read is one element with its error."""
    source = os.fspath(source)
    if is_url(source):  # one image on a remote filesystem: no folder listing, no video
        parent = source.rsplit("/", 1)[0]
        if per_image:
            return [Element(set_id or parent, source, "image", [source])]
        return [Element(set_id or source, source, "set", [source])]
    try:
        if not per_image:
            ((name, frames),) = input_sets([source], max_frames)
            return [Element(set_id or name, name, "set", frames)]
        if Path(source).is_file() and is_video(source):
            ((name, frames),) = input_sets([source], max_frames)
            return [Element(set_id or name, frame_label(f), "frame", [f]) for f in frames]
        return [
            Element(set_id or str(path.parent), str(path), "image", [str(path)])
            for path in image_paths([source])
        ]
    except READ_ERRORS as error:
        kind = "image" if per_image else "set"
        return [Element(set_id or source, source, kind, [], str(error))]


def is_url(path: str) -> bool:
    """A path on a filesystem TensorFlow reads by URL (gs://, s3:// with tensorflow-io,
    hdfs://, file://)."""
    return "://" in path


def load_url(url: str) -> np.ndarray:
    """The image at `url`, uint8 RGB, upright (`load_image` through TensorFlow's filesystems);
    ValueError naming the URL when it cannot be read or decoded."""
    import tensorflow as tf

    try:
        return load_image(tf.constant(url)).numpy()
    except tf.errors.OpError as error:
        raise ValueError(f"cannot read image {url}: {error.message}") from error


def merge_set(set_id: str, sources: Sequence[str], max_frames: int | None) -> Element:
    """One set from the manifest rows sharing `set_id`: the frames of each source (sorted),
    a source that cannot be read named in `skipped`."""
    frames, skipped = [], []
    for source in sorted(sources):
        element = expand(source, set_id, False, max_frames)[0]
        frames += element.frames
        if element.error is not None:
            skipped.append(f"{source}: {element.error}")
    error = None if frames else "; ".join(skipped)
    return Element(set_id, set_id, "set", frames, error, skipped if frames else [])


def embed_elements(embedder: FaceEmbedder, elements: Sequence[Element]) -> list:
    """An `Embedded` or a `DeadLetter` per element, in order. Frames without a face are left
    out of their set (listed in its ``skipped``); an element with no usable face, or with a
    frame that cannot be decoded, is a dead letter ("no face found", or why)."""
    items = [_media_item(element) for element in elements]
    faces = extract_faces(embedder, items)
    rows = [faces.rows(i) for i in range(len(items))]
    usable = [i for i, r in enumerate(rows) if len(r)]
    vectors = faces.table.vectors
    if usable:
        embeddings, weights, _ = embedder.set_embeddings(vectors, [rows[i] for i in usable])
    model, version = _model_name(embedder), embedder.frame_key
    results: list = []
    done = iter(range(len(usable)))
    for i, element in enumerate(elements):
        error = faces.errors[i]
        if not len(rows[i]):
            results.append(DeadLetter(element.source, element.set_id, error or NO_FACE))
            continue
        k = next(done)
        count = len(rows[i])
        skipped = element.skipped + [f"{label}: {NO_FACE}" for label in faces.without_face[i]]
        identifier = media_id(element.source)
        table = faces.table.take(rows[i])
        frame = table.frame.drop(columns="item")
        frame.insert(0, "set_id", element.set_id)
        frame.insert(0, "media_id", np.int64(identifier))
        frame["weight"] = weights[k][:count].astype(np.float32)
        media = {
            "media_id": identifier,
            "set_id": element.set_id,
            "source": element.source,
            "kind": element.kind,
            "frames": len(items[i].frames),
            "faces": count,
            "weights": weights[k][:count].astype(np.float32).tolist(),
            "skipped": skipped,
            "model": model,
            "model_version": version,
        }
        results.append(Embedded(identifier, media, embeddings[k], Table(frame, table.vectors)))
    return results


def _media_item(element: Element) -> MediaItem:
    """The gallery's `MediaItem` of an element (video frames decoded here)."""
    if element.error is not None:
        return MediaItem(element.source, element.kind, [], [], element.error)
    try:
        frames = [
            load_url(frame) if isinstance(frame, str) and is_url(frame) else frame
            for frame in set_inputs(element.frames)
        ]
    except READ_ERRORS as error:
        return MediaItem(element.source, element.kind, [], [], str(error))
    return MediaItem(element.source, element.kind, frames, list(map(frame_label, element.frames)))


def _model_name(embedder: FaceEmbedder) -> str:
    name = embedder.preset.name
    return name if embedder.model_file is None else f"{name}:{embedder.model_file.name}"

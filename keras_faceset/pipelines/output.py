"""The folder a gallery-embedding pipeline writes, read back, and enrolled into a gallery.

::

    OUTPUT/
      media-00000-of-00008.parquet        one row per embedded image or set
      embeddings-00000-of-00008.parquet   one row per face used, with its frame outputs
      dead-letter.jsonl                   per input that gave no row: source, set_id, reason
      summary.json                        counts, model and the shard files; written last

The tables are the gallery's (`keras_faceset.gallery.store.write_table` writes them, with page
checksums and vectors as fixed-size float32 lists, and `read_table` reads them). The media
table has the gallery's media columns (media_id, source, kind, frames, faces) with the input's
``set_id`` where a gallery has its person, plus ``weights`` (per face, summing to 1),
``skipped`` (frames left out: "frame: reason"), ``model``, ``model_version`` (the embedder's
`FaceEmbedder.frame_key`, what a gallery checks) and the unit ``embedding``. The embeddings
table has the gallery's face columns (media_id, set_id, frame, x1, y1, x2, y2,
detector_score, face_count), the face's ``weight`` and the frame outputs (frame_embeddings,
and frame_features for heads that read them): what `Gallery.add_frames` enrols.

A media id is a digest of the input's name and each row goes to shard ``media_id % shards``,
sorted by id: a re-run writes the same files, and `summary.json` names the shards of the run,
so rows of an earlier run with another shard count are never read twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.gallery import AddReport, Gallery, GalleryModelError
from keras_faceset.gallery.store import Table, read_table
from keras_faceset.pipelines.elements import DeadLetter, Embedded

MEDIA, FACES = "media", "embeddings"
DEAD_LETTER = "dead-letter.jsonl"
SUMMARY = "summary.json"
MEDIA_COLUMNS = {
    "media_id": np.int64,
    "set_id": str,
    "source": str,
    "kind": str,
    "frames": np.int64,
    "faces": np.int64,
    "weights": object,
    "skipped": object,
    "model": str,
    "model_version": str,
}


def shard_name(table: str, index: int, shards: int) -> str:
    """``media-00003-of-00008.parquet``."""
    return f"{table}-{index:05d}-of-{shards:05d}.parquet"


def shard_tables(rows: Sequence[Embedded]) -> tuple[Table, Table]:
    """The media and embeddings tables of one shard's rows, sorted by media id."""
    rows = sorted(rows, key=lambda row: row.media_id)
    frame = pd.DataFrame([row.media for row in rows], columns=list(MEDIA_COLUMNS))
    frame = frame.astype({key: t for key, t in MEDIA_COLUMNS.items() if t is not object})
    if not rows:
        return Table(frame, {}), Table(pd.DataFrame({"media_id": []}), {})
    media = Table(frame, {"embedding": np.stack([row.embedding for row in rows])})
    return media, Table.concat([row.faces for row in rows])


def dead_letter_lines(dead: Sequence[DeadLetter]) -> str:
    """The dead-letter file: one JSON object per line, sorted by source."""
    records = sorted((d.record() for d in dead), key=lambda r: (r["source"], r["reason"]))
    return "".join(json.dumps(record) + "\n" for record in records)


def summary(shards: Sequence[dict], dead: int) -> dict:
    """summary.json from the shards' reports ({"media", "embeddings", "rows", "faces",
    "models"}) and the number of dead letters."""
    shards = sorted(shards, key=lambda s: s["media"])
    rows = sum(s["rows"] for s in shards)
    models = sorted({model for s in shards for model in s["models"]})
    return {
        "inputs": rows + dead,
        "embedded": rows,
        "faces": sum(s["faces"] for s in shards),
        "dead_letter": dead,
        "models": models,
        "shards": [[s["media"], s["embeddings"]] for s in shards],
    }


def read_output(output: str | os.PathLike) -> tuple[Table, Table, pd.DataFrame, dict]:
    """A finished pipeline output (a local folder): the media table, the embeddings table,
    the dead letters (source, set_id, reason) and the summary."""
    folder = Path(output)
    if not (folder / SUMMARY).is_file():
        raise FileNotFoundError(
            f"{folder} has no {SUMMARY}: it is not the output of a finished embed_gallery run "
            "(the job failed or is still running); run it again, it rewrites the same rows"
        )
    info = json.loads((folder / SUMMARY).read_text())
    media = Table.concat([read_table(folder / name) for name, _ in info["shards"]])
    faces = Table.concat([read_table(folder / name) for _, name in info["shards"]])
    lines = (folder / DEAD_LETTER).read_text().splitlines()
    columns = ["source", "set_id", "reason"]
    dead = pd.DataFrame([json.loads(line) for line in lines], columns=columns)
    return media, faces, dead, info


def add_to_gallery(
    gallery: Gallery,
    output: str | os.PathLike,
    person: Callable[[str], str] | None = None,
    append: bool = False,
) -> list[AddReport]:
    """Enrol what a pipeline embedded into `gallery` (made with the same model): each media
    row with its faces' frame outputs (`Gallery.add_frames`), the person named by
    ``person(set_id)`` (default: the set id's last path part, e.g. a person's folder)."""
    media, faces, _, _ = read_output(output)
    if not len(media):
        raise ValueError(f"{output} holds no embedded rows (every input is in its {DEAD_LETTER})")
    wanted = gallery.metadata["model"]["frame_key"]
    versions = sorted(set(media.frame["model_version"]))
    if versions != [wanted]:
        raise GalleryModelError(
            f"{output} was embedded by {', '.join(versions)}; gallery {gallery.path} holds "
            f"{wanted}: embed with the gallery's model or create a gallery for this one"
        )
    name = person or (lambda set_id: Path(set_id).name)
    rows = faces.frame.groupby("media_id", sort=False).indices
    people: dict[str, list[dict]] = {}
    for media_row in media.frame.itertuples():
        taken = rows[media_row.media_id]
        given = {key: value[taken] for key, value in faces.vectors.items()}
        people.setdefault(name(media_row.set_id), []).append({**given, "source": media_row.source})
    return gallery.add_frames(people, append=append)

"""`Gallery`: enrol people from photos and videos, identify faces against them (1:N, open set).

Each person has one template, the preset's set head over all of the person's usable faces
(`FaceEmbedder`'s set embedding: for an image preset the normalised mean of the unit frame
embeddings, for nan/qan the attention-weighted one), recomputed whenever media are added; the
per-face frame outputs are kept, so templates can be rebuilt. With ``templates="media"`` each
photo or video is a template of its own and a person scores the best of theirs.

Open set: `search` answers "unknown" unless the best score reaches a threshold chosen at a
false positive identification rate, FPIR = (non-enrolled probes whose best score >= t) /
(non-enrolled probes). `calibrate` estimates it on the gallery itself: each enrolled person in
turn is treated as not enrolled, their media searched against everyone else's templates, and
t is the loosest threshold those best scores reach at most ``floor(FPIR * probes)`` times. A
gallery too small to calibrate uses the preset's LFW verification threshold at FAR = FPIR, and
says so in every answer.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset import zoo
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.gallery.index import KINDS, VectorIndex, index_kind, make_index
from keras_faceset.gallery.media import (
    Faces,
    MediaInput,
    MediaItem,
    extract_faces,
    media_items,
    set_templates,
)
from keras_faceset.gallery.store import GalleryFileError, GalleryStore, Table, Version

UNKNOWN = "unknown"
TEMPLATES = ("person", "media")
MIN_CALIBRATION_PEOPLE = 10
"""`calibrate` needs this many people and at least ``1 / fpir`` probes (their media)."""


class GalleryModelError(ValueError):
    """A gallery used with another model than the one that made its templates."""


@dataclass
class AddReport:
    """What `Gallery.add` did for one person: enrolled or not, the media and faces used, each
    media left out with why (``skipped_media``: "no face found", or why it could not be read),
    and the frames of kept media in which no face was found."""

    person: str
    enrolled: bool = False
    media: int = 0
    faces: int = 0
    skipped_media: dict[str, str] = field(default_factory=dict)
    frames_without_face: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class Identification:
    """One query's answer: ``person`` is the best match when its ``score`` (cosine
    similarity) reaches ``threshold``, else "unknown"; None (with ``error``) when the query
    held no usable face. ``candidates``: the top-k people with their scores, best first;
    ``faces``: the query's usable faces (0 for a given vector)."""

    query: str
    person: str | None
    score: float | None
    threshold: float
    threshold_source: str
    candidates: list[tuple[str, float]] = field(default_factory=list)
    faces: int = 0
    error: str | None = None


class Gallery:
    """A folder of enrolled people (layout: `keras_faceset.gallery.store`).

    Make one with `Gallery.create`, reopen it with `Gallery.open`. Each write (`add`,
    `remove`, `calibrate`, `repair`) produces a new version under a writer lock; any number of
    processes may read and search meanwhile. A `Gallery` object answers from the version it
    last read or wrote (`refresh` reads the newest).
    """

    def __init__(self, store: GalleryStore, version: Version, embedder: FaceEmbedder | None):
        self._store, self._version, self._embedder, self._head = store, version, embedder, None

    # -- making, opening, repairing ----------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        model: str | FaceEmbedder = "dlib_resnet",
        templates: str = "person",
        index: str = "auto",
    ) -> Gallery:
        """A new, empty gallery in folder `path`.

        Args:
            model: a preset name (`keras_faceset.zoo.list_models`) or a `FaceEmbedder`.
            templates: "person" (one set-head template per person) or "media" (one per
                photo or video).
            index: "auto" (exact search up to `index.AUTO_EXACT_MAX` templates, HNSW beyond),
                "exact" or "hnsw".
        """
        if templates not in TEMPLATES:
            raise ValueError(f"unknown templates {templates!r}; expected one of {TEMPLATES}")
        if index not in KINDS:
            raise ValueError(f"unknown index {index!r}; expected one of {KINDS}")
        embedder = model if isinstance(model, FaceEmbedder) else FaceEmbedder(model)
        dim = embedder.preset.embedding_dim
        store = GalleryStore(path)
        store.root.mkdir(parents=True, exist_ok=True)
        with store.writer():
            if store.exists():
                raise FileExistsError(f"{path} already holds a gallery: open it with Gallery.open")
            empty = Version(
                "",
                {
                    "model": model_identity(embedder),
                    "templates": templates,
                    "index": index,
                    "calibration": {},
                    "next_person_id": 0,
                    "next_media_id": 0,
                    "created": _now(),
                },
                _table(PEOPLE, {"template": np.zeros((0, dim), np.float32)}),
                _table(MEDIA, {"embedding": np.zeros((0, dim), np.float32)}),
                make_index(index, dim),
            )
            faces = _table(FACES, {"frame_embeddings": np.zeros((0, dim), np.float32)})
            gallery = cls(store, empty, embedder)
            gallery._commit(empty, empty.metadata, empty.people, empty.media, faces, empty.index)
        return gallery

    @classmethod
    def open(cls, path: str | os.PathLike, model: str | FaceEmbedder | None = None) -> Gallery:
        """The gallery in folder `path`. With `model`, first check that it is the gallery's
        (`GalleryModelError` otherwise); without, the gallery's own loads when first needed."""
        store = GalleryStore(path)
        gallery = cls(store, store.read(), None)
        if model is not None:
            embedder = model if isinstance(model, FaceEmbedder) else FaceEmbedder(model)
            gallery._check_model(embedder)
            gallery._embedder = embedder
        return gallery

    @classmethod
    def repair(cls, path: str | os.PathLike, version: str | None = None) -> Gallery:
        """Rebuild the index of the live version from its stored templates, as a new version;
        with `version` (e.g. "v000004", one of the versions kept on disk), roll back to it.

        A damaged Parquet table cannot be rebuilt: the error names it and the kept versions
        whose tables are intact."""
        store = GalleryStore(path)
        with store.writer():
            source = version or store.current()
            try:
                metadata = store.metadata(source)
                people, media = store.table(source, "people"), store.table(source, "media")
                store.table(source, "embeddings")
            except (GalleryFileError, FileNotFoundError) as err:
                intact = [v for v in store.versions() if v != source and store.intact(v)]
                hint = (
                    f"intact versions kept: {', '.join(intact)}; Gallery.repair(path, "
                    f"version={intact[-1]!r}) rolls back to the newest"
                    if intact
                    else "no intact version is kept: enrol the people again"
                )
                raise GalleryFileError(f"{err}; {hint}") from err
            ids, vectors = _templates(metadata["templates"], people, media)
            index = make_index(metadata["index"], vectors.shape[1], len(ids))
            if len(ids):
                index.add(ids, vectors)
            old = Version(source, metadata, people, media, index)
            gallery = cls(store, old, None)
            gallery._commit(
                old, {**metadata, "repaired": f"index rebuilt from {source}"}, index=index
            )
        return gallery

    def refresh(self) -> None:
        """Read the newest version (another process may have written one)."""
        self._version = self._store.read()

    # -- what is in it -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._store.root

    @property
    def version(self) -> str:
        """The name of the version this object reads, e.g. "v000007"."""
        return self._version.name

    @property
    def metadata(self) -> dict:
        return self._version.metadata

    @property
    def index(self) -> VectorIndex:
        return self._version.index

    def __len__(self) -> int:
        return len(self._version.people)

    def list(self) -> pd.DataFrame:
        """One row per person: person, media, faces, added (UTC time of the last add)."""
        people = self._version.people.frame
        return people[["name", "media", "faces", "added"]].rename(columns={"name": "person"})

    @property
    def embedder(self) -> FaceEmbedder:
        """The gallery's model (built from its metadata on first use)."""
        if self._embedder is None:
            model = self.metadata["model"]
            self._embedder = FaceEmbedder(
                model["preset"],
                align=model["align"],
                flip=model["flip"],
                model_file=model["model_file"],
            )
            self._check_model(self._embedder)
        return self._embedder

    @property
    def head(self):
        """The set head that makes templates: the embedder's when it is loaded, else the
        preset's head alone (no backbone is built to enrol frame outputs or repair)."""
        if self._embedder is not None or self.metadata["model"]["model_file"] is not None:
            return self.embedder.head
        if self._head is None:
            self._head = zoo.load(self.metadata["model"]["preset"], form="head")
        return self._head

    def _check_model(self, embedder: FaceEmbedder) -> None:
        stored, given = self.metadata["model"], model_identity(embedder)
        if (stored["preset"], stored["frame_key"]) != (given["preset"], given["frame_key"]):
            raise GalleryModelError(
                f"gallery {self.path} was made with {stored['preset']} ({stored['frame_key']}), "
                f"not {given['preset']} ({given['frame_key']}): embeddings of different models "
                "do not compare. Open it with its own model (Gallery.open(path)) or create a "
                "gallery for this one"
            )

    # -- enrolling ---------------------------------------------------------------------------

    def add(
        self,
        person: str,
        media: MediaInput | Sequence[MediaInput],
        append: bool = False,
        max_frames: int | None = 16,
    ) -> AddReport:
        """Enrol `person` from `media`: photo paths or (H, W, 3) arrays, folders (each photo in
        them), videos and (T, H, W, 3) clips (one set each, `max_frames` frames sampled evenly).

        A name already enrolled raises ValueError unless `append`: then these media join that
        person's and the template is recomputed from all of them. A media that cannot be read
        (missing, unreadable or corrupt) or shows no face is skipped and named in the report's
        ``skipped_media`` with why; a person with no usable face at all is not enrolled
        (``enrolled=False``). Nothing is written unless someone is enrolled.
        """
        return self.add_many({person: media}, append, max_frames)[0]

    def add_many(
        self,
        people: Mapping[str, MediaInput | Sequence[MediaInput]],
        append: bool = False,
        max_frames: int | None = 16,
    ) -> list[AddReport]:
        """`add` for several people, embedded together and written as one version; one
        report per person, in order."""
        self._refuse_duplicates(list(people), append, self._version.people)
        groups = {name: media_items(media, max_frames) for name, media in people.items()}
        items = [item for group in groups.values() for item in group]
        faces = extract_faces(self.embedder, items)
        entries, start = [], 0
        for name, group in groups.items():
            entries.append(_entry(name, group, faces, start))
            start += len(group)
        return self._enrol(entries, append)

    def add_frames(
        self,
        people: Mapping[str, Sequence[np.ndarray | Mapping]],
        append: bool = False,
    ) -> list[AddReport]:
        """Enrol people from frame outputs computed elsewhere by this gallery's model
        (`FaceEmbedder.frame_outputs` of usable faces, e.g. a video track's), written as one
        version: ``{person: [media, ...]}``, a media an array (T, D) of frame embeddings or a
        dict with "frame_embeddings", "frame_features" (for heads that read them) and
        optionally "source" (its name). A media of the wrong shape, with no frames or with
        non-finite values is skipped, as `add` skips an unreadable photo."""
        self._refuse_duplicates(list(people), append, self._version.people)
        dim, features = self.metadata["model"]["embedding_dim"], self.head.feature_shape
        items, tables, counts = [], [], []
        for name, media in people.items():
            counts.append(len(media))
            for position, given in enumerate(media):
                given = dict(given) if isinstance(given, Mapping) else {"frame_embeddings": given}
                source = str(given.pop("source", f"<{name} frames {position}>"))
                vectors, error = _frame_vectors(given, dim, features)
                if error is not None:
                    items.append(MediaItem(source, "frames", [], [], error))
                    continue
                labels = [f"{source}#{t}" for t in range(len(vectors["frame_embeddings"]))]
                nan = np.full(len(labels), np.nan, np.float32)
                columns = {"item": len(items), "frame": labels, "detector_score": nan}
                boxes = dict.fromkeys(("x1", "y1", "x2", "y2"), nan)
                frame = pd.DataFrame({**columns, "face_count": np.int32(-1), **boxes})
                tables.append(Table(frame, vectors))
                items.append(MediaItem(source, "frames", [], labels))
        errors = [item.error for item in items]
        if tables:
            faces = Faces(Table.concat(tables), [[] for _ in items], errors)
        else:  # no media usable
            faces = Faces(Table(pd.DataFrame({"item": []}), {}), [[] for _ in items], errors)
        starts = np.cumsum([0, *counts])
        entries = [
            _entry(name, items[start : start + count], faces, start)
            for name, start, count in zip(people, starts[:-1], counts, strict=True)
        ]
        return self._enrol(entries, append)

    def remove(self, people: str | Sequence[str]) -> None:
        """Remove people (their media, faces and templates); KeyError for a name not enrolled."""
        names = [people] if isinstance(people, str) else list(people)
        with self._store.writer():
            live = self._store.read()
            missing = sorted(set(names) - set(live.people.frame["name"]))
            if missing:
                raise KeyError(f"not enrolled in {self.path}: {', '.join(missing)}")
            rows = live.people.frame["name"].isin(names).to_numpy()
            ids = live.people.frame.loc[rows, "person_id"].to_numpy()
            media_rows = live.media.frame["person_id"].isin(ids).to_numpy()
            faces = self._store.table(live.name, "embeddings")
            people, media = live.people.take(~rows), live.media.take(~media_rows)
            if live.metadata["templates"] == "person":
                live.index.remove(ids)
            else:
                live.index.remove(live.media.frame.loc[media_rows, "media_id"].to_numpy())
            self._commit(
                live,
                live.metadata,
                people,
                media,
                faces.take(~faces.frame["person_id"].isin(ids).to_numpy()),
                _sized(live.metadata, people, media, live.index),
            )

    def _refuse_duplicates(self, names: list[str], append: bool, people: Table) -> None:
        taken = sorted(set(names) & set(people.frame["name"]))
        if taken and not append:
            raise ValueError(
                f"already enrolled in {self.path}: {', '.join(taken)}. Pass append=True to add "
                "these media to them (their templates are recomputed), or choose another name"
            )

    def _enrol(self, entries: list[dict], append: bool) -> list[AddReport]:
        """Write the people of `entries` that have a usable face as one new version."""
        reports = [entry["report"] for entry in entries]
        entries = [entry for entry in entries if entry["report"].enrolled]
        if not entries:
            return reports
        names = [entry["report"].person for entry in entries]
        with self._store.writer():
            live = self._store.read()
            self._refuse_duplicates(names, append, live.people)
            metadata, now = dict(live.metadata), _now()
            ids = dict(zip(live.people.frame["name"], live.people.frame["person_id"], strict=True))
            new_faces, new_media = [], []
            for name, entry in zip(names, entries, strict=True):
                if name not in ids:
                    ids[name] = metadata["next_person_id"]
                    metadata["next_person_id"] += 1
                media_ids = metadata["next_media_id"] + np.arange(len(entry["media"]))
                metadata["next_media_id"] += len(media_ids)
                table = entry["faces"]
                table.frame["person_id"] = ids[name]
                table.frame["media_id"] = media_ids[table.frame.pop("item").to_numpy()]
                new_faces.append(table)
                rows = pd.DataFrame(entry["media"], columns=["source", "kind", "frames", "faces"])
                new_media.append(rows.assign(media_id=media_ids, person_id=ids[name], added=now))
            faces = Table.concat([self._store.table(live.name, "embeddings"), *new_faces])
            faces.frame = faces.frame[list(FACES)]
            added = pd.concat(new_media, ignore_index=True)[list(MEDIA)]
            changed = np.array([ids[name] for name in names], np.int64)
            by_person = faces.frame.groupby("person_id").indices
            by_media = faces.frame.groupby("media_id").indices
            vectors = set_templates(
                self.head,
                faces,
                [by_person[p] for p in changed] + [by_media[m] for m in added["media_id"]],
            )
            media = Table.concat([live.media, Table(added, {"embedding": vectors[len(changed) :]})])
            counts = media.frame.groupby("person_id").agg(
                media=("media_id", "size"), faces=("faces", "sum")
            )
            rows = pd.DataFrame({"person_id": changed, "name": names}).join(counts, on="person_id")
            people = Table.concat(
                [
                    live.people.take(~live.people.frame["person_id"].isin(changed).to_numpy()),
                    Table(
                        rows.assign(added=now)[list(PEOPLE)], {"template": vectors[: len(changed)]}
                    ),
                ]
            )
            index = live.index
            if metadata["templates"] == "person":
                index.remove(np.intersect1d(changed, index.ids))
                index.add(changed, vectors[: len(changed)])
            else:
                index.add(added["media_id"].to_numpy(), vectors[len(changed) :])
            index = _sized(metadata, people, media, index)
            self._commit(live, metadata, people, media, faces, index)
        return reports

    def _commit(
        self,
        base: Version,
        metadata: dict,
        people: Table | None = None,
        media: Table | None = None,
        faces: Table | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        """Write a new version from `base` with what is given (the rest linked unchanged) and
        read from it from now on; call it holding the writer lock."""
        metadata = {**metadata, "written": _now()}
        tables = {"people": people, "media": media, "embeddings": faces}
        name = self._store.commit(metadata, tables, index, base.name or None)
        self._version = Version(
            name,
            metadata,
            base.people if people is None else people,
            base.media if media is None else media,
            base.index if index is None else index,
        )

    # -- searching ---------------------------------------------------------------------------

    def search(
        self,
        queries: MediaInput | Sequence[MediaInput],
        k: int = 5,
        fpir: float = 1e-2,
        threshold: float | None = None,
        max_frames: int | None = 16,
    ) -> list[Identification]:
        """Identify each query (a photo; each photo of a folder; a video or clip as one set):
        its top `k` people, and the best one or "unknown" at the open-set threshold for
        `fpir` (calibrated, else the preset's; `threshold`, a cosine similarity, overrides)."""
        self._require_people()
        limit, source = self._threshold(fpir, threshold)
        items = media_items(queries, max_frames)
        faces = extract_faces(self.embedder, items)
        rows = [faces.rows(i) for i in range(len(items))]
        usable = [i for i, r in enumerate(rows) if len(r)]
        found = iter([])
        if usable:
            vectors = set_templates(self.head, faces.table, [rows[i] for i in usable])
            found = iter(
                self._identify(vectors, [items[i].source for i in usable], k, limit, source)
            )
        answers = []
        for item, face_rows, error in zip(items, rows, faces.errors, strict=True):
            if len(face_rows):
                answers.append(next(found))
                answers[-1].faces = len(face_rows)
            else:
                error = error or f"no face found in {item.source}"
                answers.append(Identification(item.source, None, None, limit, source, error=error))
        return answers

    def search_vectors(
        self,
        vectors,
        k: int = 5,
        fpir: float = 1e-2,
        threshold: float | None = None,
        names: Sequence[str] | None = None,
    ) -> list[Identification]:
        """`search` for query templates (N, D) already made by this gallery's model."""
        self._require_people()
        names = list(names or [f"<query {i}>" for i in range(len(vectors))])
        return self._identify(vectors, names, k, *self._threshold(fpir, threshold))

    def _identify(self, vectors, names, k, threshold, source) -> list[Identification]:
        answers = []
        for name, top in zip(names, self._candidates(vectors, k), strict=True):
            best, score = top[0]
            person = best if score >= threshold else UNKNOWN
            answers.append(Identification(name, person, score, threshold, source, top))
        return answers

    def _owners(self) -> tuple[pd.Series, int]:
        """The person id of each index id, and the most templates one person has."""
        people, media = self._version.people.frame, self._version.media.frame
        if self.metadata["templates"] == "person":
            return pd.Series(people["person_id"].to_numpy(), people["person_id"].to_numpy()), 1
        most = int(media.groupby("person_id").size().max())
        return pd.Series(media["person_id"].to_numpy(), media["media_id"].to_numpy()), most

    def _candidates(self, vectors, k: int) -> list[list[tuple[str, float]]]:
        """The top `k` distinct people of each query, each scoring their best template."""
        people = self._version.people.frame
        names = dict(zip(people["person_id"], people["name"], strict=True))
        owners, most = self._owners()
        scores, ids = self.index.search(vectors, k * most)
        persons = owners.reindex(ids.reshape(-1)).to_numpy().reshape(ids.shape)
        out = []
        for row_scores, row_people in zip(scores, persons, strict=True):
            best: dict[str, float] = {}
            for score, person in zip(row_scores, row_people, strict=True):
                best.setdefault(names[person], float(score))
            out.append(list(best.items())[:k])
        return out

    def _require_people(self) -> None:
        if len(self.index) == 0:
            raise ValueError(f"gallery {self.path} is empty: enrol people with add() first")

    def _threshold(self, fpir: float, threshold: float | None) -> tuple[float, str]:
        """(cosine-similarity threshold, where it comes from) for `fpir`."""
        if threshold is not None:
            return float(threshold), "given"
        key = f"{fpir:.0e}"
        calibrated = self.metadata["calibration"].get(key)
        if calibrated is not None:
            return calibrated["threshold"], (
                f"calibrated at FPIR {key} on {calibrated['probes']} probes of "
                f"{calibrated['people']} people ({calibrated['version']})"
            )
        model = self.metadata["model"]
        if key not in model["thresholds"]:
            raise ValueError(
                f"no threshold at FPIR {key}: {model['preset']} has LFW thresholds at FAR "
                f"{', '.join(model['thresholds']) or 'none'} and the gallery is not "
                f"calibrated at it (calibrate(fpir={fpir:g})); or pass threshold="
            )
        return 1.0 - model["thresholds"][key], (
            f"{model['preset']}'s LFW threshold at FAR {key}, not calibrated to this gallery "
            f"({self._calibration_need(fpir)})"
        )

    def _calibration_need(self, fpir: float) -> str:
        return (
            f"calibrating at FPIR {fpir:.0e} needs >= {MIN_CALIBRATION_PEOPLE} people and >= "
            f"{math.ceil(1 / fpir)} media; it has {len(self)} people and "
            f"{len(self._version.media)} media"
        )

    # -- open-set threshold ------------------------------------------------------------------

    def calibrate(self, fpir: float = 1e-2) -> dict:
        """Set and store the threshold at `fpir` from the gallery's own people (leave one
        person out, module docstring); returns {"fpir", "threshold", "probes", "people",
        "version"}. ValueError when the gallery is too small."""
        if not 0 < fpir < 1:
            raise ValueError(f"fpir must be in (0, 1), got {fpir}")
        with self._store.writer():
            self._version = live = self._store.read()
            if len(self) < MIN_CALIBRATION_PEOPLE or len(live.media) < math.ceil(1 / fpir):
                raise ValueError(f"{self.path} is too small: {self._calibration_need(fpir)}")
            best = self.impostor_scores()
            result = {
                "fpir": fpir,
                "threshold": threshold_at_fpir(best, fpir),
                "probes": len(best),
                "people": len(self),
                "version": live.name,
            }
            calibration = {**live.metadata["calibration"], f"{fpir:.0e}": result}
            self._commit(live, {**live.metadata, "calibration": calibration})
        return result

    def impostor_scores(self) -> np.ndarray:
        """Each enrolled media's best score against the templates of the other people (its
        own person left out): the best scores of probes of people who are not enrolled."""
        media = self._version.media
        owners, most = self._owners()
        scores, ids = self.index.search(media.vectors["embedding"], most + 1)
        persons = owners.reindex(ids.reshape(-1)).to_numpy().reshape(ids.shape)
        other = persons != media.frame["person_id"].to_numpy()[:, None]
        return scores[np.arange(len(scores)), np.argmax(other, axis=1)]


def threshold_at_fpir(best_scores, fpir: float) -> float:
    """The loosest threshold t with ``#(best >= t) <= floor(fpir * n)`` over the `n` best
    scores of non-enrolled probes (so their measured FPIR is at most `fpir`)."""
    best = np.sort(np.asarray(best_scores, np.float64))[::-1]
    allowed = math.floor(fpir * len(best))
    if allowed < 1:
        raise ValueError(
            f"{len(best)} probes cannot measure FPIR {fpir:g}: give >= {math.ceil(1 / fpir)}"
        )
    t = best[allowed - 1]
    if (best >= t).sum() > allowed:  # ties at t: step just above them
        t = np.nextafter(t, np.inf)
    return float(t)


def model_identity(embedder: FaceEmbedder) -> dict:
    """What a gallery records of its model: the preset and what its frame embeddings depend
    on (`FaceEmbedder.frame_key`), how to rebuild the embedder, and the preset's facts."""
    preset = embedder.preset
    return {
        "preset": preset.name,
        "frame_key": embedder.frame_key,
        "description": preset.description,
        "weights_sha256": {"backbone": preset.source.sha256, "head": preset.head.sha256},
        "embedding_dim": preset.embedding_dim,
        "alignment": embedder.description,
        "align": embedder.align,
        "flip": embedder.flip,
        "model_file": None if embedder.model_file is None else os.fspath(embedder.model_file),
        "thresholds": dict(embedder.thresholds),
    }


PEOPLE = {"person_id": np.int64, "name": str, "media": np.int64, "faces": np.int64, "added": str}
MEDIA = {
    "media_id": np.int64,
    "person_id": np.int64,
    "source": str,
    "kind": str,
    "frames": np.int64,
    "faces": np.int64,
    "added": str,
}
FACES = {
    "media_id": np.int64,
    "person_id": np.int64,
    "frame": str,
    "x1": np.float32,
    "y1": np.float32,
    "x2": np.float32,
    "y2": np.float32,
    "detector_score": np.float32,
    "face_count": np.int32,
}
"""The scalar columns of the people, media and embeddings tables."""


def _table(columns: dict, vectors: dict[str, np.ndarray]) -> Table:
    return Table(pd.DataFrame({k: pd.Series(dtype=t) for k, t in columns.items()}), vectors)


def _templates(mode: str, people: Table, media: Table) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) the index holds: person templates, or each media's set embedding."""
    if mode == "person":
        return people.frame["person_id"].to_numpy(), people.vectors["template"]
    return media.frame["media_id"].to_numpy(), media.vectors["embedding"]


def _sized(metadata: dict, people: Table, media: Table, index: VectorIndex) -> VectorIndex:
    """`index`, or one of the kind the gallery's index setting asks for at its new size,
    built from the templates ("auto" turns exact into HNSW past `index.AUTO_EXACT_MAX`)."""
    ids, vectors = _templates(metadata["templates"], people, media)
    if index_kind(metadata["index"], len(ids)) == index.kind:
        return index
    rebuilt = make_index(metadata["index"], index.dim, len(ids))
    rebuilt.add(ids, vectors)
    return rebuilt


def _entry(name: str, items: list[MediaItem], faces: Faces, start: int) -> dict:
    """One person to enrol from `items` (media ``start...`` of `faces`): the report, the kept
    media as (source, kind, frames, faces) rows, and their faces (``item`` renumbered over
    the kept media)."""
    report, kept, media = AddReport(name), [], []
    for offset, item in enumerate(items):
        rows, error = faces.rows(start + offset), faces.errors[start + offset]
        if error is not None or not len(rows):
            report.skipped_media[item.source] = error or "no face found"
            continue
        without = faces.without_face[start + offset]
        report.frames_without_face += without
        table = faces.table.take(rows)
        table.frame["item"] = len(media)
        kept.append(table)
        media.append((item.source, item.kind, len(rows) + len(without), len(rows)))
    report.media, report.faces = len(media), sum(row[3] for row in media)
    report.enrolled = report.faces > 0
    if not report.enrolled:
        report.message = f"no usable face in any of its {len(items)} media: not enrolled"
    elif report.skipped_media:
        report.message = f"{len(report.skipped_media)} of its {len(items)} media skipped"
    return {"report": report, "media": media, "faces": Table.concat(kept) if kept else None}


def _frame_vectors(given: Mapping, dim: int, features) -> tuple[dict, str | None]:
    """The frame outputs a set head reads from `given` (a media of `add_frames`) as float32,
    and why they cannot be enrolled (None: they can)."""
    keys = ("frame_embeddings",) if features is None else ("frame_embeddings", "frame_features")
    missing = [key for key in keys if key not in given]
    if missing:
        return {}, f"no {' or '.join(missing)} given"
    vectors = {key: np.asarray(given[key], np.float32) for key in keys}
    embeddings = vectors["frame_embeddings"]
    frames = len(embeddings) if embeddings.ndim else 0
    for key, value in vectors.items():
        want = (dim,) if key == "frame_embeddings" else tuple(features)
        if value.shape != (frames, *want):
            expected = ", ".join(["frames", *map(str, want)])
            return {}, f"{key} of shape {value.shape}, expected ({expected})"
        if not np.isfinite(value).all():
            return {}, f"{key} hold NaN or infinite values"
    return vectors, None if frames else "no frames"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

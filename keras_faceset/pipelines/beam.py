"""The Apache Beam pipeline of `keras_faceset.pipelines.embed_gallery` (needs apache-beam).

inputs (Create, or a manifest's lines) -> elements (`expand`, `merge_set`) -> one per source
(grouped by it, which also spreads them over the workers) -> BatchElements -> `EmbedFn` (the
model built once per worker in ``setup``; rows, or dead letters on a tagged output) -> one
Parquet shard pair per ``media_id % shards`` -> the dead-letter file and summary.json, last.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from keras_faceset.embedder import FaceEmbedder
from keras_faceset.gallery.store import write_table
from keras_faceset.pipelines.elements import (
    DeadLetter,
    Element,
    embed_elements,
    expand,
    merge_set,
)
from keras_faceset.pipelines.output import (
    DEAD_LETTER,
    FACES,
    MEDIA,
    SUMMARY,
    dead_letter_lines,
    shard_name,
    shard_tables,
    summary,
)

DEAD = "dead_letter"
NAMESPACE = "keras_faceset"


class EmbedFn(beam.DoFn):
    """Batches of `Element`s -> `Embedded` rows, and `DeadLetter`s on the ``dead_letter``
    output. The embedder is built once per DoFn instance (Beam keeps one per worker thread and
    reuses it across bundles). A batch that raises is retried one element at a time; an
    element that still raises becomes a dead letter with the exception, so one bad input
    never fails the job."""

    def __init__(self, make_embedder: Callable[[], FaceEmbedder]):
        self.make_embedder = make_embedder
        self.embedder = None

    def setup(self) -> None:
        self.embedder = self.make_embedder()

    def process(self, batch: Sequence[Element]):
        try:
            results = embed_elements(self.embedder, batch)
        except Exception:  # noqa: BLE001 - one element's fault must not fail the job
            results = [result for element in batch for result in self._alone(element)]
        for result in results:
            dead = isinstance(result, DeadLetter)
            beam.metrics.Metrics.counter(NAMESPACE, "dead_letter" if dead else "embedded").inc()
            yield beam.pvalue.TaggedOutput(DEAD, result) if dead else result

    def _alone(self, element: Element) -> list:
        try:
            return embed_elements(self.embedder, [element])
        except Exception as error:  # noqa: BLE001
            reason = f"{type(error).__name__}: {error}"
            return [DeadLetter(element.source, element.set_id, reason)]


def build_embedder(model: str, options: dict) -> FaceEmbedder:
    """`FaceEmbedder(model, **options)`; a ``model_file`` or ``weights`` file on a Beam
    filesystem (gs://, s3://) is copied to a local temporary folder first (once per worker)."""
    options = dict(options)
    for key in ("model_file", "weights"):
        source = options.get(key)
        if source is not None and "://" in str(source):
            local = Path(tempfile.mkdtemp(prefix="keras_faceset-")) / Path(str(source)).name
            with FileSystems.open(str(source)) as remote, open(local, "wb") as handle:
                shutil.copyfileobj(remote, handle)
            options[key] = local
    return FaceEmbedder(model, **options)


def run(
    inputs: Sequence[str],
    output: str,
    make_embedder: Callable[[], FaceEmbedder],
    per_image: bool,
    manifest: str | None,
    max_frames: int | None,
    batch_size: int,
    shards: int,
    pipeline_args: Sequence[str],
) -> dict:
    """Build and run the pipeline; returns summary.json's content."""
    options = PipelineOptions(list(pipeline_args))
    with beam.Pipeline(options=options) as pipeline:
        elements = _elements(pipeline, inputs, manifest, per_image, max_frames)
        results = (
            elements
            | "BySource" >> beam.Map(lambda element: (element.source, element))
            | "Once" >> beam.GroupByKey()  # an input given twice is embedded once
            | "First" >> beam.Map(lambda group: min(group[1], key=lambda e: (e.set_id, e.kind)))
            | "Batch"
            >> beam.BatchElements(
                min_batch_size=1,
                max_batch_size=batch_size,
                element_size_fn=lambda element: max(1, len(element.frames)),
            )
            | "Embed" >> beam.ParDo(EmbedFn(make_embedder)).with_outputs(DEAD, main="rows")
        )
        every_shard = pipeline | "Shards" >> beam.Create([(k, None) for k in range(shards)])
        keyed = results.rows | "Key" >> beam.Map(lambda row: (row.media_id % shards, row))
        written = (
            (keyed, every_shard)
            | "Join" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.Map(lambda group: _write_shard(*group, output, shards))
        )
        dead = results[DEAD] | "Dead" >> beam.combiners.ToList()
        (
            written
            | "Reports" >> beam.combiners.ToList()
            | "Finish"
            >> beam.Map(_finish, dead=beam.pvalue.AsSingleton(dead), output=output, shards=shards)
        )
    return json.loads(_read(FileSystems.join(output, SUMMARY)))


def _elements(pipeline, inputs, manifest, per_image, max_frames):
    """The `Element`s of the inputs given and of the manifest's rows."""
    given = [(str(source), None) for source in inputs]
    if manifest is not None:
        rows = (
            pipeline
            | "Manifest" >> beam.io.ReadFromText(manifest, skip_header_lines=1)
            | "Rows" >> beam.Map(_manifest_row, _manifest_columns(manifest), manifest)
        )
    else:
        rows = pipeline | "NoManifest" >> beam.Create([])
    if given:
        rows = (rows, pipeline | "Inputs" >> beam.Create(given)) | "All" >> beam.Flatten()
    if per_image:
        return rows | "Expand" >> beam.FlatMap(lambda row: expand(*row, True, max_frames))
    alone = rows | "Alone" >> beam.Filter(lambda row: row[1] is None)
    sets = (
        rows
        | "InSets" >> beam.Filter(lambda row: row[1] is not None)
        | "BySet" >> beam.Map(lambda row: (row[1], row[0]))
        | "GroupSets" >> beam.GroupByKey()
        | "Merge" >> beam.Map(lambda group: merge_set(*group, max_frames))
    )
    singles = alone | "ExpandSets" >> beam.FlatMap(lambda row: expand(*row, False, max_frames))
    return (singles, sets) | "Sets" >> beam.Flatten()


def _manifest_columns(manifest: str) -> tuple[int, int | None]:
    """The positions of the manifest's ``path`` and (optional) ``set_id`` columns."""
    with FileSystems.open(manifest) as handle:
        header = next(csv.reader(io.TextIOWrapper(handle, "utf-8")), [])
    if "path" not in header:
        raise ValueError(
            f"manifest {manifest} needs a 'path' column in its header line (and optionally "
            f"'set_id'); its header is {header}"
        )
    return header.index("path"), header.index("set_id") if "set_id" in header else None


def _manifest_row(line: str, columns: tuple[int, int | None], manifest: str):
    """(path, set_id or None) of one manifest line; a relative path is taken from the
    manifest's folder."""
    cells = next(csv.reader([line]))
    path_column, set_column = columns
    path = cells[path_column]
    if "://" not in path and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(manifest), path)
    return path, (cells[set_column] or None) if set_column is not None else None


def _write_shard(index: int, rows, output: str, shards: int) -> dict:
    """Shard `index`'s two tables, each written beside its final name and then renamed."""
    rows = [row for row in rows if row is not None]
    media, faces = shard_tables(rows)
    names = {MEDIA: shard_name(MEDIA, index, shards), FACES: shard_name(FACES, index, shards)}
    for table, name in ((media, names[MEDIA]), (faces, names[FACES])):
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / name
            write_table(local, table)
            _put(local.read_bytes(), FileSystems.join(output, name))
    models = sorted({(row.media["model"], row.media["model_version"]) for row in rows})
    return {
        **names,
        "rows": len(media),
        "faces": len(faces),
        "models": [f"{name} [{version}]" for name, version in models],
    }


def _finish(reports: list[dict], dead: list[DeadLetter], output: str, shards: int) -> None:
    """The dead-letter file, then summary.json; shards of an earlier run with another shard
    count are deleted."""
    _put(dead_letter_lines(dead).encode(), FileSystems.join(output, DEAD_LETTER))
    keep = {name for report in reports for name in (report[MEDIA], report[FACES])}
    pattern = FileSystems.join(output, "*-?????-of-?????.parquet")
    stale = [
        m.path
        for result in FileSystems.match([pattern])
        for m in result.metadata_list
        if os.path.basename(m.path) not in keep
    ]
    if stale:
        FileSystems.delete(stale)
    info = {**summary(reports, len(dead)), "shard_count": shards}
    _put(json.dumps(info, indent=1).encode(), FileSystems.join(output, SUMMARY))


def _put(data: bytes, target: str) -> None:
    """`data` at `target` (any Beam filesystem), through a temporary name and a rename."""
    part = f"{target}.part"
    with FileSystems.create(part) as handle:
        handle.write(data)
    if FileSystems.exists(target):
        FileSystems.delete([target])
    FileSystems.rename([part], [target])


def _read(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode()

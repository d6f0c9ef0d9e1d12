"""Gallery embedding on Apache Beam (``pip install 'keras-faceset[beam]'``): `embed_gallery`
writes a gallery's Parquet tables of many images or videos with any Beam runner;
`add_to_gallery` enrols them, `read_output` reads them back (layout: `pipelines.output`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

from keras_faceset.embedder import FaceEmbedder
from keras_faceset.pipelines.output import add_to_gallery, read_output

__all__ = ["add_to_gallery", "embed_gallery", "read_output"]

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")


def embed_gallery(
    inputs: Sequence[str | os.PathLike],
    output: str,
    model: str | Callable[[], FaceEmbedder] = "dlib_resnet",
    manifest: str | None = None,
    max_frames: int | None = 16,
    batch_size: int = 32,
    shards: int = 8,
    pipeline_args: Sequence[str] = ("--runner", "DirectRunner"),
    sets: bool | None = None,
    **embedder_options,
) -> dict:
    """Embed image files, folders and videos (and the rows of a `manifest` CSV: a ``path``
    column, optionally ``set_id``; an image there may be a URL TensorFlow reads, gs://...) into
    the Parquet tables of folder `output` (local, or any Beam filesystem: gs://, s3://) with a
    Beam pipeline; returns its summary.json.

    An image preset gives one row per image (each image of a folder, each of `max_frames`
    frames of a video); a set preset one row per folder, video, image or manifest set. The
    model is built once per worker: `model` is a preset name (with `embedder_options` for
    `FaceEmbedder`: align, detector, flip, precision, model_file, which may be a gs:// path)
    or a picklable zero-argument callable returning a `FaceEmbedder` (then `sets` says
    whether it is a set model; with a preset its kind decides). An input that cannot
    be read, holds no face or raises goes to ``dead-letter.jsonl`` with the reason.
    `pipeline_args` are Beam's options (``--runner DataflowRunner --project ...``,
    ``--direct_num_workers 2 --direct_running_mode multi_processing``).
    """
    try:
        from keras_faceset.pipelines import beam
    except ImportError as error:
        raise ImportError(
            f"embed_gallery needs Apache Beam ({error}): pip install 'keras-faceset[beam]'"
        ) from error
    if not inputs and manifest is None:
        raise ValueError("give inputs (images, folders, videos) or a manifest CSV")
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if callable(model):
        if embedder_options or sets is None:
            raise ValueError(
                "a callable model takes no embedder options and needs sets=True or False"
            )
        make = model
    else:
        from keras_faceset import zoo

        make = functools.partial(beam.build_embedder, model, embedder_options)
        sets = zoo.get_preset(model).is_set_model
    args = [os.fspath(source) for source in inputs]
    return beam.run(
        args, output, make, not sets, manifest, max_frames, batch_size, shards, pipeline_args
    )

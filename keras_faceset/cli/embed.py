"""`embed`: embeddings of images (image presets) or sets (set presets) into .npz or .parquet."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_faceset.cli.common import (
    FACE_FIELDS,
    READ_ERRORS,
    Item,
    add_model_options,
    embed_items,
    embedder_options,
    make_embedder,
    read_items,
    write_csv,
)


def register(add_command) -> None:
    """Add the command through `add_command(name, **kwargs) -> parser`."""
    embed = add_command(
        "embed",
        help="embed images (image models) or sets (set models) into an .npz or .parquet",
        description="Image models: one embedding per image (folders expanded, videos sampled). "
        "Set models: one embedding per input (a folder of frames, a video or one image) with "
        "per-frame weights. .npz keys: embeddings, paths, face_found, detector_score, box "
        "(x1,y1,x2,y2), face_count (image models) or embeddings, sets, frames, weights, "
        "face_found, detector_score, box, face_count (per frame, padded with '', 0 or False), "
        "lengths (set models); .parquet: the same columns, one row per image or set. The face "
        "columns need detection (not with --align center). With --all-faces (image models): "
        "one row per face found, largest first within an image: embeddings, paths, face (its "
        "rank in the image), face_count, detector_score, box, landmarks (5 x, y: left_eye, "
        "right_eye, nose, mouth_left, mouth_right); an image without a face has no row. A file "
        "that cannot be read (missing, not an image, truncated) is skipped and reported on "
        "stderr and in OUTPUT.errors.csv; the exit code is 0 when anything was embedded.",
    )
    add_model_options(embed)
    embed.add_argument("inputs", nargs="+", help="image files, folders of images, videos")
    embed.add_argument("-o", "--output", required=True, help="out.npz or out.parquet")
    embed.add_argument(
        "--all-faces",
        action="store_true",
        help="embed every face of each image (video frame) with its box, score and landmarks, "
        "instead of the one chosen face (image models; needs detection; no chip cache)",
    )
    embed.add_argument(
        "--runner",
        nargs=argparse.REMAINDER,
        metavar="RUNNER [BEAM OPTIONS]",
        help="run as an Apache Beam pipeline (pip install 'keras-faceset[beam]'): DirectRunner, "
        "DataflowRunner, FlinkRunner or SparkRunner, then that runner's options (last on the "
        "line: what follows goes to Beam, e.g. --runner DirectRunner --direct_num_workers 2 "
        "--direct_running_mode multi_processing). OUTPUT is then a folder (or gs://, s3://) "
        "of gallery Parquet shards, dead-letter.jsonl (the inputs not embedded, with why) and "
        "summary.json; an input ending in .csv is a manifest (columns path, optional set_id)",
    )
    embed.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.runner is not None:
        return _run_pipeline(args)
    output = Path(args.output)
    if output.suffix not in (".npz", ".parquet"):
        raise ValueError(f"output must end in .npz or .parquet, got {output.name}")
    if output.suffix == ".parquet":
        _parquet_engine()
    if args.all_faces:
        _check_all_faces(args)
    embedder = make_embedder(args)
    items = read_items(args.inputs, args.max_frames, per_image=not embedder.takes_sets)
    if args.all_faces:
        faces = _embed_every_face(embedder, items)
    else:
        embed_items(embedder, items)
    errors = [error for item in items for error in item.errors]
    for path, reason in errors:
        print(f"keras-faceset embed: skipped {path}: {reason}", file=sys.stderr)
    if args.all_faces:
        summary, notes = _write_every_face(output, faces)
    else:
        done = [item for item in items if item.embedding is not None]
        if not done:
            raise ValueError("no input could be embedded")
        _write_embeddings(output, done, embedder.takes_sets)
        kind = "sets" if embedder.takes_sets else "images"
        summary = f"{len(done)} {kind}, embeddings of dimension {len(done[0].embedding)}"
        faceless = [frame for item in done for frame in item.faceless]
        note = f"note: no face found in {len(faceless)} image(s) (face_found False); "
        notes = [note + "their central crop was embedded"] if faceless else []
    errors_csv = output.with_name(f"{output.name}.errors.csv")
    errors_csv.unlink(missing_ok=True)  # a list from an earlier run would be taken for this one's
    print(f"{summary} -> {output}")
    if errors:
        write_csv([{"path": p, "reason": r} for p, r in errors], errors_csv)
        print(f"{len(errors)} skipped (could not be read), listed in {errors_csv}")
    for line in notes:
        print(line)


FACE_ROWS = ("detector_score", "box", "landmarks")
"""Per face row of ``embed --all-faces``, after path, face and face_count."""


def _check_all_faces(args: argparse.Namespace) -> None:
    from keras_faceset.zoo import get_preset

    if args.align != "preset":
        raise ValueError("--all-faces needs detection: drop --align center")
    if get_preset(args.model).is_set_model:
        raise ValueError(
            f"--all-faces embeds each face as an image: {args.model} is a set model, give an "
            "image model (e.g. facenet or dlib_resnet)"
        )


def _embed_every_face(embedder, items: Sequence[Item]) -> dict:
    """Every face of the items' images (`FaceEmbedder.find_faces`, unit embeddings of the same
    frame model and crop as one chosen face), a chunk of images at a time: the rows of
    `_write_every_face` and, under "faceless", the images without a face. An image that cannot
    be decoded is added to its item's errors."""
    from keras_faceset.align.pipeline import CHUNK
    from keras_faceset.data.images import load_image
    from keras_faceset.vectors import unit_vectors

    images = []
    for item in items:
        for name, frame in zip(item.frames, item.inputs, strict=True):
            try:
                image = frame if isinstance(frame, np.ndarray) else load_image(frame).numpy()
            except READ_ERRORS as error:
                item.errors.append((name, str(error)))
                continue
            images.append((name, image))
    rows = {key: [] for key in ("path", "face", "face_count", *FACE_ROWS, "embeddings")}
    faceless = []
    for start in range(0, len(images), CHUNK):
        names, decoded = zip(*images[start : start + CHUNK], strict=True)
        found = embedder.find_faces(list(decoded))
        faceless += [name for name, count in zip(names, found.face_count, strict=True) if not count]
        if not len(found):
            continue
        raw = embedder.frame_outputs(found.chips)["frame_embeddings"]
        rank = np.arange(len(found)) - np.searchsorted(found.image, found.image)  # largest first
        rows["path"] += [names[i] for i in found.image]
        rows["face"].append(rank)
        rows["face_count"].append(found.face_count[found.image])
        rows["detector_score"].append(found.scores)
        rows["box"].append(found.boxes)
        rows["landmarks"].append(found.landmarks)
        rows["embeddings"].append(unit_vectors(raw, name="face embeddings"))
    joined = {key: rows[key] if key == "path" else _joined(rows[key]) for key in rows}
    return {**joined, "images": len(images), "faceless": faceless}


def _joined(parts: list[np.ndarray]) -> np.ndarray | None:
    return np.concatenate(parts) if parts else None


def _write_every_face(output: Path, faces: dict) -> tuple[str, list[str]]:
    """The rows of `_embed_every_face` to `output`; the summary line and notes."""
    if not faces["images"]:
        raise ValueError("no input could be embedded")
    if not faces["path"]:
        raise ValueError(f"no face found in the {faces['images']} image(s) read")
    columns = {
        "path": faces["path"],
        "face": faces["face"].astype(np.int32),
        "face_count": faces["face_count"].astype(np.int32),
        **{key: faces[key] for key in FACE_ROWS},
    }
    _write_rows(output, faces["embeddings"], columns)
    faceless, embeddings = faces["faceless"], faces["embeddings"]
    summary = (
        f"{len(embeddings)} faces in {faces['images'] - len(faceless)} of {faces['images']} "
        f"images, embeddings of dimension {embeddings.shape[1]}"
    )
    shown = ", ".join(faceless[:5]) + (", ..." if len(faceless) > 5 else "")
    note = f"note: no face found in {len(faceless)} image(s), which have no row: {shown}"
    return summary, [note] if faceless else []


def _write_embeddings(output: Path, items: Sequence[Item], sets: bool) -> None:
    """The .npz or .parquet of `embed` (its --help lists the keys), written atomically."""
    from keras_faceset.files import atomic_path

    faces = items[0].faces is not None
    embeddings = np.stack([item.embedding for item in items])
    if not sets:
        columns = {"path": [item.name for item in items]}
        if faces:
            columns.update((k, np.concatenate([i.faces[k] for i in items])) for k in FACE_FIELDS)
        _write_rows(output, embeddings, columns)
        return
    columns = {
        "set": [item.name for item in items],
        "frames": [item.frames for item in items],
        "weights": [item.weights.astype(np.float32) for item in items],
    }
    if faces:
        columns.update((k, [item.faces[k] for item in items]) for k in FACE_FIELDS)
    with atomic_path(output, suffix=output.suffix) as tmp:
        if output.suffix == ".parquet":
            _write_parquet(tmp, embeddings, columns)
        else:
            names, lengths = columns.pop("set"), [len(item.frames) for item in items]
            padded = {key: _pad(rows, max(lengths)) for key, rows in columns.items()}
            np.savez(tmp, embeddings=embeddings, sets=np.array(names), lengths=lengths, **padded)


def _write_rows(output: Path, embeddings: np.ndarray, columns: dict) -> None:
    """One row per embedding: .npz arrays (``paths`` for the path column) or .parquet columns,
    written atomically."""
    from keras_faceset.files import atomic_path

    with atomic_path(output, suffix=output.suffix) as tmp:
        if output.suffix == ".parquet":
            _write_parquet(tmp, embeddings, columns)
        else:
            arrays = {"paths" if k == "path" else k: np.asarray(v) for k, v in columns.items()}
            np.savez(tmp, embeddings=embeddings, **arrays)


def _write_parquet(path, embeddings: np.ndarray, columns: dict) -> None:
    import pandas as pd

    table = {key: [_cell(value) for value in column] for key, column in columns.items()}
    pd.DataFrame({**table, "embedding": list(embeddings)}).to_parquet(path, index=False)


def _cell(value):
    """A parquet cell: NumPy values as Python scalars and (nested) lists."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _pad(rows: Sequence, width: int) -> np.ndarray:
    """Per-set rows of frame values (T_i, ...) stacked into (N, width, ...), padded with 0,
    False or '' past each set's frames."""
    rows = [np.asarray(row) for row in rows]
    return np.stack(
        [
            np.pad(
                row,
                [(0, width - len(row))] + [(0, 0)] * (row.ndim - 1),
                constant_values="" if row.dtype.kind == "U" else 0,
            )
            for row in rows
        ]
    )


def _parquet_engine() -> None:
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise ImportError("writing .parquet needs pyarrow (pip install pyarrow); or use -o out.npz")


def _run_pipeline(args: argparse.Namespace) -> None:
    """`embed --runner`: `keras_faceset.pipelines.embed_gallery` on that Beam runner."""
    from keras_faceset.pipelines import RUNNERS, embed_gallery

    runner, *options = args.runner or [""]
    if runner not in RUNNERS:
        raise ValueError(f"--runner {runner!r}: expected one of {', '.join(RUNNERS)}")
    if args.all_faces:
        raise ValueError("--all-faces is not available with --runner")
    manifests = [path for path in args.inputs if path.endswith(".csv")]
    if len(manifests) > 1:
        raise ValueError(f"give at most one manifest .csv, got {', '.join(manifests)}")
    if args.quiet:
        from keras_faceset.progress import set_enabled

        set_enabled(False)
    summary = embed_gallery(
        [path for path in args.inputs if path not in manifests],
        args.output,
        args.model,
        manifest=manifests[0] if manifests else None,
        max_frames=args.max_frames,
        pipeline_args=["--runner", runner, *options],
        **embedder_options(args),
    )
    print(
        f"{summary['embedded']} embedded, {summary['dead_letter']} in "
        f"{args.output}/dead-letter.jsonl (of {summary['inputs']} inputs) -> {args.output}"
    )
    if not summary["embedded"]:
        raise ValueError("no input could be embedded (the dead letter says why)")

"""`embed`: embeddings of images (image presets) or sets (set presets) into .npz or .parquet."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_faceset.cli.common import (
    FACE_FIELDS,
    Item,
    add_model_options,
    embed_items,
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
        "columns need detection (not with --align center). A file that cannot be read (missing, "
        "not an image, truncated) is skipped and reported on stderr and in OUTPUT.errors.csv; "
        "the exit code is 0 when anything was embedded.",
    )
    add_model_options(embed)
    embed.add_argument("inputs", nargs="+", help="image files, folders of images, videos")
    embed.add_argument("-o", "--output", required=True, help="out.npz or out.parquet")
    embed.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    output = Path(args.output)
    if output.suffix not in (".npz", ".parquet"):
        raise ValueError(f"output must end in .npz or .parquet, got {output.name}")
    if output.suffix == ".parquet":
        _parquet_engine()
    embedder = make_embedder(args)
    items = read_items(args.inputs, args.max_frames, per_image=not embedder.takes_sets)
    embed_items(embedder, items)
    errors = [error for item in items for error in item.errors]
    for path, reason in errors:
        print(f"keras-faceset embed: skipped {path}: {reason}", file=sys.stderr)
    done = [item for item in items if item.embedding is not None]
    if not done:
        raise ValueError("no input could be embedded")
    _write_embeddings(output, done, embedder.takes_sets)
    errors_csv = output.with_name(f"{output.name}.errors.csv")
    errors_csv.unlink(missing_ok=True)  # a list from an earlier run would be taken for this one's
    kind = "sets" if embedder.takes_sets else "images"
    print(f"{len(done)} {kind}, embeddings of dimension {len(done[0].embedding)} -> {output}")
    if errors:
        write_csv([{"path": p, "reason": r} for p, r in errors], errors_csv)
        print(f"{len(errors)} skipped (could not be read), listed in {errors_csv}")
    faceless = [frame for item in done for frame in item.faceless]
    if faceless:
        print(
            f"note: no face found in {len(faceless)} image(s) (face_found False); "
            "their central crop was embedded"
        )


def _write_embeddings(output: Path, items: Sequence[Item], sets: bool) -> None:
    """The .npz or .parquet of `embed` (its --help lists the keys), written atomically."""
    from keras_faceset.files import atomic_path

    faces = items[0].faces is not None
    embeddings = np.stack([item.embedding for item in items])
    if not sets:
        columns = {"path": [item.name for item in items]}
        if faces:
            columns.update((k, np.concatenate([i.faces[k] for i in items])) for k in FACE_FIELDS)
    else:
        columns = {
            "set": [item.name for item in items],
            "frames": [item.frames for item in items],
            "weights": [item.weights.astype(np.float32) for item in items],
        }
        if faces:
            columns.update((k, [item.faces[k] for item in items]) for k in FACE_FIELDS)
    with atomic_path(output, suffix=output.suffix) as tmp:
        if output.suffix == ".parquet":
            import pandas as pd

            table = {key: [_cell(value) for value in column] for key, column in columns.items()}
            pd.DataFrame({**table, "embedding": list(embeddings)}).to_parquet(tmp, index=False)
        elif not sets:
            arrays = {"paths" if k == "path" else k: np.asarray(v) for k, v in columns.items()}
            np.savez(tmp, embeddings=embeddings, **arrays)
        else:
            names, lengths = columns.pop("set"), [len(item.frames) for item in items]
            padded = {key: _pad(rows, max(lengths)) for key, rows in columns.items()}
            np.savez(tmp, embeddings=embeddings, sets=np.array(names), lengths=lengths, **padded)


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

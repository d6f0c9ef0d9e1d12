"""The `keras-faceset` command line.

Exit codes: 0 done (`verify`: same person); 1 an error (`verify`: different people); 2 `verify`
made no decision (an error, no face found, no threshold) or `verify --pairs` skipped a pair.
TensorFlow's C++ log lines are off unless `--verbose`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_faceset import __version__

READ_ERRORS = (ValueError, OSError)
"""What reading an input raises: missing, not an image, truncated, an empty folder."""
FACE_FIELDS = ("face_found", "detector_score", "box", "face_count")
"""Per image (frame): a face was detected; the detector's score (0 without a face); the region
cropped, x1, y1, x2, y2 (the chosen face's box, or the central crop without a face); the
faces detected in the image."""


@contextlib.contextmanager
def _stderr_fd_to(file) -> Iterator[None]:
    """Point file descriptor 2, where C++ libraries write, at `file` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its logging off: ``TF_CPP_MIN_LOG_LEVEL=3`` for its C++ log
    (replacing a value set elsewhere, e.g. by importing JAX; ``--verbose`` keeps it), its
    import-time lines (oneDNN notice, CUDA probing: written before it reads that variable)
    swallowed, or shown if the import fails, and its and absl's Python loggers at ERROR."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryFile() as captured:
        try:
            with _stderr_fd_to(captured):
                import tensorflow as tf
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
    from absl import logging as absl_logging

    tf.get_logger().setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)


def _list(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    table = zoo.list_models()
    columns = ["name", "task", "backbone", "licence", "lfw_accuracy"]
    print(table[[*columns, "lfw_sets_degraded_tar@far=1e-2"]].to_string(index=False))


def _info(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    card = zoo.info(args.model)
    print(card.pop("card") or "(no model card)")
    source = card.pop("source")
    for key, value in [*card.items(), *((f"source.{k}", v) for k, v in source.items())]:
        print(f"{key}: {value}")


def _download(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    names = list(zoo.PRESETS) if args.all else [args.model]
    if not names[0]:
        raise ValueError("give a model name or --all")
    for name in names:
        print(f"{name}: {zoo.download(name, cache_dir=args.cache_dir)}")


def _embedder(args: argparse.Namespace):
    from keras_faceset.embedder import FaceEmbedder

    if args.quiet:
        from keras_faceset.progress import set_enabled

        set_enabled(False)
    return FaceEmbedder(
        args.model,
        align=args.align,
        chip_cache=args.chip_cache,
        flip=args.flip,
        precision=args.precision,
        model_file=args.model_file,
    )


def _model_line(args: argparse.Namespace, embedder) -> str:
    weights = f" with {args.model_file}" if args.model_file else ""
    return f"model: {args.model}{weights} ({embedder.description})"


@dataclass
class Item:
    """One thing to embed: a set of frames (for an image preset, one image), what could not be
    read of it, and once embedded its embedding, frame weights and per-frame `FACE_FIELDS`
    (None with ``--align center``, which detects nothing)."""

    name: str
    frames: list[str] = field(default_factory=list)
    inputs: list = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    embedding: np.ndarray | None = None
    weights: np.ndarray | None = None
    faces: dict[str, np.ndarray] | None = None

    def face(self, i: int) -> dict:
        """Frame i's `FACE_FIELDS` as JSON values."""
        return {
            "face_found": bool(self.faces["face_found"][i]),
            "detector_score": round(float(self.faces["detector_score"][i]), 4),
            "box": [round(float(v), 1) for v in self.faces["box"][i]],
            "face_count": int(self.faces["face_count"][i]),
        }

    @property
    def faceless(self) -> list[str]:
        """The frames in which no face was found (the central crop was embedded)."""
        if self.faces is None:
            return []
        return [
            f for f, found in zip(self.frames, self.faces["face_found"], strict=True) if not found
        ]


def _read_items(inputs: Sequence[str], max_frames: int, per_image: bool) -> list[Item]:
    """An `Item` per input (a folder of frames, a video, an image), or with `per_image` one per
    image (folders expanded, videos sampled); an input that cannot be read is an item with its
    error and no frames."""
    from keras_faceset.data.inputs import frame_label, input_sets, set_inputs

    items = []
    for given in map(str, inputs):
        try:
            ((_, frames),) = input_sets([given], max_frames)
            decoded = set_inputs(frames)
        except READ_ERRORS as error:
            items.append(Item(given, errors=[(given, str(error))]))
            continue
        labels = [frame_label(frame) for frame in frames]
        if per_image:
            items += [Item(f, [f], [x]) for f, x in zip(labels, decoded, strict=True)]
        else:
            items.append(Item(given, labels, decoded))
    return items


def _embed_items(embedder, items: Sequence[Item]) -> None:
    """Embed the frames of `items` together. A frame that cannot be decoded (not an image,
    truncated) is dropped from its item and its reason added to the item's errors; an item
    left without frames keeps ``embedding=None``."""
    todo = [item for item in items if item.inputs]
    try:
        _embed_all(embedder, todo)
        return
    except READ_ERRORS:
        dropped = False
        for item in todo:
            reasons = [_unreadable(x) for x in item.inputs]
            keep = [i for i, reason in enumerate(reasons) if reason is None]
            item.errors += [(f, r) for f, r in zip(item.frames, reasons, strict=True) if r]
            item.frames, item.inputs = (
                [item.frames[i] for i in keep],
                [item.inputs[i] for i in keep],
            )
            dropped |= len(keep) < len(reasons)
        if not dropped:
            raise
    _embed_all(embedder, [item for item in todo if item.inputs])


def _unreadable(frame) -> str | None:
    """Why an image file cannot be decoded, or None (decoded video frames are arrays)."""
    if isinstance(frame, np.ndarray):
        return None
    from keras_faceset.data.images import load_image

    try:
        load_image(frame)
    except READ_ERRORS as error:
        return str(error)
    return None


def _embed_all(embedder, items: Sequence[Item]) -> None:
    if not items:
        return
    sets = [item.inputs for item in items]
    embeddings, weights, faces = embedder.embed_sets(sets, return_faces=True)
    start = 0
    for item, embedding, frame_weights in zip(items, embeddings, weights, strict=True):
        stop = start + len(item.inputs)
        item.embedding, item.weights = embedding, frame_weights
        if faces is not None:
            item.faces = {
                "face_found": ~faces.fallback[start:stop],
                "detector_score": faces.confidence[start:stop],
                "box": faces.boxes[start:stop],
                "face_count": faces.face_count[start:stop],
            }
        start = stop


def _several_faces_notes(items: Sequence[Item]) -> list[str]:
    """``a.jpg: 2 faces, used the one at box [x1, y1, x2, y2] (score 0.99)`` per such frame."""
    notes = []
    for item in items:
        for i, frame in enumerate(item.frames if item.faces is not None else ()):
            face = item.face(i)
            if face["face_count"] > 1:
                box = ", ".join(str(round(v)) for v in face["box"])
                notes.append(
                    f"{frame}: {face['face_count']} faces, used the one at box [{box}] "
                    f"(score {face['detector_score']:.3f})"
                )
    return notes


def _note(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


@dataclass(frozen=True)
class Rule:
    """verify's decision rule: same person iff cosine distance <= threshold."""

    threshold: float
    far: float | None
    text: str


def _rule(args: argparse.Namespace, embedder) -> Rule:
    """--threshold, else the preset's threshold at --far (default 1e-3, or the strictest FAR
    measured: 1e-2 for set presets)."""
    if args.threshold is not None:
        return Rule(args.threshold, None, f"threshold {args.threshold:g} (given)")
    measured = embedder.thresholds
    if not measured:
        if args.model_file:
            raise ValueError(
                f"{args.model_file} has no measured thresholds (the preset's belong to its own "
                "weights): give --threshold, a cosine distance (`keras-faceset evaluate "
                f"{args.model} ... --model {args.model_file} --calibrate` measures them)"
            )
        raise ValueError(f"{args.model} has no measured thresholds: give --threshold")
    far = args.far
    if far is None:
        far = 1e-3 if "1e-03" in measured else min(map(float, measured))
    threshold = measured.get(f"{far:.0e}")
    if threshold is None:
        fars = ", ".join(f"{float(key):g}" for key in sorted(measured, key=float))
        raise ValueError(
            f"no threshold measured for {args.model} at FAR {far:g} (measured at {fars}): "
            "give one of those --far or --threshold"
        )
    text = f"{far:.0e}".replace("e-0", "e-")
    return Rule(threshold, far, f"FAR {text} (threshold {threshold:.4f})")


def _set_input_reason(model: str, path: str) -> str | None:
    """Why `path` cannot be an input of image preset `model`: folders and videos are sets."""
    from keras_faceset import zoo
    from keras_faceset.data.inputs import is_video

    if Path(path).is_dir():
        kind = "a folder"
    elif Path(path).is_file() and is_video(path):
        kind = "a video"
    else:
        return None
    sets = ", ".join(name for name, preset in zoo.PRESETS.items() if preset.is_set_model)
    return (
        f"{path} is {kind}: folders and videos are sets of frames, which a set preset compares "
        f"({sets}; e.g. `keras-faceset verify nan A B`); {model} compares two images"
    )


def _decide(a: Item, b: Item, rule: Rule, allow_no_face: bool) -> dict:
    """A pair's distance, decision (`same`) and `error` (why there is no decision)."""
    from keras_faceset.embedder import cosine_distance

    unread = [reason for item in (a, b) for _, reason in item.errors]
    if unread:
        return {"distance": None, "same": None, "no_face": [], "error": "; ".join(unread)}
    no_face = a.faceless + b.faceless
    if no_face and not allow_no_face:
        error = (
            f"no face found in {', '.join(no_face)}: no decision (--allow-no-face decides on "
            "the central crop)"
        )
        return {"distance": None, "same": None, "no_face": no_face, "error": error}
    distance = float(cosine_distance(a.embedding, b.embedding))
    same = distance <= rule.threshold
    return {"distance": distance, "same": same, "no_face": no_face, "error": None}


def _verify(args: argparse.Namespace) -> int:
    if args.pairs is not None:
        return _verify_pairs(args)
    if args.b is None:
        raise ValueError("give two inputs A B, or --pairs FILE.csv")
    if args.output is not None:
        raise ValueError("-o/--output writes the rows of --pairs")
    embedder = _embedder(args)
    rule = _rule(args, embedder)
    for path in (args.a, args.b):
        reason = None if embedder.takes_sets else _set_input_reason(args.model, path)
        if reason:
            raise ValueError(reason)
    a, b = _read_items([args.a, args.b], args.max_frames, per_image=False)
    _raise_errors([a, b])  # before embedding anything
    _embed_items(embedder, [a, b])
    _raise_errors([a, b])  # a frame that could not be decoded
    outcome = _decide(a, b, rule, args.allow_no_face)
    if args.json:
        print(json.dumps(_verify_json(args, embedder, rule, a, b, outcome)))
    else:
        print(_model_line(args, embedder))
        for side, item in zip("AB", (a, b), strict=True):
            if embedder.takes_sets:
                named = ", ".join(
                    f"{Path(f).name} {w:.3f}"
                    for f, w in zip(item.frames, item.weights, strict=True)
                )
                print(f"set {side} weights: {named}")
    _note(_several_faces_notes([a, b]))
    if outcome["error"]:
        raise ValueError(outcome["error"])
    verdict = "same person" if outcome["same"] else "different people"
    if not args.json:
        print(f"cosine distance: {outcome['distance']:.4f}")
        print(f"decision at {rule.text}: {verdict}")
    if outcome["no_face"]:
        _note([f"no face found in {', '.join(outcome['no_face'])}; decided on the central crop"])
    return 0 if outcome["same"] else 1


def _raise_errors(items: Sequence[Item]) -> None:
    reasons = [reason for item in items for _, reason in item.errors]
    if reasons:
        raise ValueError("; ".join(reasons))


def _verify_json(args: argparse.Namespace, embedder, rule: Rule, a: Item, b: Item, outcome) -> dict:
    """verify's answer as one JSON object (see `verify --help`)."""
    faces = None
    if embedder.align != "center":
        faces = {
            side: item.face(0)
            if not embedder.takes_sets
            else [{"frame": f, **item.face(i)} for i, f in enumerate(item.frames)]
            for side, item in (("a", a), ("b", b))
        }
    same = outcome["same"]
    answer = {
        "model": args.model,
        "model_file": args.model_file,
        "alignment": embedder.description,
        "a": args.a,
        "b": args.b,
        "distance": outcome["distance"],
        "threshold": rule.threshold,
        "far": rule.far,
        "same": same,
        "decision": None if same is None else "same person" if same else "different people",
        "faces": faces,
        "error": outcome.get("error"),
    }
    if embedder.takes_sets:
        answer["weights"] = {
            side: [
                {"frame": f, "weight": round(float(w), 6)}
                for f, w in zip(item.frames, item.weights, strict=True)
            ]
            for side, item in (("a", a), ("b", b))
        }
    return answer


@dataclass(frozen=True)
class PairRow:
    """A row of a --pairs file: its line, the two inputs, or why it is not a pair."""

    line: int
    a: str = ""
    b: str = ""
    error: str | None = None


def _read_pairs(path: Path) -> list[PairRow]:
    """The rows of a CSV of pairs: columns a, b (an optional header names them; other columns
    are ignored); paths as given, relative to the working directory."""
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    with open(path, newline="") as handle:
        lines = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(handle), 1)]
    lines = [(n, row) for n, row in lines if any(row)]
    columns = (0, 1)
    if lines and {"a", "b"} <= {c.lower() for c in lines[0][1]}:
        header = [c.lower() for c in lines.pop(0)[1]]
        columns = (header.index("a"), header.index("b"))
    rows = []
    for number, row in lines:
        pair = [row[c] if c < len(row) else "" for c in columns]
        if all(pair):
            rows.append(PairRow(number, *pair))
        else:
            rows.append(PairRow(number, *pair, error="expected two paths, in columns a and b"))
    if not rows:
        raise ValueError(f"{path} holds no pairs: give a CSV with columns a,b")
    return rows


def _verify_pairs(args: argparse.Namespace) -> int:
    if args.a is not None:
        raise ValueError("give two inputs A B or --pairs FILE.csv, not both")
    if args.json:
        raise ValueError("--json answers for one pair; --pairs writes CSV rows")
    rows = _read_pairs(Path(args.pairs))
    embedder = _embedder(args)
    rule = _rule(args, embedder)
    names = list(dict.fromkeys(x for row in rows if row.error is None for x in (row.a, row.b)))
    items = {}
    for name in names:
        reason = None if embedder.takes_sets else _set_input_reason(args.model, name)
        if reason:
            items[name] = Item(name, errors=[(name, reason)])
    readable = [name for name in names if name not in items]
    items.update((item.name, item) for item in _read_items(readable, args.max_frames, False))
    _embed_items(embedder, list(items.values()))
    _note(_several_faces_notes(list(items.values())))
    table, failed = [], 0
    for row in rows:
        outcome = {"error": row.error}
        if row.error is None:
            outcome = _decide(items[row.a], items[row.b], rule, args.allow_no_face)
        if outcome.get("error"):
            failed += 1
            print(
                f"skipped line {row.line} ({row.a}, {row.b}): {outcome['error']}", file=sys.stderr
            )
        elif outcome["no_face"]:
            _note([f"line {row.line}: no face found in {', '.join(outcome['no_face'])}"])
        distance = outcome.get("distance")
        table.append(
            {
                "a": row.a,
                "b": row.b,
                "distance": "" if distance is None else f"{distance:.6f}",
                "threshold": f"{rule.threshold:g}",
                "same": "" if outcome.get("same") is None else outcome["same"],
                "no_face": "; ".join(outcome.get("no_face", [])),
                "error": outcome.get("error") or "",
            }
        )
    _write_csv(table, None if args.output is None else Path(args.output))
    same = sum(row["same"] is True for row in table)
    print(
        f"{len(rows)} pairs at {rule.text}: {same} same, {len(rows) - same - failed} different, "
        f"{failed} skipped",
        file=sys.stderr,
    )
    return 2 if failed else 0


def _write_csv(rows: list[dict], path: Path | None) -> None:
    """Rows with the same keys as CSV, to `path` (atomically) or stdout."""
    from keras_faceset.files import atomic_path

    if path is None:
        writer = csv.DictWriter(sys.stdout, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _embed(args: argparse.Namespace) -> None:
    output = Path(args.output)
    if output.suffix not in (".npz", ".parquet"):
        raise ValueError(f"output must end in .npz or .parquet, got {output.name}")
    if output.suffix == ".parquet":
        _parquet_engine()
    embedder = _embedder(args)
    items = _read_items(args.inputs, args.max_frames, per_image=not embedder.takes_sets)
    _embed_items(embedder, items)
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
        _write_csv([{"path": p, "reason": r} for p, r in errors], errors_csv)
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


def _evaluate(args: argparse.Namespace) -> None:
    if (args.protocol == "folder") != (args.root is not None):
        raise ValueError("give ROOT for `evaluate MODEL folder ROOT` (and only for folder)")
    import time

    import pandas as pd

    embedder = _embedder(args)
    start = time.perf_counter()
    if args.protocol == "lfw":
        from keras_faceset.eval import evaluate_lfw

        summary, scores = evaluate_lfw(
            embedder, args.data, view=args.view, pairs_per_fold=args.pairs_per_fold
        )
        protocols = [
            f"lfw_{args.view}"
            + (f"_first{args.pairs_per_fold}perfold" if args.pairs_per_fold else "")
        ]
    elif args.protocol == "sets":
        from keras_faceset.eval.sets import evaluate_lfw_sets

        variants = ("clean", "degraded") if args.variant == "both" else (args.variant,)
        summary, scores = evaluate_lfw_sets(
            embedder, args.data, variants, args.protocol_dir, _frame_cache(args, embedder)
        )
        protocols = list(summary["protocol"])
    else:
        from keras_faceset.eval.folder import evaluate_folder

        summary, scores = evaluate_folder(
            embedder, args.root, args.max_pairs, args.seed, args.max_frames
        )
        protocols = [
            f"folder_{Path(args.root).resolve().name}"
            + (f"_max{args.max_pairs}_seed{args.seed}" if args.max_pairs else "")
        ]
    summary.insert(1, "alignment", embedder.description)
    if args.model_file:
        summary.insert(1, "model_file", args.model_file)
    summary = _distance_threshold(summary)
    summary["fallbacks"] = embedder.fallbacks
    summary["seconds"] = round(time.perf_counter() - start, 1)
    with pd.option_context("display.width", 200, "display.max_colwidth", 90):
        print(_displayed(summary).set_index("protocol").T.to_string())
    for protocol, (_, row) in zip(protocols, summary.iterrows(), strict=True):
        if args.out is not None:
            _save_report(args, protocol, row, scores)
        if args.record:
            _record(args, embedder, protocol, row)
    if args.calibrate:
        _print_calibration(args, embedder, scores)


def _distance_threshold(summary):
    """The summary's best threshold (a cosine similarity) as the cosine distance that verify,
    --calibrate and the presets use: column ``distance_threshold``."""
    if not (summary["metric"] == "cosine").all():
        raise ValueError("expected cosine-similarity scores")
    at = summary.columns.get_loc("threshold")
    distance = 1.0 - summary.pop("threshold")
    summary.insert(at, "distance_threshold", distance)
    return summary


def _displayed(summary):
    """The summary to print: a TAR@FAR its impostor pairs cannot measure (NaN, with an
    ``impostor`` count) reads ``n/a (375 impostor pairs < 1,000)``."""
    shown = summary.astype(object)
    if "impostor" not in summary:
        return shown
    for column in [c for c in summary if c.startswith("tar@far=")]:
        far = float(column.split("=")[1])
        for i, value in summary[column].items():
            if np.isnan(value):
                impostor = int(summary.at[i, "impostor"])
                shown.at[i, column] = f"n/a ({impostor:,} impostor pairs < {round(1 / far):,})"
    return shown


def _save_report(args: argparse.Namespace, protocol: str, row, scores) -> None:
    """summary.csv, summary.json, scores.csv and (with matplotlib) the ROC and histogram PNGs of
    one protocol in --out (LFW-sets: a sub-folder per variant)."""
    import importlib.util

    from keras_faceset.eval.report import save_report

    sets = args.protocol == "sets"
    split = row["protocol"] if sets else scores["split"].iloc[-1]
    out = Path(args.out) / protocol if sets else Path(args.out)
    plots = importlib.util.find_spec("matplotlib") is not None
    files = save_report(row.to_frame().T, scores[scores["split"] == split], out, roc_png=plots)
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    if not plots:
        print("note: no ROC and histogram plots without matplotlib (pip install matplotlib)")


def _frame_cache(args: argparse.Namespace, embedder):
    """The LFW-sets frame cache file in --frame-cache: one per `FaceEmbedder.frame_key` (which
    names a --model file's content: its backbone may have been fine-tuned)."""
    import hashlib

    if args.frame_cache is None:
        return None
    digest = hashlib.sha256(embedder.frame_key.encode()).hexdigest()[:12]
    return Path(args.frame_cache) / f"lfw_sets_{embedder.frame_key.split()[0]}_{digest}.npz"


def _record(args: argparse.Namespace, embedder, protocol: str, row) -> None:
    from keras_faceset.eval.results import record_result

    model = Path(args.model_file).stem if args.model_file else embedder.preset.head.results_model
    record_result(
        args.record,
        {
            "model": model,
            "protocol": protocol,
            "alignment": args.align + ("+flip" if args.flip else ""),
            "accuracy": row["accuracy"],
            "std": row["std"],
            "auc": row["auc"],
            "tar@far=1e-2": row["tar@far=0.01"],
            "tar@far=1e-3": row["tar@far=0.001"],
            "pairs": row["pairs"],
            "command": "keras-faceset " + " ".join(sys.argv[1:]),
        },
    )
    print(f"recorded {protocol} in {args.record}")


def _print_calibration(args: argparse.Namespace, embedder, scores) -> None:
    """Distance thresholds at the measurable FARs of all the evaluated pairs, pooled: the
    preset entry to paste into keras_faceset/zoo/presets.py, or for a --model file the
    --threshold to verify with."""
    from keras_faceset.eval.verification import CALIBRATION_FARS, calibrate, measurable_fars

    same = scores["same"].to_numpy(bool)
    different = int((~same).sum())
    fars = measurable_fars(different)
    splits = " + ".join(dict.fromkeys(scores["split"]))
    print(f"calibration on {splits}: {len(same)} pairs, {different} impostor")
    for far in sorted(set(CALIBRATION_FARS) - set(fars), reverse=True):
        print(f"  FAR {far:.0e}: not measurable ({different} impostor pairs < {round(1 / far):,})")
    if not fars:
        return
    thresholds = calibrate(1.0 - scores["score"].to_numpy(), same, fars)
    if args.model_file:
        for far, value in thresholds.items():
            command = f"verify {args.model} --model {args.model_file} --threshold {value:.4f}"
            print(f"  FAR {far}: {command}")
        return
    entry = ", ".join(f'"{far}": {value:.4f}' for far, value in thresholds.items())
    print(f"preset {args.model} (keras_faceset/zoo/presets.py):")
    print(f"    thresholds={{{entry}}},")


def _add_verbose(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="keep TensorFlow's log lines (off by default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-faceset", description=__doc__)
    parser.add_argument("--version", action="version", version=f"keras-faceset {__version__}")
    _add_verbose(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, **kwargs) -> argparse.ArgumentParser:
        command = commands.add_parser(name, **kwargs)
        _add_verbose(command, default=argparse.SUPPRESS)  # also after the command
        return command

    add_command("list", help="presets with licence and measured accuracy").set_defaults(run=_list)
    info = add_command("info", help="a preset's model card")
    info.add_argument("model")
    info.set_defaults(run=_info)

    download = add_command("download", help="fetch and convert weights into the cache")
    download.add_argument("model", nargs="?", default="")
    download.add_argument("--all", action="store_true", help="every preset")
    download.add_argument("--cache-dir", default=None)
    download.set_defaults(run=_download)

    def add_model_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("model", help="a preset name (see `keras-faceset list`)")
        command.add_argument(
            "--model",
            dest="model_file",
            metavar="PATH",
            default=None,
            help="a .keras model to run instead of the preset's weights (e.g. fine-tuned from "
            "it); MODEL still gives the crop. It has no measured thresholds: verify needs "
            "--threshold (evaluate --calibrate measures them)",
        )
        command.add_argument(
            "--align",
            choices=("preset", "center"),
            default="preset",
            help="preset: detect with MTCNN and crop as the weights expect; center: fixed "
            "central crop, no detection",
        )
        command.add_argument("--chip-cache", default=None, help="folder caching aligned chips")
        command.add_argument(
            "--flip", action="store_true", help="add the mirrored chip's embedding (test-time)"
        )
        command.add_argument(
            "--precision",
            choices=("float32", "bfloat16"),
            default="float32",
            help="bfloat16: batch norm folded, bfloat16 compute (~1.9x faster at batch 32 on "
            "CPUs with AVX512_BF16, LFW accuracy unchanged)",
        )
        command.add_argument(
            "--max-frames", type=int, default=16, help="frames sampled evenly from a video"
        )
        command.add_argument(
            "-q", "--quiet", action="store_true", help="no progress bars (none when not a TTY)"
        )

    verify = add_command(
        "verify",
        help="are two face images (or, for set models, two sets: folders or videos) the same "
        "person?",
        description="Compare A and B (image presets: two images; set presets: two sets, each a "
        "folder of frames, a video or an image) by the cosine distance of their embeddings. "
        "Exit code: 0 same person, 1 different people, 2 no decision (an error, no face found, "
        "no threshold). --json prints one object: model, model_file, alignment, a, b, distance, "
        "threshold, far, same, decision, faces (per side: face_found, detector_score, box "
        "x1,y1,x2,y2, face_count; for set presets a list per frame), error, and for set presets "
        "weights. --pairs FILE.csv (columns a,b; header optional) verifies every row and "
        "writes a,b,distance,threshold,same,no_face,error rows; a row that cannot be decided "
        "is reported and skipped (exit 2 if any was).",
    )
    add_model_options(verify)
    verify.add_argument("a", nargs="?", help="image, or for set presets a folder or video")
    verify.add_argument("b", nargs="?", help="the other image (folder, video)")
    verify.add_argument(
        "--far",
        type=float,
        default=None,
        help="false accept rate of the preset's threshold (default 1e-3, or the strictest "
        "measured: 1e-2 for set models)",
    )
    verify.add_argument("--threshold", type=float, default=None, help="cosine distance")
    verify.add_argument(
        "--allow-no-face",
        action="store_true",
        help="decide even when no face is found in an image (on its central crop)",
    )
    verify.add_argument("--json", action="store_true", help="one JSON object on stdout")
    verify.add_argument(
        "--pairs",
        default=None,
        metavar="FILE.csv",
        help="a CSV of pairs (columns a,b; paths relative to the working directory)",
    )
    verify.add_argument(
        "-o", "--output", default=None, help="--pairs: write the rows here, not to stdout"
    )
    verify.set_defaults(run=_verify)

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
    embed.set_defaults(run=_embed)

    evaluate = add_command(
        "evaluate",
        help="verification accuracy, ROC, TAR@FAR on LFW, LFW-sets or a labelled folder",
        description="lfw: LFW View 2 (or View 1) image pairs. sets: LFW-sets set pairs "
        "(docs/lfw_sets.md), clean and degraded. folder ROOT: every genuine and impostor pair "
        "(or --max-pairs of each) of ROOT/<identity>/<image> or ROOT/<identity>/<set or video>; "
        "TAR@FAR only at FARs its impostor pairs can measure (at least 1/FAR of them). "
        "Image models embed a set as the mean of its frames, set models an image as a set of "
        "one. Prints the summary (thresholds as cosine distances); --out writes the files.",
    )
    add_model_options(evaluate)
    evaluate.add_argument("protocol", choices=("lfw", "sets", "folder"))
    evaluate.add_argument("root", nargs="?", default=None, help="labelled folder (folder only)")
    evaluate.add_argument("--data", default=None, help="LFW folder (default $KERAS_FACESET_DATA)")
    evaluate.add_argument("--view", choices=("view2", "view1"), default="view2", help="lfw")
    evaluate.add_argument("--pairs-per-fold", type=int, default=None, help="lfw: quick subset")
    evaluate.add_argument(
        "--variant", choices=("clean", "degraded", "both"), default="both", help="sets"
    )
    evaluate.add_argument(
        "--protocol-dir", default=None, help="sets: folder of lfw_sets_*.jsonl (default: shipped)"
    )
    evaluate.add_argument(
        "--frame-cache", default=None, help="sets: folder caching the frame embeddings"
    )
    evaluate.add_argument("--max-pairs", type=int, default=None, help="folder: pairs per class")
    evaluate.add_argument("--seed", type=int, default=0, help="folder: seed of --max-pairs")
    evaluate.add_argument(
        "--out",
        default=None,
        help="folder to write summary CSV/JSON, per-pair scores and ROC into (default: none)",
    )
    evaluate.add_argument("--record", default=None, help="results CSV to add the row(s) to")
    evaluate.add_argument(
        "--calibrate",
        action="store_true",
        help="print distance thresholds at the measurable FARs of the pairs (pooled), as the "
        "preset's thresholds entry",
    )
    evaluate.set_defaults(run=_evaluate)

    from keras_faceset.export.cli import add_export_command

    _add_verbose(add_export_command(commands), default=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`build_parser`'s arguments. argparse leaves verify's optional A B empty when an option
    comes between them and MODEL (`verify nan --model f.keras A B`): they are taken from what
    it leaves over."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "run", None) is _verify:
        while extra and not extra[0].startswith("-") and args.b is None:
            setattr(args, "a" if args.a is None else "b", extra.pop(0))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.verbose:
            quiet_tensorflow()
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, OSError, ImportError) as error:
        print(f"keras-faceset {args.command}: error: {error}", file=sys.stderr)
        return 2 if args.command == "verify" else 1


if __name__ == "__main__":
    sys.exit(main())

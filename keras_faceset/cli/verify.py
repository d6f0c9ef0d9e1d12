"""`verify`: are two faces (two sets) the same person? One pair, or every row of --pairs."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_faceset.cli.common import (
    Item,
    add_model_options,
    embed_items,
    make_embedder,
    model_line,
    note,
    raise_errors,
    read_items,
    several_faces_notes,
    write_csv,
)


def register(add_command) -> None:
    """Add the command through `add_command(name, **kwargs) -> parser`."""
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
    verify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.pairs is not None:
        return _verify_pairs(args)
    if args.b is None:
        raise ValueError("give two inputs A B, or --pairs FILE.csv")
    if args.output is not None:
        raise ValueError("-o/--output writes the rows of --pairs")
    embedder = make_embedder(args)
    rule = _rule(args, embedder)
    for path in (args.a, args.b):
        reason = None if embedder.takes_sets else _set_input_reason(args.model, path)
        if reason:
            raise ValueError(reason)
    a, b = read_items([args.a, args.b], args.max_frames, per_image=False)
    raise_errors([a, b])  # before embedding anything
    embed_items(embedder, [a, b])
    raise_errors([a, b])  # a frame that could not be decoded
    outcome = _decide(a, b, rule, args.allow_no_face)
    if args.json:
        print(json.dumps(_verify_json(args, embedder, rule, a, b, outcome)))
    else:
        print(model_line(args, embedder))
        for side, item in zip("AB", (a, b), strict=True):
            if embedder.takes_sets:
                named = ", ".join(
                    f"{Path(f).name} {w:.3f}"
                    for f, w in zip(item.frames, item.weights, strict=True)
                )
                print(f"set {side} weights: {named}")
    note(several_faces_notes([a, b]))
    if outcome["error"]:
        raise ValueError(outcome["error"])
    verdict = "same person" if outcome["same"] else "different people"
    if not args.json:
        print(f"cosine distance: {outcome['distance']:.4f}")
        print(f"decision at {rule.text}: {verdict}")
    if outcome["no_face"]:
        note([f"no face found in {', '.join(outcome['no_face'])}; decided on the central crop"])
    return 0 if outcome["same"] else 1


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


@dataclass(frozen=True)
class Rule:
    """verify's decision rule: same person iff cosine distance <= threshold."""

    threshold: float
    far: float | None
    text: str


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
    embedder = make_embedder(args)
    rule = _rule(args, embedder)
    names = list(dict.fromkeys(x for row in rows if row.error is None for x in (row.a, row.b)))
    items = {}
    for name in names:
        reason = None if embedder.takes_sets else _set_input_reason(args.model, name)
        if reason:
            items[name] = Item(name, errors=[(name, reason)])
    readable = [name for name in names if name not in items]
    items.update((item.name, item) for item in read_items(readable, args.max_frames, False))
    embed_items(embedder, list(items.values()))
    note(several_faces_notes(list(items.values())))
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
            note([f"line {row.line}: no face found in {', '.join(outcome['no_face'])}"])
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
    write_csv(table, None if args.output is None else Path(args.output))
    same = sum(row["same"] is True for row in table)
    print(
        f"{len(rows)} pairs at {rule.text}: {same} same, {len(rows) - same - failed} different, "
        f"{failed} skipped",
        file=sys.stderr,
    )
    return 2 if failed else 0

"""What the commands that embed share: the model options, the embedder they make, the `Item`s
they read and embed (a corrupt input skipped with its reason), notes and CSV output."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_faceset.files import READ_ERRORS

FACE_FIELDS = ("face_found", "detector_score", "box", "face_count")
"""Per image (frame): a face was detected; the detector's score (0 without a face); the region
cropped, x1, y1, x2, y2 (the chosen face's box, or the central crop without a face); the
faces detected in the image."""


def add_model_options(command: argparse.ArgumentParser) -> None:
    """MODEL, --model PATH, --align, --detector, --chip-cache, --flip, --precision,
    --calibration DIR, --max-frames, -q: the options of every command that embeds."""
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
    command.add_argument(
        "--detector",
        choices=("graph", "package"),
        default="graph",
        help="graph: MTCNN in one TensorFlow graph (default); package: the mtcnn package "
        "(the same faces, slower)",
    )
    command.add_argument("--chip-cache", default=None, help="folder caching aligned chips")
    command.add_argument(
        "--flip", action="store_true", help="add the mirrored chip's embedding (test-time)"
    )
    command.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "int8", "int8-dynamic"),
        default="float32",
        help="float32 (the default on every CPU: the same embeddings everywhere); bfloat16: "
        "bfloat16 compute, about 2x images/s at batch 32 on CPUs with AVX512_BF16 or AMX, "
        "LFW unchanged (opt in there); int8 (image presets): quantized once with TFLite, "
        "calibrated on 256 LFW faces (needs LFW, $KERAS_FACESET_DATA) or on --calibration, "
        "run with XNNPack; LFW unchanged for facenet, 0.2 point lower for dlib_resnet; "
        "int8-dynamic (image presets): int8 weights, activations quantized at run time, so "
        "no calibration faces and no LFW; LFW within 0.1 point for both, our fastest facenet "
        "path in the measured runs (docs/performance.md)",
    )
    add_calibration_option(command)
    command.add_argument(
        "--max-frames", type=int, default=16, help="frames sampled evenly from a video"
    )
    command.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (none when not a TTY)"
    )


def add_calibration_option(command: argparse.ArgumentParser) -> None:
    """--calibration DIR: the faces `--precision int8` calibrates on instead of LFW's (the
    figures are `keras_faceset.models.quantize`'s, not imported: parsing loads no Keras)."""
    command.add_argument(
        "--calibration",
        metavar="DIR",
        default=None,
        help="with --precision int8: calibrate on the face photos in DIR (searched "
        "recursively; up to 256 sampled, at least 32 must show a face) instead of LFW's; "
        "each set of photos gets its own cached model",
    )


def add_verbose(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="keep TensorFlow's log lines (off by default)",
    )


def make_embedder(args: argparse.Namespace):
    from keras_faceset.embedder import FaceEmbedder

    if args.quiet:
        from keras_faceset.progress import set_enabled

        set_enabled(False)
    return FaceEmbedder(args.model, **embedder_options(args))


def embedder_options(args: argparse.Namespace) -> dict:
    """`FaceEmbedder`'s keyword arguments from the options `add_model_options` adds."""
    return {
        "align": args.align,
        "chip_cache": args.chip_cache,
        "flip": args.flip,
        "precision": args.precision,
        "model_file": args.model_file,
        "detector": args.detector,
        "calibration": args.calibration,
    }


def model_line(args: argparse.Namespace, embedder) -> str:
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


def read_items(inputs: Sequence[str], max_frames: int, per_image: bool) -> list[Item]:
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


def embed_items(embedder, items: Sequence[Item]) -> None:
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


def several_faces_notes(items: Sequence[Item]) -> list[str]:
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


def note(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


def raise_errors(items: Sequence[Item]) -> None:
    reasons = [reason for item in items for _, reason in item.errors]
    if reasons:
        raise ValueError("; ".join(reasons))


def write_csv(rows: list[dict], path: Path | None) -> None:
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

"""`detect`: every face of each image (box, score, five landmarks) as CSV or JSON, and annotated
PNGs with `--draw`; the in-graph MTCNN (`keras_faceset.detect.Mtcnn`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from keras_faceset.cli.common import READ_ERRORS, write_csv

BATCH = 8
"""Images detected together (a zero-padded batch with their true sizes)."""


def register(add_command) -> None:
    """Add the command through `add_command(name, **kwargs) -> parser`."""
    detect = add_command(
        "detect",
        help="find the faces of images: boxes, five landmarks, scores (CSV/JSON, --draw PNGs)",
        description="MTCNN (the in-graph cascade, the mtcnn package's weights and rules) on "
        "each image: every face's box x1, y1, x2, y2 and landmarks (left_eye, right_eye, nose, "
        "mouth_left, mouth_right; 'left' is the image's left) in pixels, and its score. CSV: "
        "one row per face (an image without a face: one row with faces 0); JSON: one object "
        "per image with its faces. A file that cannot be read (missing, not an image, "
        "truncated) is skipped and reported on stderr; the exit code is 0 when any image was "
        "read.",
    )
    detect.add_argument("inputs", nargs="+", help="image files or folders of images")
    detect.add_argument(
        "-o", "--output", default=None, help="out.csv or out.json (default: CSV on stdout)"
    )
    detect.add_argument(
        "--draw",
        metavar="DIR",
        default=None,
        help="write DIR/<image name>.png: the image with each face's box, landmarks and score",
    )
    detect.add_argument(
        "--max-faces", type=int, default=16, help="faces kept per image, the largest (16)"
    )
    detect.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    output = None if args.output is None else Path(args.output)
    if output is not None and output.suffix not in (".csv", ".json"):
        raise ValueError(f"output must end in .csv or .json, got {output.name}")
    if args.max_faces < 1:
        raise ValueError(f"--max-faces must be at least 1, got {args.max_faces}")
    paths, images, skipped = _read(args.inputs)
    for path, reason in skipped:
        print(f"keras-faceset detect: skipped {path}: {reason}", file=sys.stderr)
    if not images:
        raise ValueError("no image could be read")
    from keras_faceset.detect import Mtcnn

    detector = Mtcnn(max_faces=args.max_faces)
    faces = []
    for start in range(0, len(images), BATCH):
        faces += _detect(detector, images[start : start + BATCH])
    if output is not None and output.suffix == ".json":
        _write_json(output, paths, faces)
    else:
        write_csv(_csv_rows(paths, faces), output)
    if args.draw is not None:
        _draw(Path(args.draw), paths, images, faces)
    total = sum(len(found["scores"]) for found in faces)
    if output is not None:  # else stdout is the CSV
        print(f"{total} faces in {len(images)} images -> {output}")
    if skipped:
        print(f"{len(skipped)} skipped (could not be read)", file=sys.stderr)


def _read(inputs) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
    """The images of `inputs` (folders expanded), decoded upright, and (path, reason) of what
    could not be read."""
    from keras_faceset.data.images import load_image
    from keras_faceset.data.inputs import image_paths

    paths, images, skipped = [], [], []
    for given in inputs:
        try:
            found = image_paths([given])
        except READ_ERRORS as error:
            skipped.append((str(given), str(error)))
            continue
        for path in found:
            try:
                images.append(load_image(path).numpy())
            except READ_ERRORS as error:
                skipped.append((str(path), str(error)))
                continue
            paths.append(str(path))
    return paths, images, skipped


def _detect(detector, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per image: its faces' "boxes" (k, 4), "scores" (k,), "landmarks" (k, 5, 2)."""
    sizes = np.array([image.shape[:2] for image in images], np.int32)
    padded = np.zeros((len(images), *sizes.max(axis=0), 3), np.uint8)
    for i, image in enumerate(images):
        padded[i, : image.shape[0], : image.shape[1]] = image
    found = {key: value.numpy() for key, value in detector.detect(padded, sizes).items()}
    keys = ("boxes", "scores", "landmarks")
    return [{key: found[key][i, :count] for key in keys} for i, count in enumerate(found["counts"])]


def _face(found: dict, k: int) -> dict:
    """Face k as JSON values: box, score, landmarks by name."""
    from keras_faceset.detect import LANDMARK_NAMES

    points = found["landmarks"][k]
    return {
        "box": [round(float(v), 2) for v in found["boxes"][k]],
        "score": round(float(found["scores"][k]), 4),
        "landmarks": {
            name: [round(float(x), 2), round(float(y), 2)]
            for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True)
        },
    }


def _csv_rows(paths: list[str], faces: list[dict]) -> list[dict]:
    from keras_faceset.detect import LANDMARK_NAMES

    columns = ["face", "score", "x1", "y1", "x2", "y2"]
    columns += [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]
    rows = []
    for path, found in zip(paths, faces, strict=True):
        count = len(found["scores"])
        if count == 0:
            rows.append({"path": path, "faces": 0, **dict.fromkeys(columns, "")})
        for k in range(count):
            face = _face(found, k)
            points = [v for name in LANDMARK_NAMES for v in face["landmarks"][name]]
            values = [k, face["score"], *face["box"], *points]
            rows.append({"path": path, "faces": count, **dict(zip(columns, values, strict=True))})
    return rows


def _write_json(output: Path, paths: list[str], faces: list[dict]) -> None:
    from keras_faceset.files import atomic_path

    records = [
        {"path": path, "faces": [_face(found, k) for k in range(len(found["scores"]))]}
        for path, found in zip(paths, faces, strict=True)
    ]
    with atomic_path(output) as tmp:
        Path(tmp).write_text(json.dumps(records, indent=1))


def _draw(folder: Path, paths: list[str], images: list[np.ndarray], faces: list[dict]) -> None:
    """folder/<name>.png per image: boxes (green), landmarks (red) and scores; a name that
    repeats (same file name in two folders) gets _2, _3, ..."""
    import cv2

    from keras_faceset.files import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    used: dict[str, int] = {}
    for path, image, found in zip(paths, images, faces, strict=True):
        canvas = np.ascontiguousarray(image[:, :, ::-1])  # BGR for OpenCV
        for box, score, points in zip(
            found["boxes"], found["scores"], found["landmarks"], strict=True
        ):
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), 2)
            cv2.putText(canvas, f"{score:.2f}", (x1, max(12, y1 - 4)), 0, 0.5, (0, 255, 0), 1)
            for x, y in points:
                cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), 2, (0, 0, 255), -1)
        stem = Path(path).stem
        used[stem] = used.get(stem, 0) + 1
        name = stem if used[stem] == 1 else f"{stem}_{used[stem]}"
        with atomic_path(folder / f"{name}.png", suffix=".png") as tmp:
            cv2.imwrite(str(tmp), canvas)

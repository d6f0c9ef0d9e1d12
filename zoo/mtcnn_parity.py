"""Parity and speed of the in-graph MTCNN (`keras_faceset.detect.Mtcnn`) against the `mtcnn`
package as `keras_faceset.align.MtcnnDetector` runs it.

    python -m zoo.mtcnn_parity --data /path/to/lfw [--images 1000] [--collages 200] [--seed 0]
        [--speed-rounds 10] [--tight-crops 300] [--crops FOLDER]

Faces of the two are matched per image (greedy, IoU >= 0.5, best first). Reported on the first
`--images` LFW images (sorted by path) and on `--collages` 2x2 collages (500x500) of LFW images
drawn with `--seed`: recall (package faces we find), extra faces (ours the package does not
find, per package face), the median / 5th percentile box IoU and the median / 95th percentile
landmark error (mean distance of the five points, px) of matched faces. Parity runs without the
retry (the package has none); images the default retry changes are counted. Speed: LFW
250x250 in batches of 32, both detectors alternated `--speed-rounds` times after a warm-up:
median images/s and the median [min-max] of the paired ratios. Faces that fill the frame:
detection rate with and without the retry on `--tight-crops` LFW faces cut inside the package's
box, and with `--crops` on a folder of pre-cropped faces (e.g. Extended Yale B).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from keras_faceset.align import MtcnnDetector
from keras_faceset.data import LFW
from keras_faceset.data.images import load_image
from keras_faceset.detect import Mtcnn

BATCH = 32


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes a (n, 4) and b (m, 4), x1, y1, x2, y2."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def match(theirs: np.ndarray, ours: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (i, j) of boxes with IoU >= threshold, highest IoU first."""
    if len(theirs) == 0 or len(ours) == 0:
        return []
    overlap = box_iou(theirs, ours)
    pairs = []
    for flat in np.argsort(-overlap, axis=None):
        i, j = np.unravel_index(flat, overlap.shape)
        if overlap[i, j] < threshold:
            break
        if all(i != a and j != b for a, b in pairs):
            pairs.append((int(i), int(j)))
    return pairs


def by_shape(images: list[np.ndarray]) -> dict[tuple, list[int]]:
    groups = defaultdict(list)
    for index, image in enumerate(images):
        groups[image.shape].append(index)
    return groups


def detect_ours(detector: Mtcnn, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per image: boxes, scores, landmarks (its faces only), retried."""
    results = [None] * len(images)
    for indices in by_shape(images).values():
        for start in range(0, len(indices), BATCH):
            chunk = indices[start : start + BATCH]
            found = detector.detect(np.stack([images[i] for i in chunk]))
            found = {key: value.numpy() for key, value in found.items()}
            for row, index in enumerate(chunk):
                count = found["counts"][row]
                results[index] = {
                    key: found[key][row][:count] for key in ("boxes", "scores", "landmarks")
                }
                results[index]["retried"] = bool(found["retried"][row])
    return results


def parity(name: str, images: list[np.ndarray], reference, detector, retrying) -> None:
    theirs = reference.detect(images)
    ours = detect_ours(detector, images)
    with_retry = detect_ours(retrying, images)
    total = sum(len(t) for t in theirs)
    matched, ious, errors = 0, [], []
    extra = 0
    for t, o in zip(theirs, ours, strict=True):
        pairs = match(t.boxes, o["boxes"])
        matched += len(pairs)
        extra += len(o["boxes"]) - len(pairs)
        for i, j in pairs:
            ious.append(box_iou(t.boxes[i : i + 1], o["boxes"][j : j + 1])[0, 0])
            errors.append(np.linalg.norm(t.landmarks[i] - o["landmarks"][j], axis=-1).mean())
    changed = sum(r["retried"] for r in with_retry)
    no_face = sum(len(t) == 0 for t in theirs)
    print(f"{name}: {len(images)} images, {total} package faces, {no_face} images without")
    print(f"  recall {matched / total:.4%}  extra faces {extra / total:.4%} ({extra})")
    print(
        f"  box IoU median {np.median(ious):.5f}  5th pct {np.percentile(ious, 5):.5f}  "
        f"min {np.min(ious):.4f}"
    )
    print(
        f"  landmark error median {np.median(errors):.4f} px  95th pct "
        f"{np.percentile(errors, 95):.4f} px  max {np.max(errors):.2f} px"
    )
    print(f"  the default retry (padding {retrying.retry_padding}) found faces in {changed} more")


def collages(paths: list[Path], count: int, seed: int) -> list[np.ndarray]:
    """`count` 2x2 collages of four distinct LFW images drawn with `seed`."""
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(count):
        tiles = [load_image(paths[i]).numpy() for i in rng.choice(len(paths), 4, replace=False)]
        top, bottom = np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)
        result.append(np.concatenate([top, bottom], axis=0))
    return result


def speed(images: list[np.ndarray], reference, detector, rounds: int) -> None:
    """Both detectors on the same batches of 32, alternated; median of the paired ratios."""
    batches = [np.stack(images[s : s + BATCH]) for s in range(0, len(images) - BATCH + 1, BATCH)]
    reference.detect(list(batches[0]))  # warm-up
    detector.detect(batches[0])
    times = defaultdict(list)
    for round_ in range(rounds):
        batch = batches[round_ % len(batches)]
        start = time.perf_counter()
        reference.detect(list(batch))
        times["package"].append(time.perf_counter() - start)
        start = time.perf_counter()
        detector.detect(batch)
        times["ours"].append(time.perf_counter() - start)
    ratios = np.array(times["package"]) / np.array(times["ours"])
    rate = {key: BATCH / np.median(value) for key, value in times.items()}
    print(
        f"speed, LFW 250x250, batch {BATCH}, {rounds} rounds, {cpu_name()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}: package "
        f"{rate['package']:.1f} img/s, ours {rate['ours']:.1f} img/s, ratio "
        f"{np.median(ratios):.2f}x [{ratios.min():.2f}-{ratios.max():.2f}]"
    )


def crop_rates(folder: Path, retrying: Mtcnn, detector: Mtcnn) -> None:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    images = [load_image(path).numpy() for path in paths]
    found = [len(r["boxes"]) > 0 for r in detect_ours(detector, images)]
    again = [len(r["boxes"]) > 0 for r in detect_ours(retrying, images)]
    print(
        f"pre-cropped faces ({len(images)} images of {folder.name}): found without retry "
        f"{np.mean(found):.2%}, with the retry (padding {retrying.retry_padding}) "
        f"{np.mean(again):.2%}"
    )


def tight_crop_rates(images: list[np.ndarray], reference, retrying, detector) -> None:
    """Faces that fill the frame: each image's first package box, shrunk by 10 % per side,
    cut and resized to 112x112 (bilinear); detection rate with and without the retry."""
    crops = []
    for image, found in zip(images, reference.detect(images), strict=True):
        if len(found):
            x1, y1, x2, y2 = found.boxes[0]
            dx, dy = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
            box = [int(round(v)) for v in (x1 + dx, y1 + dy, x2 - dx, y2 - dy)]
            cut = Image.fromarray(image).crop(box).resize((112, 112), Image.BILINEAR)
            crops.append(np.asarray(cut))
    found = [len(r["boxes"]) > 0 for r in detect_ours(detector, crops)]
    again = [len(r["boxes"]) > 0 for r in detect_ours(retrying, crops)]
    print(
        f"LFW faces cut at 80 % of the package's box, 112x112 ({len(crops)} crops): found "
        f"without retry {np.mean(found):.2%}, with the retry {np.mean(again):.2%}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=None, help="LFW data folder (default: $KERAS_FACESET_DATA)"
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--collages", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-rounds", type=int, default=10)
    parser.add_argument("--tight-crops", type=int, default=300, help="LFW faces cut tight")
    parser.add_argument("--crops", type=Path, default=None, help="a folder of pre-cropped faces")
    args = parser.parse_args(argv)
    lfw = LFW(args.data)
    paths = sorted(lfw.image_dir.glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no LFW images under {lfw.image_dir}; pass --data the LFW folder")
    reference = MtcnnDetector(batch_size=BATCH, backend="package")
    detector = Mtcnn(retry_padding=0)
    retrying = Mtcnn()
    images = [load_image(path).numpy() for path in paths[: args.images]]
    if args.images:
        parity(f"LFW, first {len(images)} sorted", images, reference, detector, retrying)
    if args.collages:
        mixed = collages(paths, args.collages, args.seed)
        parity(f"LFW 2x2 collages, seed {args.seed}", mixed, reference, detector, retrying)
    if args.speed_rounds:
        speed(images, reference, detector, args.speed_rounds)
    if args.tight_crops:
        tight_crop_rates(images[: args.tight_crops], reference, retrying, detector)
    if args.crops is not None:
        crop_rates(args.crops, retrying, detector)


if __name__ == "__main__":
    main()

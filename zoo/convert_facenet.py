"""Convert facenet_keras.h5 to keras-faceset `InceptionResNetV1` weights and report parity.

    python zoo/convert_facenet.py [--h5 PATH] --out facenet.weights.h5 [--lfw DIR] [--images 20]

Checks the source sha256, copies every stored weight once (by layer name), measures the max abs
difference to the original graph rebuilt from the file's own model_config on centre crops of LFW
images, writes the weights atomically (temp file + rename) and prints their sha256. --h5
defaults to ``$FACENET_H5``, else the preset's source file where `keras_faceset.zoo` finds it
(``$KERAS_FACESET_SOURCES`` or ``~/.cache/keras_faceset_sources``); --lfw to the deep-funneled
images of the LFW data folder (``$KERAS_FACESET_DATA``).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from keras_faceset.data import LFW
from keras_faceset.files import atomic_path, sha256_file
from keras_faceset.models.backbones.inception_resnet_v1 import IMAGE_SIZE
from keras_faceset.models.convert.facenet_h5 import (
    FACENET_H5_SHA256,
    convert_facenet_h5,
    facenet_parity,
)
from keras_faceset.zoo import get_preset
from keras_faceset.zoo.cache import find_source


def lfw_centre_crops(lfw_dir: Path, count: int) -> np.ndarray:
    """(count, 160, 160, 3) uint8: centre crops of the first `count` people's `*_0001.jpg`."""
    from PIL import Image

    files = sorted(Path(lfw_dir).glob("*/*_0001.jpg"))[:count]
    if len(files) < count:
        raise ValueError(f"{lfw_dir} has {len(files)} '*/*_0001.jpg' images, {count} wanted")
    crops = []
    for file in files:
        image = np.asarray(Image.open(file).convert("RGB"))
        top = (image.shape[0] - IMAGE_SIZE) // 2
        left = (image.shape[1] - IMAGE_SIZE) // 2
        crops.append(image[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE])
    return np.stack(crops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--h5", type=Path, default=os.environ.get("FACENET_H5"), help="facenet_keras.h5"
    )
    parser.add_argument("--out", type=Path, required=True, help="output, ends in .weights.h5")
    parser.add_argument("--lfw", type=Path, default=LFW().image_dir, help="lfw-deepfunneled folder")
    parser.add_argument("--images", type=int, default=20, help="LFW images for parity (0: skip)")
    parser.add_argument("--max-diff", type=float, default=1e-5, help="parity bound")
    args = parser.parse_args(argv)
    if not args.out.name.endswith(".weights.h5"):
        parser.error(f"--out must end in .weights.h5, got {args.out}")

    if args.h5 is None:
        args.h5 = find_source(get_preset("facenet").source, download=False)
    source_sha = sha256_file(args.h5)
    if source_sha != FACENET_H5_SHA256:
        parser.error(f"{args.h5} has sha256 {source_sha}, expected {FACENET_H5_SHA256}")
    start = time.perf_counter()
    model = convert_facenet_h5(args.h5)
    print(
        f"converted {args.h5} ({model.count_params():,} weights) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    if args.images:
        start = time.perf_counter()
        images = lfw_centre_crops(args.lfw, args.images)
        diff = facenet_parity(model, args.h5, images)
        print(
            f"parity: max abs diff {diff:.3g} over {args.images} LFW images x 128 dims "
            f"(original graph rebuilt from model_config) in {time.perf_counter() - start:.1f} s"
        )
        if not diff <= args.max_diff:
            print(f"parity {diff:.3g} exceeds --max-diff {args.max_diff:g}; nothing written")
            return 1

    with atomic_path(args.out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    print(f"wrote {args.out} sha256 {sha256_file(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Query a running TensorFlow Serving model exported by keras-faceset, over REST.

    python examples/serving_client.py examples/images/*.jpg \
        --server http://localhost:8501 --model dlib_resnet

The served signatures take aligned face chips, not photos (a whole photo resized to the
chip size gives a different embedding). So the face in each photo is detected and aligned
here, on the client, with the crop of the served model's preset
(`keras_faceset.align.align_faces(paths, **preset.crop)`: MTCNN, then dlib's five-point chip
or FaceNet's box crop), and the uint8 chips go to the `embed_images` signature. The script
prints the pairwise cosine similarities of the embeddings, then aggregates their frame features
(what a gallery caches) into one set embedding with the `aggregate` signature and prints each
image's weight in the set. The requests go through
`keras_faceset.export.client.ServingClient`. See docs/serving.md for starting the server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from keras_faceset import zoo
from keras_faceset.align import align_faces
from keras_faceset.export.client import ServingClient


def aligned_chips(paths: Sequence[Path], preset: str) -> np.ndarray:
    """uint8 chips `(N, size, size, 3)`: the face of each photo, cropped as `preset`'s weights
    expect. A photo without a detected face gets a centre crop, with a warning."""
    aligned = align_faces(list(paths), **zoo.get_preset(preset).crop)
    for name in aligned.fallback_names:
        print(f"warning: no face found in {name}; using its centre crop", file=sys.stderr)
    return aligned.chips


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run the command line; return the `embedding` `(N, E)` and `frame_features` `(N, F)` of
    the images and the set's `weights` `(N,)`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="photos (JPEG, PNG, ...)")
    parser.add_argument("--server", default="http://localhost:8501")
    parser.add_argument("--model", default="dlib_resnet", help="the served model's name")
    parser.add_argument(
        "--preset", default=None, help="the zoo preset giving the crop (default: --model)"
    )
    parser.add_argument("--version", type=int, default=None, help="default: the latest")
    args = parser.parse_args(argv)

    chips = aligned_chips(args.images, args.preset or args.model)
    client = ServingClient(args.server, model=args.model, version=args.version)
    outputs = client.embed_images_and_features(chips)
    embeddings = outputs["embedding"]
    print(f"{len(embeddings)} embeddings of dimension {embeddings.shape[1]}")
    for (i, a), (j, b) in combinations(enumerate(embeddings), 2):
        # unit vectors: dot = cosine
        print(f"cos({args.images[i].name}, {args.images[j].name}) = {float(a @ b):.3f}")
    weights = client.aggregate(outputs["frame_features"][None])["weights"][0]  # one set
    print(f"set of {len(weights)} images; weights:")
    for path, weight in zip(args.images, weights, strict=True):
        print(f"  {path.name}: {weight:.3f}")
    return {**outputs, "weights": weights}


if __name__ == "__main__":
    main()

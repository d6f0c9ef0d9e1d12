"""Query a running TensorFlow Serving model exported by keras-faceset, over REST.

    python examples/serving_client.py examples/images/*.jpg \
        --server http://localhost:8501 --model facenet

Embeds every image file with the `embed_encoded` signature, prints the pairwise cosine
similarities of their embeddings, then aggregates their frame features (what a gallery
caches) into one set embedding with the `aggregate` signature and prints each image's weight
in the set. A thin command line over `keras_faceset.serving.ServingClient` (standard library
and NumPy; no TensorFlow).
See docs/serving.md for starting the server.
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

from keras_faceset.serving import ServingClient


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="JPEG or PNG face crops")
    parser.add_argument("--server", default="http://localhost:8501")
    parser.add_argument("--model", default="facenet")
    parser.add_argument("--version", type=int, default=None, help="default: the latest")
    args = parser.parse_args(argv)

    client = ServingClient(args.server, model=args.model, version=args.version)
    outputs = client.embed_files_and_features(args.images)
    embeddings = outputs["embedding"]
    print(f"{len(embeddings)} embeddings of dimension {embeddings.shape[1]}")
    for (i, a), (j, b) in combinations(enumerate(embeddings), 2):
        # unit vectors: dot = cosine
        print(f"cos({args.images[i].name}, {args.images[j].name}) = {float(a @ b):.3f}")
    outputs = client.aggregate(outputs["frame_features"][None])  # one set, no padding
    print(f"set embedding: {outputs['embedding'].shape[1]} values; weights:")
    for path, weight in zip(args.images, outputs["weights"][0], strict=True):
        print(f"  {path.name}: {weight:.3f}")


if __name__ == "__main__":
    main()

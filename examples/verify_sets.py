"""Load a set model and verify two sets of face images (two folders of frames).

    python examples/verify_sets.py SET_A/ SET_B/ [--model nan|nan1|qan]

Each set is embedded once (attention or quality pooling over its frames); the two set
embeddings are compared by cosine distance, and each frame's weight shows which frames the
model relied on.
"""

from __future__ import annotations

import argparse

from keras_faceset.data.inputs import image_paths
from keras_faceset.embedder import FaceEmbedder, cosine_distance


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set_a")
    parser.add_argument("set_b")
    parser.add_argument("--model", default="nan")
    args = parser.parse_args(argv)

    embedder = FaceEmbedder(args.model)  # zoo.load(args.model) inside, MTCNN alignment
    embeddings = []
    for folder in (args.set_a, args.set_b):
        frames = image_paths([folder])
        embedding, weights = embedder.embed_set(frames)
        embeddings.append(embedding)
        print(f"{folder}:")
        for frame, weight in sorted(zip(frames, weights, strict=True), key=lambda fw: -fw[1]):
            print(f"  {weight:.3f}  {frame.name}")
    distance = float(cosine_distance(*embeddings))
    print(f"cosine distance between the sets: {distance:.4f}")
    return distance


if __name__ == "__main__":
    main()

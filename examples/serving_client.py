"""Query a running TensorFlow Serving model exported by keras-faceset, over REST (stdlib only).

    python examples/serving_client.py examples/images/*.jpg \
        --server http://localhost:8501 --model facenet

Embeds every image file with the `embed_encoded` signature (JPEG/PNG bytes as {"b64": ...}),
prints the pairwise cosine similarities, then aggregates all of them into one set embedding
with the `aggregate` signature and prints each image's weight in the set.
See docs/serving.md for starting the server.
"""

from __future__ import annotations

import argparse
import base64
import json
import urllib.error
import urllib.request
from itertools import combinations
from pathlib import Path


def predict(server: str, model: str, signature: str, inputs: dict, timeout: float = 30.0):
    """POST `inputs` (columnar format) to `signature`; returns the response's `outputs`: the
    array itself for a one-output signature, else a dict of arrays."""
    body = json.dumps({"signature_name": signature, "inputs": inputs}).encode()
    request = urllib.request.Request(
        f"{server.rstrip('/')}/v1/models/{model}:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)["outputs"]
    except urllib.error.HTTPError as error:  # TF Serving explains a bad request in the body
        raise RuntimeError(f"{signature}: HTTP {error.code}: {error.read().decode()}") from None


def embed_files(server: str, model: str, paths: list[Path]) -> list[list[float]]:
    """One L2-normalised embedding per image file, decoded and resized by the server."""
    images = [{"b64": base64.b64encode(path.read_bytes()).decode("ascii")} for path in paths]
    return predict(server, model, "embed_encoded", {"image_bytes": images})


def aggregate(
    server: str, model: str, embeddings: list[list[float]]
) -> tuple[list[float], list[float]]:
    """The set embedding of `embeddings` (one set, no padding) and each member's weight."""
    inputs = {"embeddings": [embeddings], "mask": [[True] * len(embeddings)]}
    outputs = predict(server, model, "aggregate", inputs)
    return outputs["embedding"][0], outputs["weights"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="JPEG or PNG face crops")
    parser.add_argument("--server", default="http://localhost:8501")
    parser.add_argument("--model", default="facenet")
    args = parser.parse_args()

    embeddings = embed_files(args.server, args.model, args.images)
    print(f"{len(embeddings)} embeddings of dimension {len(embeddings[0])}")
    for (i, a), (j, b) in combinations(enumerate(embeddings), 2):
        cosine = sum(x * y for x, y in zip(a, b, strict=True))  # unit vectors: dot = cosine
        print(f"cos({args.images[i].name}, {args.images[j].name}) = {cosine:.3f}")
    set_embedding, weights = aggregate(args.server, args.model, embeddings)
    print(f"set embedding: {len(set_embedding)} values; weights:")
    for path, weight in zip(args.images, weights, strict=True):
        print(f"  {path.name}: {weight:.3f}")


if __name__ == "__main__":
    main()

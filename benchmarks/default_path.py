"""The default inference path: images/s of `FaceEmbedder(name)` (batch norm folded, float32, the
default since the one-inference-path change) against `FaceEmbedder(name, fold=False)` (the graph
as loaded), the backbone stage on batches of chips, interleaved in one process, with the paired
ratio and the worst cosine between the two paths' embeddings.

FaceNet runs when its original file is found offline (`$KERAS_FACESET_SOURCES`, or `FACENET_H5`
pointing at it); dlib_resnet always (its weights come with `face_recognition_models`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.common import (
    banner,
    cli,
    interleaved,
    machine_info,
    paired_ratio,
    ratio_text,
    spread,
    table,
    write_result,
)

BATCH = 32


def embedders(name: str):
    from keras_faceset.embedder import FaceEmbedder

    return FaceEmbedder(name, batch_size=BATCH), FaceEmbedder(name, batch_size=BATCH, fold=False)


def presets() -> list[str]:
    from keras_faceset import zoo
    from keras_faceset.zoo import cache

    names = ["dlib_resnet"]
    facenet = zoo.get_preset("facenet").source
    if "FACENET_H5" in os.environ:
        sources = Path(os.environ["FACENET_H5"]).parent
        os.environ["KERAS_FACESET_SOURCES"] = str(sources)
    try:
        cache.find_source(facenet, download=False)
        names.insert(0, "facenet")
    except (FileNotFoundError, ValueError):
        print("facenet: original weights not found offline; skipped")
    return names


def main(argv: list[str] | None = None) -> None:
    args = cli().parse_args(argv)
    repeats = 5 if args.quick else 15
    machine = machine_info(batch=BATCH)
    banner("default inference path", machine)
    rng = np.random.default_rng(0)
    rows, results = [], {}
    for name in presets():
        folded, unfolded = embedders(name)
        size = folded.preset.input_size
        chips = rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
        stats = interleaved(
            {
                "folded": lambda e=folded, x=chips: e.frame_outputs(x),
                "unfolded": lambda e=unfolded, x=chips: e.frame_outputs(x),
            },
            repeats=repeats,
            items=BATCH,
        )
        a = folded.frame_outputs(chips)["frame_embeddings"]
        b = unfolded.frame_outputs(chips)["frame_embeddings"]
        a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
        worst = float(np.min(np.sum(a * b, axis=1)))
        ratio = paired_ratio(stats["folded"], stats["unfolded"])
        results[name] = {**stats, "speedup": ratio, "worst_cosine": worst}
        rows.append(
            [name, spread(stats["folded"]), spread(stats["unfolded"]), ratio_text(ratio), worst]
        )
    print(
        table(
            ["preset", "default (folded) img/s", "unfolded img/s", "speed-up", "worst cosine"],
            rows,
        )
    )
    print(f"wrote {write_result('default_path', machine, results=results)}")


if __name__ == "__main__":
    main()

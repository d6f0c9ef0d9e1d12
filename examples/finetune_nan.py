"""Fine-tune the shipped NAN head on your own folder of sets with `model.fit`.

    python examples/finetune_nan.py ROOT -o my_nan.keras [--epochs 20]

ROOT holds ``ROOT/<identity>/<set>/<frames>`` (or ``ROOT/<identity>/<video>``), as read by
`keras_faceset.data.set_folder`. The dlib ResNet backbone stays frozen: every frame is aligned
and embedded once (descriptor + the texture statistics the attention reads), then the NAN head
(`zoo.load("nan", form="head")`) trains on those cached frame inputs with the contrastive loss
over all set pairs of a batch, as in the NAN paper.
The result is a `.keras` head: ``import keras_faceset.models`` (registers its classes), then
``head = keras.saving.load_model(path)`` and put it on the backbone again with
``keras_faceset.models.set_embedding_model(zoo.load("dlib_resnet"), head)``.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from keras_faceset import zoo
from keras_faceset.data import embedding_set_dataset, set_folder
from keras_faceset.data.folders import load_frames
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.losses import ContrastiveLoss


def frame_inputs(sets, embedder: FaceEmbedder) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every frame's head inputs as one row (raw embedding, then its features; the layout of
    the exported `frame_features`), and each set's rows in them."""
    rows, chunks, start = [], [], 0
    for frames in sets.frames:
        outputs = embedder.frame_outputs(embedder.chips(load_frames(frames)))
        chunks.append(np.concatenate([outputs["frame_embeddings"], outputs["frame_features"]], 1))
        rows.append(np.arange(start, start + len(frames)))
        start += len(frames)
    return np.concatenate(chunks), rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("-o", "--output", required=True, help="where to save the .keras head")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="sets per batch")
    parser.add_argument("--max-frames", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    sets = set_folder(args.root, max_frames=args.max_frames)
    head = zoo.load("nan", form="head")
    frames, rows = frame_inputs(sets, FaceEmbedder("nan"))
    dataset = embedding_set_dataset(
        frames, rows, sets.label.to_numpy(), args.batch_size, shuffle_seed=0
    ).map(
        lambda x, y: (
            {
                "frame_embeddings": x[0][..., : head.dim],
                "frame_features": x[0][..., head.dim :],
                "mask": x[1],
            },
            {"embedding": y},
        )
    )
    print(f"{len(sets)} sets of {sets.identity.nunique()} identities, {len(frames)} frames")

    head.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss={"embedding": ContrastiveLoss(margin=1.0, pairs="batch")},
    )
    before = head.evaluate(dataset, verbose=0)
    history = head.fit(dataset, epochs=args.epochs, verbose=0)
    after = head.evaluate(dataset, verbose=0)
    print(f"contrastive loss: {before:.4f} before, {after:.4f} after {args.epochs} epochs")
    print("per epoch: " + ", ".join(f"{v:.4f}" for v in history.history["loss"]))
    head.save(args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()

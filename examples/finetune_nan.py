"""Fine-tune the NAN set model on your own folder of sets with `model.fit`, on the images.

    python examples/finetune_nan.py ROOT -o my_nan.keras [--epochs 10] [--trainable-backbone]
    keras-faceset verify nan ROOT/alice/set0 ROOT/alice/set1 --model my_nan.keras --threshold 0.07
    keras-faceset export nan models/ --model my_nan.keras

ROOT holds ``ROOT/<identity>/<set>/<frames>`` (or ``ROOT/<identity>/<video>``), as read by
`keras_faceset.data.set_folder`. Every frame is aligned once with the nan preset's crop (dlib's
5-point chip); the whole model, `zoo.load("nan")` (dlib ResNet + NAN head), then trains on
padded image sets with the contrastive loss over all set pairs of a batch, as in the NAN paper.
The backbone is frozen unless ``--trainable-backbone``: the head alone learns, as the shipped head
was trained. The result is the whole model as a `.keras` file, which ``keras-faceset verify``,
``embed``, ``evaluate`` and ``export`` take with ``--model``. A fine-tuned model has no measured
threshold: give ``--threshold`` or calibrate it on pairs of your own
(``keras-faceset evaluate nan folder ROOT --model my_nan.keras --calibrate``).
"""

from __future__ import annotations

import argparse

import keras

from keras_faceset import zoo
from keras_faceset.data import padded_set_batches, set_folder
from keras_faceset.data.folders import load_frames
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.losses import ContrastiveLoss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("-o", "--output", required=True, help="where to save the .keras model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="sets per batch")
    parser.add_argument("--max-frames", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--trainable-backbone", action="store_true", help="fine-tune the backbone too"
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    sets = set_folder(args.root, max_frames=args.max_frames)
    embedder = FaceEmbedder("nan")  # aligns as the nan preset's crop says
    chips = [embedder.chips(load_frames(frames)) for frames in sets.frames]  # uint8 per set
    dataset = padded_set_batches(
        chips, args.batch_size, labels=sets.label.to_numpy(), shuffle_seed=0
    ).map(lambda x, y: ({"images": keras.ops.cast(x[0], "float32"), "mask": x[1]}, y))
    frames = sum(len(c) for c in chips)
    print(f"{len(sets)} sets of {sets.identity.nunique()} identities, {frames} frames")

    model = zoo.load("nan", trainable_backbone=args.trainable_backbone)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss={"embedding": ContrastiveLoss(margin=1.0, pairs="batch")},
    )
    targets = dataset.map(lambda x, y: (x, {"embedding": y}))
    before = model.evaluate(targets, verbose=0)
    history = model.fit(targets, epochs=args.epochs, verbose=0)
    after = model.evaluate(targets, verbose=0)
    print(f"contrastive loss: {before:.4f} before, {after:.4f} after {args.epochs} epochs")
    print("per epoch: " + ", ".join(f"{v:.4f}" for v in history.history["loss"]))
    model.save(args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()

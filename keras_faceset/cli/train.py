"""`train`: fine-tune a preset on a folder of people, P x K batches, checkpoints, resume."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from keras_faceset.strategies import add_strategy_option

CHECKPOINT = re.compile(r"epoch-(\d{4,})\.keras")


def register(add_command) -> None:
    """Add the command through `add_command(name, **kwargs) -> parser`."""
    train = add_command(
        "train",
        help="fine-tune a preset on DATA/<person>/... and write a .keras model",
        description="An image preset fine-tunes its backbone on DATA/<person>/<image>; a set "
        "preset trains its head on DATA/<person>/<set folder or video>, the backbone frozen "
        "(frame embeddings computed once). Each batch holds --people persons x --per-person "
        "images (or sets), drawn from the seed; the loss compares cosine distances, as verify "
        "does. After every epoch the model and its optimizer are checkpointed (written "
        "atomically) into --checkpoints; --resume continues from the last one with the "
        "batches an uninterrupted run would draw; a NaN or infinite loss stops the run at its "
        "step, before anything of that epoch is saved. OUT (a .keras file) is what "
        "`verify --model` and `export --model` read, with the same preset name.",
    )
    train.add_argument("model", help="the preset to fine-tune (see `keras-faceset list`)")
    train.add_argument("data", help="a folder with one subfolder per person")
    train.add_argument("out", help="the trained model, a .keras file")
    train.add_argument(
        "--align",
        choices=("preset", "center"),
        default="preset",
        help="preset: detect with MTCNN and crop as the weights expect; center: fixed "
        "central crop, no detection",
    )
    train.add_argument("--detector", choices=("graph", "package"), default="graph")
    train.add_argument("--chip-cache", default=None, help="folder caching aligned chips")
    train.add_argument(
        "--max-frames", type=int, default=16, help="frames per set (set presets; evenly spaced)"
    )
    train.add_argument("--loss", choices=("triplet", "contrastive"), default="triplet")
    train.add_argument(
        "--margin", type=float, default=0.2, help="loss margin on cosine distances (0.2)"
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--steps", type=int, default=20, help="batches per epoch")
    train.add_argument("--people", type=int, default=8, help="P: persons per batch")
    train.add_argument("--per-person", type=int, default=4, help="K: images (sets) per person")
    train.add_argument("--learning-rate", type=float, default=1e-4, help="Adam (1e-4)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--checkpoints", default=None, help="checkpoint folder (default: OUT.checkpoints)"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in it"
    )
    add_strategy_option(train)
    train.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (none when not a TTY)"
    )
    train.set_defaults(run=run)


def checkpoint_path(folder: Path, epoch: int) -> Path:
    """The checkpoint written after `epoch` (1-based) epochs."""
    return folder / f"epoch-{epoch:04d}.keras"


def last_checkpoint(folder: Path) -> tuple[int, Path] | None:
    """(epoch, path) of the newest checkpoint in `folder`, None when there is none."""
    found = [
        (int(match.group(1)), path)
        for path in (folder.iterdir() if folder.is_dir() else [])
        if (match := CHECKPOINT.fullmatch(path.name))
    ]
    return max(found) if found else None


class NonFiniteLoss(ValueError):
    """Training stopped: a step's loss was NaN or infinite (the weights are not saved)."""


class NonFiniteLossGuard:
    """Stops `model`'s training at the first step whose loss is NaN or infinite and remembers
    it (`step`, 1-based over the whole run; `loss`); `raise_if_stopped` then raises
    `NonFiniteLoss` before anything is saved. Such a step has already updated the weights with
    non-finite gradients, so no checkpoint may follow it. Pass `callback()` to `fit`."""

    def __init__(self, model, first_step: int = 0):
        self.model, self.first_step = model, first_step
        self.step: int | None = None
        self.loss: float | None = None

    def callback(self):
        import keras

        return keras.callbacks.LambdaCallback(on_train_batch_end=self._check)

    def _check(self, batch: int, logs: dict) -> None:
        loss = float(logs["loss"])
        if self.step is None and not math.isfinite(loss):
            self.step, self.loss = self.first_step + batch + 1, loss
            self.model.stop_training = True

    def raise_if_stopped(self, checkpoint: tuple[int, Path] | None) -> None:
        if self.step is None:
            return
        kept = (
            f"the last checkpoint, {checkpoint[1]} (epoch {checkpoint[0]}), is intact: "
            "continue from it with --resume"
            if checkpoint
            else "no checkpoint was written yet"
        )
        raise NonFiniteLoss(
            f"training stopped at step {self.step}: the loss is {self.loss} (NaN or "
            "infinite values in the inputs, or a too large --learning-rate); nothing of this "
            f"epoch was saved and {kept}"
        )


def run(args: argparse.Namespace) -> None:
    from keras_faceset.models.distribute import make_strategy

    out = Path(args.out)
    if out.suffix != ".keras":
        raise ValueError(f"OUT must be a .keras file (verify --model reads it), got {out.name}")
    folder = (
        Path(args.checkpoints) if args.checkpoints else out.with_name(out.name + ".checkpoints")
    )
    resume = last_checkpoint(folder) if args.resume else None
    if args.resume and resume is None:
        raise FileNotFoundError(f"--resume: no checkpoint epoch-NNNN.keras in {folder}")
    if not args.resume and last_checkpoint(folder) is not None:
        raise ValueError(f"{folder} holds checkpoints of an earlier run: pass --resume")
    strategy = make_strategy(args.strategy, args.cpu_replicas)  # before any TensorFlow work
    _train(args, strategy, out, folder, resume)


def _train(args, strategy, out: Path, folder: Path, resume) -> None:
    import keras

    from keras_faceset import zoo
    from keras_faceset.data.sets import pk_indices
    from keras_faceset.embedder import FaceEmbedder
    from keras_faceset.files import atomic_path
    from keras_faceset.models import set_embedding_model
    from keras_faceset.models.distribute import fit, is_chief
    from keras_faceset.progress import set_enabled

    start = 0 if resume is None else resume[0]
    if start >= args.epochs:
        raise ValueError(f"{resume[1]} is epoch {start}: ask for more --epochs than that")
    batch, replicas = args.people * args.per_person, strategy.num_replicas_in_sync
    if batch % replicas:
        raise ValueError(
            f"--people {args.people} x --per-person {args.per_person} = {batch} examples per "
            f"batch do not split evenly over {replicas} replicas (the losses average equal "
            "shares): make P x K a multiple of the replica count"
        )
    if args.quiet:
        set_enabled(False)
    preset = zoo.get_preset(args.model)
    embedder = FaceEmbedder(
        args.model, align=args.align, chip_cache=args.chip_cache, detector=args.detector
    )
    inputs, labels = _examples(args, embedder, preset.is_set_model)
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        if resume is not None:
            model = keras.saving.load_model(resume[1])
        else:
            model = zoo.load(args.model, form="head" if preset.is_set_model else "backbone")
            model.compile(keras.optimizers.Adam(args.learning_rate), _loss(args, model))
    rows = pk_indices(labels, args.people, args.per_person, args.epochs * args.steps, args.seed)
    rows = rows.reshape(args.epochs, -1)
    chief = is_chief(strategy)
    for epoch in range(start, args.epochs):
        picked = rows[epoch]
        x = keras.tree.map_structure(lambda values, picked=picked: values[picked], inputs)
        guard = NonFiniteLossGuard(model, first_step=epoch * args.steps)
        y = labels[picked].astype("int32")
        history = fit(model, x, y, batch_size=batch, callbacks=[guard.callback()])
        guard.raise_if_stopped(last_checkpoint(folder))
        print(f"epoch {epoch + 1}/{args.epochs}: loss {history['loss'][-1]:.6f}", flush=True)
        if chief:
            with atomic_path(checkpoint_path(folder, epoch + 1), suffix=".keras") as tmp:
                model.save(tmp)
    if preset.is_set_model:
        model = set_embedding_model(embedder.task.backbone, model)
    if chief:
        with atomic_path(out, suffix=".keras") as tmp:
            model.save(tmp)
        print(out)


def _examples(args, embedder, sets: bool):
    """The training inputs (an array, or a dict of arrays, indexed by example) and integer
    labels: chips for an image preset; a set preset's head inputs (frame embeddings, mask,
    frame features)."""
    import numpy as np

    from keras_faceset.data.folders import image_folder, set_folder
    from keras_faceset.data.inputs import set_inputs
    from keras_faceset.models.set_inference import consecutive_rows, pad_sets

    if not sets:
        table = image_folder(args.data)
        chips = embedder.chips(list(table["path"]))
        return chips.astype("float32"), table["label"].to_numpy()
    table = set_folder(args.data, args.max_frames)
    frames = [image for set_frames in table["frames"] for image in set_inputs(set_frames)]
    outputs = embedder.frame_outputs(embedder.chips(frames))
    index, mask = pad_sets(consecutive_rows([len(f) for f in table["frames"]]))
    inputs = {"frame_embeddings": outputs["frame_embeddings"][index], "mask": mask}
    if "frame_features" in outputs:
        inputs["frame_features"] = outputs["frame_features"][index]
    return inputs, np.asarray(table["label"])


def _loss(args, model):
    """The loss on cosine distances, pairs or triplets mined in the global batch; on a set
    head, on its "embedding" output."""
    from keras_faceset.losses import ContrastiveLoss, TripletLoss

    if args.loss == "triplet":
        loss = TripletLoss(margin=args.margin, distance="cosine", mining_batch="global")
    else:
        loss = ContrastiveLoss(
            margin=args.margin, distance="cosine", pairs="batch", mining_batch="global"
        )
    return {"embedding": loss} if isinstance(model.output, dict) else loss

"""Train a set head as zoo/train_set_heads.py does with a set loss (its `head_and_loss`; QAN
with the set triplet loss, mined in the global batch, and the quality anchor; Adam) for a few
steps on random frame features, under a `tf.distribute` strategy.

    python train_head.py --strategy default|mirrored|multi_worker --out RESULT.npz \
        [--head qan] [--steps 4] [--batch 16] [--frames 4]

The strategy is made first (before TensorFlow starts its devices). RESULT.npz gets the
epoch's running mean loss after each step (`loss`), the seconds between the ends of
consecutive steps (`step_seconds`),
the head's weights before and after training (`initial|<i>`, `weight|<i>`), `replicas` and
`chief`. Every process of a
run draws the same data (seeded), so the workers of a multi-worker run see one global batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_faceset.models.distribute import fit, is_chief, make_strategy
from keras_faceset.strategies import add_strategy_option

REPO = Path(__file__).resolve().parents[2]


def set_heads_script():
    """zoo/train_set_heads.py as a module (scripts are not a package)."""
    path = REPO / "zoo" / "train_set_heads.py"
    spec = importlib.util.spec_from_file_location("train_set_heads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_sets(head, count: int, frames: int, seed: int = 0):
    """`count` sets of 2..`frames` random unit frame embeddings (and texture features), two
    sets per person in a row as `sample_sets` draws them; inputs and identity labels."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(count, frames, 128)).astype("float32")
    embeddings /= np.linalg.norm(embeddings, axis=-1, keepdims=True)
    mask = np.arange(frames)[None] < rng.integers(2, frames + 1, size=count)[:, None]
    inputs = {"frame_embeddings": embeddings, "mask": mask}
    if head.feature_shape is not None:
        shape = (count, frames, *head.feature_shape)
        inputs["frame_features"] = rng.normal(size=shape).astype("float32")
    return inputs, np.repeat(np.arange(count // 2), 2).astype("int32")


class StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends, self.losses = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        self.losses.append(float(logs["loss"]))


def train(strategy, head_name: str = "qan", steps: int = 4, batch: int = 16, frames: int = 4):
    """Build, compile and fit the head under `strategy`; the results (see the module doc)."""
    script = set_heads_script()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        head, loss = script.head_and_loss(head_name, qan_objective="triplet")
        losses = {"embedding": loss}
        if "quality" in head.output:
            losses["quality"] = script.quality_anchor()
        head.compile(optimizer=keras.optimizers.Adam(3e-3), loss=losses)
    inputs, labels = random_sets(head, steps * batch, frames)
    targets = {"embedding": labels, "quality": np.zeros(len(labels), "float32")}
    initial = head.get_weights()
    times = StepTimes()
    targets = {key: targets[key] for key in losses}
    fit(head, inputs, targets, batch_size=batch, callbacks=[times])
    results = {
        "loss": np.array(times.losses),
        "step_seconds": np.diff(times.ends),
        "replicas": np.array(strategy.num_replicas_in_sync),
        "chief": np.array(is_chief(strategy)),
    }
    for i, (start, weight) in enumerate(zip(initial, head.get_weights(), strict=True)):
        results[f"initial|{i}"], results[f"weight|{i}"] = start, weight
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_strategy_option(parser)
    parser.add_argument("--out", required=True)
    parser.add_argument("--head", default="qan")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16, help="global batch (sets)")
    parser.add_argument("--frames", type=int, default=4, help="frames per set, at most")
    args = parser.parse_args(argv)
    strategy = make_strategy(args.strategy, args.cpu_replicas)
    results = train(strategy, args.head, args.steps, args.batch, args.frames)
    np.savez(args.out, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the SeqFace head on frozen dlib-ResNet frame embeddings of LFW DevTrain, with ablation.

SeqFace (Hu et al. 2018) trains one frame embedding with a chief classification loss on
labelled identities, LSR (uniform target) on images of unlabelled *sequences*, and the DSA loss
pulling each frame to its identity or sequence agent. Here the embedding is the `seqface`
preset's head (`SeqFaceHead(128, projection_dim=128)`): a linear projection of the raw dlib
descriptor, initialised to the identity (training starts from dlib's own embedding), then
L2-normalised; a set is the mean of its normalised frame embeddings.

Data, as ``zoo/train_set_heads.py`` (`keras_faceset.data.devtrain_sets`): LFW View 1 DevTrain
people with >= 2 images, <= 6 images each (3,943 images of 1,184 people), each image embedded
clean and in 2 random degradations.
People are split (seed 0) into 20% held out (selection only), and the rest in halves, mirroring
the paper's CASIA-WebFace A/B experiment: the *identity part* keeps its labels, the *sequence
part* does not (each person's frames are one unlabelled sequence). Variants (the ablation):

    softmax            softmax classifier on the identity part
    l2_sphereface      L2-SphereFace (SeqFace's chief loss) on the identity part
    l2_sphereface+lsr  + the sequence part with LSR's uniform target
    seqface            + the DSA loss over identity and sequence agents

Each trains on single frames; the epoch kept per variant is the best held-out score (AUC +
TAR@FAR=1e-2 + TAR@FAR=1e-3 of set pairs of held-out people, as train_set_heads.py, plus the
same of their clean single-image pairs). Only held-out DevTrain people pick anything. The
`seqface` variant is written to ``--out/seqface_dlib.weights.h5``; ``--evaluate`` then measures
every variant (and the frozen dlib embedding) on LFW-sets (clean, degraded), LFW View 1
DevTest and LFW View 2 with the project's evaluation (`keras_faceset.eval`), and ``--record``
writes the `seqface_dlib` rows (``--train-frames clean`` is the card's diagnostic run,
training on the clean frames only). ``--strategy mirrored|multi_worker`` trains under
`tf.distribute` (`keras_faceset.models.distribute`): each batch is split over the replicas, the
center and DSA updates use the global batch, each replica draws its own DSA negatives; on a
multi-worker run (one process per worker, `TF_CONFIG`) only the chief writes files or
evaluates::

    python zoo/train_seqface.py --data ../shared/data/lfw --out keras_faceset/zoo/weights \
        --evaluate --record keras_faceset/zoo/results.csv --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from keras_faceset.data import LFW
from keras_faceset.data.devtrain_sets import frame_index, sample_sets
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.eval import evaluate_lfw
from keras_faceset.eval.pair_reports import head_report, report_line
from keras_faceset.eval.protocol_cache import (
    default_cache_dir,
    devtrain_embeddings,
    lfw_sets_embeddings,
)
from keras_faceset.eval.results import record_result
from keras_faceset.layers import L2SphereFace
from keras_faceset.losses import LSRLoss
from keras_faceset.models import SeqFaceHead, lsr_targets
from keras_faceset.models.distribute import fit, is_chief, make_strategy
from keras_faceset.strategies import add_strategy_option
from keras_faceset.zoo import build_head

DIM = 128
PRESET = "seqface"
VARIANTS = {
    "softmax": {"classifier": "softmax", "sequences": False, "dsa": False},
    "l2_sphereface": {"classifier": "l2_sphereface", "sequences": False, "dsa": False},
    "l2_sphereface+lsr": {"classifier": "l2_sphereface", "sequences": True, "dsa": False},
    "seqface": {"classifier": "l2_sphereface", "sequences": True, "dsa": True},
}
SHIPPED = "seqface"
RESULTS_MODEL = "seqface_dlib"


def split_people(num_people: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person codes: 20% held out, then the rest in halves (identity part, sequence part)."""
    order = np.random.default_rng([seed, 2]).permutation(num_people)
    held_out, rest = order[: num_people // 5], order[num_people // 5 :]
    return np.sort(held_out), np.sort(rest[: len(rest) // 2]), np.sort(rest[len(rest) // 2 :])


def frame_labels(person_of_frame: np.ndarray, identities, sequences) -> np.ndarray:
    """Label per frame: identity part -> `[0, I)`, sequence part -> `[I, I + S)`, else -1."""
    labels = np.full(len(person_of_frame), -1, np.int64)
    for offset, part in ((0, identities), (len(identities), sequences)):
        lookup = {int(p): offset + i for i, p in enumerate(part)}
        for row, person in enumerate(person_of_frame):
            labels[row] = lookup.get(int(person), labels[row])
    return labels


def clean_image_pairs(frame_index, people: list[np.ndarray], impostors: int, rng):
    """Clean frame rows (A, B) and same flags: every genuine pair of held-out images and
    `impostors` random pairs of two people's images."""
    rows_a, rows_b = [], []
    for images in people:
        for i, a in enumerate(images):
            for b in images[i + 1 :]:
                rows_a.append(frame_index[a, 0])
                rows_b.append(frame_index[b, 0])
    genuine = len(rows_a)
    owner = np.concatenate([np.full(len(images), p) for p, images in enumerate(people)])
    flat = np.concatenate(people)
    while len(rows_a) < genuine + impostors:
        a, b = rng.integers(len(flat), size=2)
        if owner[a] != owner[b]:
            rows_a.append(frame_index[flat[a], 0])
            rows_b.append(frame_index[flat[b], 0])
    order = rng.permutation(len(rows_a))  # genuine and impostor pairs in every fold
    same = order < genuine
    return [[rows_a[i]] for i in order], [[rows_b[i]] for i in order], same


def identity_head() -> SeqFaceHead:
    """The `seqface` preset's head (`SeqFaceHead(128, projection_dim=128)`) whose projection is
    the identity map."""
    head = build_head(PRESET)
    head.get_layer("projection").set_weights(
        [np.eye(DIM, dtype="float32"), np.zeros(DIM, "float32")]
    )
    return head


def build_training(variant: str, num_identities: int, num_sequences: int, head, args):
    """The multi-loss training graph of `variant` around `head`."""
    spec = VARIANTS[variant]
    classifier = spec["classifier"]
    if classifier == "l2_sphereface":
        classifier = L2SphereFace(
            num_identities,
            margin=args.margin,
            lambda_=args.sphereface_lambda,
            feature_scale=args.feature_scale,
            name="classifier",
        )
    train = head.training_model(
        num_identities,
        num_sequences if spec["sequences"] else 0,
        classifier=classifier,
        dsa_weight=args.dsa_weight if spec["dsa"] else 0.0,
        seed=args.seed,
    )
    return train


def validation_pairs(frame_index, people, count: int, rng):
    """Rows of set A, rows of set B and same-person flags: `count` genuine pairs (the two
    halves of one person) then `count` impostor pairs (set A of one draw, set B of the next)."""
    index, mask, labels = sample_sets(frame_index, people, 1, 2 * count, rng)
    rows = [r[m] for r, m in zip(index, mask, strict=True)]
    rows_a, rows_b = rows[0::2], rows[1::2]
    shift = rows_b[count + 1 :] + rows_b[count : count + 1]
    labels_a, labels_b = labels[0::2], labels[1::2]
    shifted = np.roll(labels_b[count:], -1)
    return (
        rows_a,
        rows_b[:count] + shift,
        np.concatenate([labels_a[:count] == labels_b[:count], labels_a[count:] == shifted]),
    )


def validate(head, arrays, pairs) -> dict:
    """`set_verification` (5 folds) of the head on held-out pairs (rows A, rows B, same)."""
    rows_a, rows_b, same = pairs
    variant = {**arrays, "rows_a": rows_a, "rows_b": rows_b, "same": same, "fold": 5}
    return head_report(head, variant, spearman=False)


def selection_score(head, arrays, held_out) -> tuple[float, dict, dict]:
    """Held-out score (sets + clean single images) and the two reports."""
    sets = validate(head, arrays, held_out["sets"])
    images = validate(head, arrays, held_out["images"])
    score = sum(r["auc"] + r["tar@far=0.01"] + r["tar@far=0.001"] for r in (sets, images))
    return score, sets, images


def train_variant(
    variant: str, arrays, labels, num_identities, num_sequences, held_out, args, strategy
):
    """Train `variant` under `strategy`; return its head at the best held-out epoch and the
    log rows."""
    keras.utils.set_random_seed(args.seed)
    spec = VARIANTS[variant]
    keep = (labels >= 0) & ((labels < num_identities) | spec["sequences"])
    x = {"frame_embeddings": arrays["embedding"][keep], "labels": labels[keep].astype("int32")}
    y = {"logits": lsr_targets(x["labels"], num_identities)}
    with strategy.scope():
        head = identity_head()
        train = build_training(variant, num_identities, num_sequences, head, args)
    score, sets, images = selection_score(head, arrays, held_out)
    log = [_log_row(variant, 0, float("nan"), score, sets, images)]
    best, best_weights = -np.inf, None
    for epoch in range(1, args.epochs + 1):
        if epoch in (1, args.warmup_epochs + 1):
            # The projection stays frozen while the classifier (and agents) warm up.
            head.get_layer("projection").trainable = epoch > args.warmup_epochs
            with strategy.scope():
                train.compile(
                    optimizer=keras.optimizers.Adam(args.learning_rate),
                    loss={"logits": LSRLoss()},
                )
        history = fit(train, x, y, batch_size=args.batch_size, shuffle=True, seed=args.seed + epoch)
        score, sets, images = selection_score(head, arrays, held_out)
        loss = history["loss"][-1]
        log.append(_log_row(variant, epoch, loss, score, sets, images))
        print(
            f"{variant} epoch {epoch}: loss {loss:.4f}, held-out sets {report_line(sets)}; "
            f"images {report_line(images)}",
            flush=True,
        )
        if epoch > args.warmup_epochs and score > best:
            best, best_weights = score, head.get_weights()
    head.set_weights(best_weights)
    kept = max((r for r in log if r["epoch"] > args.warmup_epochs), key=lambda r: r["score"])
    print(f"{variant}: kept epoch {kept['epoch']}", flush=True)
    return head, log


def _log_row(variant, epoch, loss, score, sets, images) -> dict:
    return {
        "variant": variant,
        "epoch": epoch,
        "loss": loss,
        "score": score,
        **{f"sets_{k}": sets[k] for k in ("accuracy", "auc", "tar@far=0.01", "tar@far=0.001")},
        **{f"images_{k}": images[k] for k in ("accuracy", "auc", "tar@far=0.01", "tar@far=0.001")},
    }


class DlibThenHead:
    """LFW images (N, 250, 250, 3) uint8 -> a head's normalised frame embeddings
    `f = normalize(W x + b)` of dlib descriptors `x` (five-point chips); `MeanHead`'s are the
    normalised descriptors themselves. Descriptors are memoised by image content, so
    several heads are evaluated on one dlib pass (a callable for `eval.evaluate_lfw`)."""

    def __init__(self, chips: str, memo: dict | None = None):
        self.embedder = FaceEmbedder("dlib_resnet", chip_cache=chips, batch_size=64, fold=False)
        self.memo = {} if memo is None else memo
        self.head = build_head("dlib_resnet")
        self.__name__ = "dlib_resnet"

    def with_head(self, head, name: str) -> DlibThenHead:
        self.head, self.__name__ = head, name
        return self

    def descriptors(self, images: np.ndarray) -> np.ndarray:
        keys = [
            hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images
        ]
        todo = [i for i, key in enumerate(keys) if key not in self.memo]
        if todo:
            chips = self.embedder.chips(images[todo])
            raw = self.embedder.frame_outputs(chips)["frame_embeddings"]
            self.memo.update({keys[i]: raw[j] for j, i in enumerate(todo)})
        return np.stack([self.memo[key] for key in keys])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        raw = self.descriptors(np.asarray(images))
        return keras.ops.convert_to_numpy(self.head.encode_frames(raw))


def evaluate_heads(heads: dict, args) -> pd.DataFrame:
    """LFW-sets (clean, degraded) and LFW View 1 / View 2 rows for each head (the
    `dlib_resnet` preset's `MeanHead`: the frozen dlib embedding with mean pooling)."""
    lfw = LFW(args.data)
    variants = lfw_sets_embeddings(lfw, args.sets_cache, args.chips)
    rows = []
    for name, head in heads.items():
        for variant, v in variants.items():
            report = head_report(head, v, spearman=False)
            rows.append(
                {
                    "model": name,
                    "protocol": f"lfw_sets_{variant}",
                    "pairs": len(v["same"]),
                    **report,
                }
            )
            print(name, variant, report_line(report), flush=True)
    memo_path = Path(args.cache) / "lfw_dlib_descriptors.npz"
    memo = {}
    if memo_path.is_file():
        with np.load(memo_path) as data:
            memo = dict(zip(data["keys"].tolist(), data["descriptors"], strict=True))
    embedder = DlibThenHead(args.chips, memo)
    for view in ("view1", "view2"):
        for name, head in heads.items():
            summary, _ = evaluate_lfw(embedder.with_head(head, name), args.data, view=view)
            report = summary.iloc[0].to_dict()
            rows.append(
                {
                    "model": name,
                    "protocol": f"lfw_{view}",
                    "pairs": report["pairs"],
                    **{
                        k: report[k]
                        for k in ("accuracy", "std", "auc", "tar@far=0.01", "tar@far=0.001")
                    },
                }
            )
            print(name, view, report_line(report), flush=True)
            keys = list(embedder.memo)
            np.savez(
                memo_path, keys=np.array(keys), descriptors=np.stack(list(embedder.memo.values()))
            )
    return pd.DataFrame(rows)


def record(table: pd.DataFrame, path: str) -> None:
    """The shipped variant's rows in the results CSV."""
    command = "python zoo/train_seqface.py " + shlex.join(sys.argv[1:])
    for row in table[table.model == RESULTS_MODEL].to_dict("records"):
        record_result(
            path,
            {
                "model": RESULTS_MODEL,
                "protocol": row["protocol"],
                "alignment": "five_point" if row["protocol"].startswith("lfw_sets") else "preset",
                "accuracy": row["accuracy"],
                "std": row["std"],
                "auc": row["auc"],
                "tar@far=1e-2": row["tar@far=0.01"],
                "tar@far=1e-3": row["tar@far=0.001"],
                "pairs": int(row["pairs"]),
                "command": command,
            },
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="LFW data folder (default: $KERAS_FACESET_DATA)"
    )
    parser.add_argument("--cache", default=default_cache_dir("seqface"), help="DevTrain embeddings")
    parser.add_argument(
        "--sets-cache", default=default_cache_dir("sets"), help="LFW-sets embeddings"
    )
    parser.add_argument(
        "--chips",
        default=default_cache_dir("chips"),
        help="aligned chip cache (default: %(default)s)",
    )
    parser.add_argument("--out", required=True, help="folder the seqface head weights go to")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--max-images", type=int, default=10**6)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--margin", type=int, default=4)
    parser.add_argument("--sphereface-lambda", type=float, default=5.0)
    parser.add_argument("--feature-scale", type=float, default=30.0)
    parser.add_argument("--dsa-weight", type=float, default=1.0)
    parser.add_argument("--train-frames", choices=("all", "clean"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--logs", default=None, help="folder of the training/eval CSVs (default: --cache)"
    )
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--record", default=None, help="results CSV for the seqface_dlib rows")
    add_strategy_option(parser)
    args = parser.parse_args(argv)
    strategy = make_strategy(args.strategy, args.cpu_replicas)  # before any TensorFlow work
    chief = is_chief(strategy)
    lfw = LFW(args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images, frames, arrays = devtrain_embeddings(
        lfw, cache, args.chips, args.max_images, args.versions
    )
    index_of = frame_index(frames)
    codes, names = pd.factorize(images.identity)
    held, identities, sequences = split_people(len(names), args.seed)
    labels = frame_labels(codes[frames.image.to_numpy()], identities, sequences)
    if args.train_frames == "clean":  # a diagnostic: train on the clean frames only
        labels[frames.version.to_numpy() > 0] = -1
    people = [np.flatnonzero(codes == p) for p in held]
    rng = np.random.default_rng([args.seed, 3])
    held_out = {
        "sets": validation_pairs(index_of, people, 400, rng),
        "images": clean_image_pairs(index_of, people, 20000, rng),
    }
    print(
        f"{len(images)} images, {len(frames)} frames; people: {len(identities)} identity part, "
        f"{len(sequences)} sequence part, {len(held)} held out",
        flush=True,
    )
    logs = Path(args.logs if args.logs is not None else args.cache)
    logs.mkdir(parents=True, exist_ok=True)
    heads, log = {}, []
    for variant in args.variants.split(","):
        head, rows = train_variant(
            variant, arrays, labels, len(identities), len(sequences), held_out, args, strategy
        )
        heads[variant] = head
        log += rows
        if variant == SHIPPED and chief:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            head.save_weights(Path(args.out) / f"{RESULTS_MODEL}.weights.h5")
    if not chief:
        return
    pd.DataFrame(log).to_csv(logs / "seqface_log.csv", index=False, float_format="%.6g")
    if args.evaluate:
        named = {"dlib_resnet": build_head("dlib_resnet")} | {
            RESULTS_MODEL if k == SHIPPED else f"seqface_{k}": h for k, h in heads.items()
        }
        table = evaluate_heads(named, args)
        table.to_csv(logs / "seqface_eval.csv", index=False, float_format="%.6g")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.round(4).to_string(index=False))
        if args.record:
            record(table, args.record)


if __name__ == "__main__":
    main()

"""Train NAN-1, NAN-2 and QAN heads on frozen dlib-ResNet frame embeddings of LFW DevTrain.

Each selected DevTrain image (people with >= 2 images, at most 6 images each) is embedded
clean and in `--versions` random degradations (kind uniform over the six of
`keras_faceset.data.degrade`, severity ~ U[0.2, 1]), applied to the 250x250 image and warped
with the clean image's five-point transform, as in ``zoo/evaluate_lfw_sets.py``
(`keras_faceset.data.devtrain_sets`, `keras_faceset.eval.protocol_cache`). A training pair is
two sets of 2-6 distinct frames from disjoint halves of a person's images, drawn without
replacement with weight 0.2 for clean and 0.8 for degraded frames (LFW-sets degraded: 80% of
frames degraded); a share `--clean-sets` of the pairs holds clean frames only.

People are split 80/20 (seed 0). Validation mirrors LFW-sets (docs/lfw_sets.md): its pair
rules (10 folds x 40 genuine + 40 impostor pairs, set sizes 2-6 by the person's image count,
80% of frames degraded with severity ~ U[0.3, 1], a clean variant with the same pairs) applied
to the DevTrain people with >= 4 images that are not training people
(`keras_faceset.data.held_out_sets`; their frames are embedded once into --cache). These pairs
pick the epoch (`select_epoch`) and are the only data the choices were made on (LFW-sets,
built from DevTest, is not used). Each head has its own random streams (seeded by its
`results_model` name), so it trains the same alone.

`--leave-out KIND` trains without one degradation family: its frames are replaced by the
image's clean frame in the training sets (`leave_out`) and in the held-out degraded pairs
(`without_family`), so that neither the training nor the epoch choice sees it.

`--heads` names set presets (nan1, nan, qan); each head is built from its preset
(`keras_faceset.zoo.PRESETS[name].head`, kwargs overridable by `--head-kwargs`) and written to
``--out/<head.weights>``. Heads train (and their epoch is chosen) at weight temperature 1
whatever their preset's `temperature`, which is applied at inference (`--head-kwargs` may set
one). The NAN and QAN heads read dlib's 448 texture statistics
(`TextureStatistics` of three early maps) besides the descriptors: NAN as
`e_k = qᵀ f_k + vᵀ u_k` bounded by `max_logit=1.5`, QAN as its quality input. 60 epochs; Adam
`LEARNING_RATES`; the kept epoch also rewards the held-out weight/severity Spearman
(`--spearman-weight 1`; severity never enters the loss).

QAN (`--qan-objective precision`, the shipped `qan`) learns its quality μ as each frame's
*precision*: every frame of the training people alone, `GaussianPrecisionLoss` (`μ a − log μ`)
against its residual `a` to its person's clean centre (`frame_residuals`: `1 − cos` to the unit
mean of the clean frames of the person's other images, in units of the 5th percentile of the
clean residuals), 30 epochs, the epoch of least held-out loss (held-out people's frames) kept.
So μ_k ≈ 1 / E[a_k] and QAN's weights μ_k / Σ μ are the inverse-variance (maximum-likelihood)
weighting, calibrated by how far degraded frames really lie from their identity, where the
set triplet loss (`--qan-objective triplet`, the earlier recipe) only learns that they are
worse and gives them far less weight than they deserve (docs/set_generalization.md).

`--strategy mirrored|multi_worker` trains under `tf.distribute`
(`keras_faceset.models.distribute`): each batch of `2 * --people-per-batch` sets is split over
the replicas; QAN's triplets are mined in the global batch (``mining_batch="global"``), NAN's
contrastive pairs within each replica's share; on a multi-worker run (one process per worker,
`TF_CONFIG`) only the chief writes the weights.

    python zoo/train_set_heads.py --data ../shared/data/lfw --out keras_faceset/zoo/weights
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from keras_faceset.data import LFW
from keras_faceset.data.degrade import KINDS
from keras_faceset.data.devtrain_sets import (
    MAX_IMAGES,
    VERSIONS,
    frame_index,
    frame_residuals,
    sample_sets,
    training_people,
)
from keras_faceset.data.held_out_sets import held_out_protocol
from keras_faceset.eval.pair_reports import head_report, report_line
from keras_faceset.eval.protocol_cache import (
    add_cache_options,
    devtrain_embeddings,
    embedded_variants,
    head_features,
    held_out_embeddings,
)
from keras_faceset.eval.sets import pool_sets, set_verification
from keras_faceset.losses import (
    ContrastiveLoss,
    GaussianPrecisionLoss,
    TripletLoss,
    precision_nll,
)
from keras_faceset.models.distribute import fit, is_chief, make_strategy
from keras_faceset.strategies import add_strategy_option
from keras_faceset.zoo import build_head, get_preset

HEADS = ("nan1", "nan", "qan")
CLEAN_SETS = 0.25
QUALITY_ANCHOR = 1.0
ANCHOR_QUALITY = 0.1
CLEAN_SLACK = 0.003
LEARNING_RATES = {"nan1": 3e-3, "nan": 3e-3, "qan": 1e-3}
SPEARMAN_WEIGHT = 1.0
TRAIN_TEMPERATURE = 1.0
"""The shipped weights were trained and chosen at T = 1; a preset's temperature is applied to
them at inference."""
QAN_OBJECTIVES = ("precision", "triplet")
PRECISION_UNIT_PERCENTILE = 5.0
"""Residuals are in units of this percentile of the training people's clean residuals: QAN's
sigmoid μ <= 1 caps a frame's precision at the precision of the cleanest 5 % of frames."""
PRECISION_EPOCHS = 30


def head_and_loss(name: str, overrides: dict | None = None, qan_objective: str = "precision"):
    """A fresh head of preset `name` (`build_head` at `TRAIN_TEMPERATURE`, kwargs `overrides`)
    and its loss: QAN (a head with a "quality" output) with `GaussianPrecisionLoss` on its
    quality (`qan_objective="precision"`, `train_precision`) or the set triplet loss on its
    embedding (`"triplet"`: trained with `quality_anchor`; triplets mined in the global batch
    under `tf.distribute`), NAN with the contrastive loss on its embedding."""
    head = build_head(name, **{"temperature": TRAIN_TEMPERATURE, **(overrides or {})})
    if "quality" in head.output:
        if qan_objective == "precision":
            return head, GaussianPrecisionLoss()
        return head, TripletLoss(margin=0.2, mining_batch="global")
    return head, ContrastiveLoss(margin=1.0, pairs="batch")


def precision_targets(residuals: np.ndarray, clean_train: np.ndarray) -> np.ndarray:
    """`frame_residuals` in units of the `PRECISION_UNIT_PERCENTILE` of the residuals of the
    clean training frames `clean_train` (a boolean mask), as float32."""
    unit = np.percentile(residuals[clean_train], PRECISION_UNIT_PERCENTILE)
    return (residuals / unit).astype(np.float32)


def train_precision(head, arrays, targets, train_rows, held_out_rows, epochs, batch_size, seed):
    """Fit QAN `head`'s quality μ to frames' precisions: `GaussianPrecisionLoss` on each frame
    of `train_rows` alone (a set of one frame) against its residual `targets`; keeps the epoch
    of least held-out loss on `held_out_rows` (other people). Returns that epoch (0-based)."""

    def frames_of(rows):
        return head_inputs(head, arrays, rows[:, None], np.ones((len(rows), 1), bool))

    train, train_targets = frames_of(train_rows), {"quality": targets[train_rows][:, None]}
    held_out, held_out_targets = frames_of(held_out_rows), targets[held_out_rows]
    best, kept = np.inf, None
    for epoch in range(epochs):
        history = fit(
            head,
            train,
            train_targets,
            batch_size=batch_size,
            shuffle=True,
            seed=seed + epoch,
        )
        quality = head.predict(held_out, batch_size=1024, verbose=0)["quality"][:, 0]
        loss = float(np.mean(keras.ops.convert_to_numpy(precision_nll(held_out_targets, quality))))
        print(f"epoch {epoch + 1}: loss {history['loss'][-1]:.4f}, held out {loss:.4f}", flush=True)
        if loss < best:
            best, kept = loss, (epoch, head.get_weights())
    head.set_weights(kept[1])
    return kept[0]


def quality_anchor(anchor: float = ANCHOR_QUALITY):
    """Loss on QAN's "quality" output: `max(0, log anchor − log max_k μ_k)` of a set, on each
    of its frames (so that Keras' frame mask applies).

    The triplet loss sees only μ_k / Σ μ and leaves the scale of μ free; left alone, μ drifts
    into the sigmoid's exponential tail (μ ~ 1e-9), where μ_k / Σ μ is a sharp softmax even
    among good frames. The hinge keeps each set's best frame at μ >= `anchor`, where the
    sigmoid is no longer exponential, and is 0 (no gradient) once it is there.
    """

    def quality_anchor_loss(_, quality):
        best = keras.ops.max(quality, axis=-1, keepdims=True)
        hinge = keras.ops.relu(np.log(anchor) - keras.ops.log(best + 1e-7))
        return hinge * keras.ops.ones_like(quality)

    return quality_anchor_loss


def head_inputs(head, arrays, index, mask):
    inputs = {"frame_embeddings": arrays["embedding"][index], "mask": mask}
    if head.feature_shape is not None:
        inputs["frame_features"] = head_features(head, arrays)[index]
    return inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument("--out", required=True, help="folder the head weights are written to")
    parser.add_argument("--heads", default=",".join(HEADS), help="set presets whose heads to train")
    parser.add_argument("--max-images", type=int, default=MAX_IMAGES)
    parser.add_argument("--versions", type=int, default=VERSIONS)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=100, help="batches per epoch")
    parser.add_argument("--people-per-batch", type=int, default=32)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help=f"Adam learning rate (default: {LEARNING_RATES})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clean-sets", type=float, default=CLEAN_SETS, help="share of all-clean training pairs"
    )
    parser.add_argument(
        "--quality-anchor", type=float, default=QUALITY_ANCHOR, help="QAN anchor loss weight"
    )
    parser.add_argument(
        "--anchor-quality", type=float, default=ANCHOR_QUALITY, help="QAN anchor's μ floor"
    )
    parser.add_argument(
        "--head-kwargs",
        default=None,
        help="head options as JSON overriding each preset's head kwargs, e.g. "
        "'{\"feature_shape\": 256}' (NAN reading the pooled last map)",
    )
    parser.add_argument(
        "--spearman-weight",
        type=float,
        default=SPEARMAN_WEIGHT,
        help="epoch choice: weight of the held-out Spearman(weight, severity) in the score",
    )
    parser.add_argument(
        "--leave-out",
        choices=KINDS,
        default=None,
        help="train without this degradation family, to test the head on it "
        "(zoo/set_generalization.py): its frames are replaced by the image's clean frame in the "
        "training sets and in the held-out pairs that choose the epoch",
    )
    parser.add_argument(
        "--qan-objective",
        choices=QAN_OBJECTIVES,
        default="precision",
        help="QAN's training: its quality as each frame's precision (GaussianPrecisionLoss on "
        "residuals to the person's clean centre; the shipped qan) or the set triplet loss on "
        "its embedding (end to end, with the quality anchor)",
    )
    add_strategy_option(parser)
    args = parser.parse_args(argv)
    strategy = make_strategy(args.strategy, args.cpu_replicas)  # before any TensorFlow work
    overrides = None if args.head_kwargs is None else json.loads(args.head_kwargs)
    keras.utils.set_random_seed(args.seed)
    lfw = LFW(args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images, frames, arrays = devtrain_embeddings(
        lfw, cache, args.chips, args.max_images, args.versions
    )
    index_of = frame_index(frames)
    if args.leave_out:
        index_of = leave_out(index_of, frames, args.leave_out)
    train_names = training_people(images, args.seed)
    train_people = [
        np.flatnonzero(images.identity == name)
        for name in images.identity.unique()
        if name in train_names
    ]
    print(
        f"{len(images)} images, {len(frames)} frames; people: {len(train_people)} train, "
        f"{images.identity.nunique() - len(train_people)} held out",
        flush=True,
    )
    val = held_out_embeddings(lfw, cache, args.chips, train_names)
    if args.leave_out:
        # the epoch choice must not see the left-out family either
        pairs = without_family(held_out_protocol(lfw, train_names, degraded=True), args.leave_out)
        variants, _ = embedded_variants(
            {"degraded": pairs}, lfw, cache, args.chips, "devtrain_sets_dlib"
        )
        val["degraded"] = variants["degraded"]
    baseline = {}
    for variant, v in val.items():
        mean = [pool_sets(v["embedding"], v[side], "mean") for side in ("rows_a", "rows_b")]
        baseline[variant] = set_verification(*mean, v["same"], v["fold"])
        print(f"held-out {variant}, mean pooling: {report_line(baseline[variant])}", flush=True)
    # QAN's precision objective: each frame alone, its residual to its person's clean centre
    residuals = frame_residuals(arrays["embedding"], frames, images)
    person_train = images.identity.isin(train_names).to_numpy()[frames["image"].to_numpy()]
    kept = np.ones(len(frames), bool)
    if args.leave_out:
        kept = (frames["version"].to_numpy() == 0) | (
            frames["kind_id"].to_numpy() != KINDS.index(args.leave_out)
        )
    clean = frames["version"].to_numpy() == 0
    targets = precision_targets(residuals, clean & person_train)
    precision_rows = (np.flatnonzero(person_train & kept), np.flatnonzero(~person_train & kept))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.heads.split(","):
        spec = get_preset(name).head
        # each head its own streams, so that it trains the same alone or after others
        keras.utils.set_random_seed(args.seed)
        rng = np.random.default_rng([args.seed, 2, zlib.crc32(spec.results_model.encode())])
        with strategy.scope():
            head, loss = head_and_loss(name, overrides, args.qan_objective)
            if isinstance(loss, GaussianPrecisionLoss):
                head.compile(
                    optimizer=keras.optimizers.Adam(args.learning_rate or LEARNING_RATES[name]),
                    loss={"quality": loss},
                )
        if isinstance(loss, GaussianPrecisionLoss):
            best = train_precision(
                head, arrays, targets, *precision_rows, PRECISION_EPOCHS, 256, args.seed
            )
            report = head_report(head, val["degraded"])
            print(f"{spec.results_model} held out degraded {report_line(report)}", flush=True)
            if is_chief(strategy):
                head.save_weights(out / spec.weights)
            print(f"{spec.results_model}: kept epoch {best + 1}", flush=True)
            continue
        with strategy.scope():
            losses, loss_weights = {"embedding": loss}, {"embedding": 1.0}
            if "quality" in head.output:
                losses["quality"] = quality_anchor(args.anchor_quality)
                loss_weights["quality"] = args.quality_anchor
            head.compile(
                optimizer=keras.optimizers.Adam(args.learning_rate or LEARNING_RATES[name]),
                loss=losses,
                loss_weights=loss_weights,
            )
        epochs = []
        for epoch in range(args.epochs):
            index, mask, labels = sample_sets(
                index_of, train_people, args.people_per_batch, args.steps, rng, args.clean_sets
            )
            targets = {"embedding": labels, "quality": np.zeros(len(labels), np.float32)}
            history = fit(
                head,
                head_inputs(head, arrays, index, mask),
                {key: targets[key] for key in losses},
                batch_size=2 * args.people_per_batch,
            )
            reports = {variant: head_report(head, v) for variant, v in val.items()}
            epochs.append((reports, head.get_weights()))
            print(
                f"{spec.results_model} epoch {epoch + 1}: loss "
                f"{history['loss'][-1]:.4f}, held out degraded "
                f"{report_line(reports['degraded'])}, spearman "
                f"{reports['degraded']['spearman']:.3f}; clean {report_line(reports['clean'])}",
                flush=True,
            )
        best = select_epoch(
            [reports for reports, _ in epochs],
            baseline["clean"],
            args.spearman_weight,
        )
        head.set_weights(epochs[best][1])
        if is_chief(strategy):
            head.save_weights(out / spec.weights)
        print(f"{spec.results_model}: kept epoch {best + 1}", flush=True)


def leave_out(index_of: np.ndarray, frames, kind: str) -> np.ndarray:
    """`frame_index` `index_of` with each degraded frame of family `kind` replaced by its
    image's clean frame (version 0): the sets never hold that family (a set may then hold the
    clean frame twice)."""
    out = index_of.copy()
    left = np.zeros(out.shape, bool)
    left[:, 1:] = frames["kind_id"].to_numpy()[out[:, 1:]] == KINDS.index(kind)
    out[left] = np.broadcast_to(out[:, :1], out.shape)[left]
    return out


def without_family(pairs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """LFW-sets pair list `pairs` with every frame of degradation family `kind` made clean (its
    spec None): the same pairs, sets and other frames' degradations."""
    out = pairs.copy()
    for column in ("degrade_a", "degrade_b"):
        out[column] = [
            [None if spec is not None and spec["kind"] == kind else spec for spec in specs]
            for specs in pairs[column]
        ]
    return out


def select_epoch(reports: list[dict], clean_baseline: dict, spearman_weight: float = 0.0) -> int:
    """Index of the kept epoch: among the epochs whose held-out clean TAR@FAR=1e-2 and 1e-3
    are at most `CLEAN_SLACK` below mean pooling's, the largest degraded AUC + TAR@FAR=1e-2 +
    TAR@FAR=1e-3 − `spearman_weight` · Spearman(weight, severity) (first of ties); if no epoch
    qualifies, the largest clean + degraded sum."""

    def score(report: dict) -> float:
        quality = spearman_weight * report["spearman"] if spearman_weight else 0.0
        return report["auc"] + report["tar@far=0.01"] + report["tar@far=0.001"] - quality

    def clean_ok(report: dict) -> bool:
        return all(
            report[key] >= clean_baseline[key] - CLEAN_SLACK
            for key in ("tar@far=0.01", "tar@far=0.001")
        )

    keep = [i for i, r in enumerate(reports) if clean_ok(r["clean"])]
    if keep:
        return max(keep, key=lambda i: (score(reports[i]["degraded"]), -i))
    return max(
        range(len(reports)),
        key=lambda i: (score(reports[i]["degraded"]) + score(reports[i]["clean"]), -i),
    )


if __name__ == "__main__":
    main()

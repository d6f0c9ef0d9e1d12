"""Train NAN-1, NAN-2 and QAN heads on frozen dlib-ResNet frame embeddings of LFW DevTrain.

Each selected DevTrain image (people with >= 2 images, at most 6 images each) is embedded
clean and in `--versions` random degradations (kind uniform over the six of
`keras_faceset.data.degrade`, severity ~ U[0.2, 1]), applied to the 250x250 image and warped
with the clean image's five-point transform, as in ``zoo/evaluate_lfw_sets.py``. A training
pair is two sets of 2-6 distinct frames from disjoint halves of a person's images, drawn without
replacement with weight 0.2 for clean and 0.8 for degraded frames (LFW-sets degraded: 80% of
frames degraded); a share `--clean-sets` of the pairs holds clean frames only.

People are split 80/20 (seed 0). Validation mirrors LFW-sets (docs/lfw_sets.md): its pair
rules (10 folds x 40 genuine + 40 impostor pairs, set sizes 2-6 by the person's image count,
80% of frames degraded with severity ~ U[0.3, 1], a clean variant with the same pairs) applied
to the DevTrain people with >= 4 images that are not training people (`held_out_protocols`;
their frames are embedded once into --cache). These pairs pick the epoch (`select_epoch`) and
are the only data the choices were made on (LFW-sets, built from DevTest, is not used).
Each head has its own random streams (seeded by its name), so it trains the same alone.

The NAN and QAN heads read dlib's 448 texture statistics (`TextureStatistics` of three early
maps) besides the descriptors: NAN as `e_k = qᵀ f_k + vᵀ u_k` bounded by `max_logit=1.5`, QAN
as its quality input. 60 epochs; Adam `LEARNING_RATES`; the kept epoch also rewards the
held-out weight/severity Spearman (`--spearman-weight 1`; severity never enters the loss).

    python zoo/train_set_heads.py --data /work/shared/data/lfw --cache /work/scratch/sets \
        --chips /work/scratch/chips --out keras_faceset/zoo/weights
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import keras
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_lfw_sets import (  # noqa: E402
    WEIGHTS,
    cached_frame_embeddings,
    frames_digest,
    head_features,
    new_head,
    pairs_spearman,
)

from keras_faceset.data import LFW, lfw_sets  # noqa: E402
from keras_faceset.data.degrade import KINDS  # noqa: E402
from keras_faceset.eval.sets import (  # noqa: E402
    head_sets,
    pool_sets,
    set_verification,
)
from keras_faceset.losses import ContrastiveLoss, TripletLoss  # noqa: E402

MAX_PER_PERSON = 6
MAX_FRAMES = 6
CLEAN_PROBABILITY = 0.2
SEVERITY = (0.2, 1.0)
CLEAN_SETS = 0.25
QUALITY_ANCHOR = 1.0
ANCHOR_QUALITY = 0.1
CLEAN_SLACK = 0.003
CLEAN_REPLICATES = 5
LEARNING_RATES = {"nan1_dlib": 3e-3, "nan2_dlib": 3e-3, "qan_dlib": 1e-3}
SPEARMAN_WEIGHT = 1.0


def held_out_protocol(lfw: LFW, exclude: set[str], seed: int = 0, degraded: bool = False):
    """An LFW-sets pair list built by the LFW-sets rules (`keras_faceset.data.lfw_sets`,
    docs/lfw_sets.md: 10 folds x 40 + 40 pairs, k ~ U{2..min(6, n // 2)}, impostor sizes a
    shuffle of the genuine ones; `degraded`: 80% of frames degraded with severity ~ U[0.3, 1])
    on the DevTrain people with >= 4 images not in `exclude` (the training people), with the
    random streams `[seed, 10]` (pairs) and `[seed, 11]` (degradations)."""
    params = {**lfw_sets.DEFAULTS, "split": "dev_train"}
    people = lfw.people("dev_train")
    people = people[(people["count"] >= params["min_images"]) & ~people["name"].isin(exclude)]
    names = people["name"].sort_values().tolist()
    counts = people.set_index("name").loc[names, "count"].to_numpy()
    rng = np.random.default_rng([seed, 10])
    folds = lfw_sets._deal_folds(counts, params["num_folds"], rng)
    records = []
    for fold in range(params["num_folds"]):
        members = np.flatnonzero(folds == fold)
        fold_names = [names[i] for i in members]
        for same, a, b, numbers_a, numbers_b in lfw_sets._fold_pairs(
            fold_names, counts[members], params["pairs_per_fold"], params, rng
        ):
            sets = [
                [lfw_sets._relative(lfw, fold_names[person], n) for n in numbers]
                for person, numbers in ((a, numbers_a), (b, numbers_b))
            ]
            records.append((fold, same, fold_names[a], fold_names[b], *sets))
    pairs = pd.DataFrame.from_records(records, columns=lfw_sets.COLUMNS[:6])
    lengths = [len(s) for pair in zip(pairs["set_a"], pairs["set_b"], strict=True) for s in pair]
    if degraded:
        specs = lfw_sets._degrade_specs(lengths, params, np.random.default_rng([seed, 11]))
    else:
        specs = [[None] * length for length in lengths]
    pairs["degrade_a"], pairs["degrade_b"] = specs[0::2], specs[1::2]
    return pairs


def held_out_embeddings(lfw: LFW, cache: Path, chips: str, exclude: set[str]) -> dict:
    """Held-out pairs per variant: frame rows ("rows_a", "rows_b"), "same", "fold" and the
    frames' "embedding", "pooled", "texture" and "severity". "degraded" is `held_out_protocol`
    seed 0;
    "clean" pools `CLEAN_REPLICATES` clean pair lists (seeds 0, 1, ...; folds numbered apart),
    because one list (400 impostor pairs) saturates: mean pooling accepts no impostor and
    rejects no genuine pair. The distinct frames are embedded once into
    ``cache/devtrain_sets_dlib_<digest>.npz``."""
    clean = [
        held_out_protocol(lfw, exclude, seed).assign(fold=lambda t, s=seed: t["fold"] + 10 * s)
        for seed in range(CLEAN_REPLICATES)
    ]
    protocols = {
        "clean": pd.concat(clean, ignore_index=True),
        "degraded": held_out_protocol(lfw, exclude, 0, degraded=True),
    }
    union, rows_a, rows_b = lfw_sets.protocol_frames(pd.concat(protocols.values()))
    path = cache / f"devtrain_sets_dlib_{frames_digest(union)}.npz"
    arrays = cached_frame_embeddings(union, lfw, chips, path)
    arrays["severity"] = union["severity"].to_numpy()
    variants, start = {}, 0
    for variant, pairs in protocols.items():
        stop = start + len(pairs)
        variants[variant] = {
            "rows_a": rows_a[start:stop],
            "rows_b": rows_b[start:stop],
            "same": pairs["same"].to_numpy(),
            "fold": pairs["fold"].to_numpy(),
            **arrays,
        }
        start = stop
    return variants


def select_images(lfw: LFW, max_images: int, seed: int = 0) -> pd.DataFrame:
    """DevTrain images of people with >= 2 images, <= 6 per person, people in random order
    until `max_images`; columns path (relative to the images), identity."""
    table = lfw.images("dev_train")
    table = table[table.identity.map(table.identity.value_counts()) >= 2]
    rng = np.random.default_rng(seed)
    people = table.identity.unique()
    picked, total = [], 0
    for person in people[rng.permutation(len(people))]:
        rows = table[table.identity == person]
        rows = rows.iloc[np.sort(rng.permutation(len(rows))[:MAX_PER_PERSON])]
        picked.append(rows)
        total += len(rows)
        if total >= max_images:
            break
    out = pd.concat(picked, ignore_index=True)[["path", "identity"]]
    out["path"] = [str(Path(p).relative_to(lfw.image_dir)) for p in out.path]
    return out


def training_people(images: pd.DataFrame, seed: int = 0) -> set[str]:
    """The training people: 80% of `images`' identities in random order (stream `[seed, 2]`);
    the other 20% are held out."""
    identities = images.identity.unique()
    order = np.random.default_rng([seed, 2]).permutation(len(identities))
    return {identities[p] for p in sorted(order[len(order) // 5 :])}


def training_frames(images: pd.DataFrame, versions: int, seed: int = 0) -> pd.DataFrame:
    """One clean and `versions` randomly degraded frames per image (`protocol_frames` columns
    plus image, version)."""
    rng = np.random.default_rng([seed, 1])
    rows = []
    for image, path in enumerate(images.path):
        rows.append((path, 0, 0.0, 0, 0, image, 0))
        for version in range(1, versions + 1):
            kind = int(rng.integers(len(KINDS)))
            severity = round(float(rng.uniform(*SEVERITY)), 3)
            seed0, seed1 = (int(s) for s in rng.integers(0, 2**31, size=2))
            rows.append((path, kind, severity, seed0, seed1, image, version))
    columns = ["path", "kind_id", "severity", "seed0", "seed1", "image", "version"]
    return pd.DataFrame(rows, columns=columns)


def cached_embeddings(lfw: LFW, cache: Path, chips: str, max_images: int, versions: int):
    """(images, frames, {"embedding", "pooled", "texture"}), embedded once into `cache`."""
    images = select_images(lfw, max_images)
    frames = training_frames(images, versions)
    path = cache / f"devtrain_dlib_{frames_digest(frames)}.npz"
    return images, frames, cached_frame_embeddings(frames, lfw, chips, path)


def sample_sets(
    frame_index: np.ndarray,
    people: list[np.ndarray],
    pairs_per_batch: int,
    batches: int,
    rng,
    clean_sets: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batches` batches of `pairs_per_batch` people x 2 sets: frame rows (N, T), mask, labels.

    `frame_index[image, version]` is the frame row (version 0 clean). A person's images are
    split in two random halves, one per set; a set holds k ~ U{2..6} distinct frames (at most
    the half's frames) of its half's images drawn without replacement, a clean frame with
    weight 0.2 and a degraded one with weight 0.8 / versions. With probability `clean_sets` a
    person's two sets hold clean frames only.
    """
    versions = frame_index.shape[1] - 1
    prior = np.array(
        [CLEAN_PROBABILITY] + [(1 - CLEAN_PROBABILITY) / versions] * versions if versions else [1.0]
    )
    clean_prior = np.eye(len(prior))[0]
    index = np.zeros((batches * pairs_per_batch * 2, MAX_FRAMES), np.int64)
    mask = np.zeros(index.shape, bool)
    labels = np.zeros(len(index), np.int64)
    n = 0
    for _ in range(batches):
        for person in rng.choice(len(people), pairs_per_batch, replace=False):
            clean = clean_sets > 0 and rng.random() < clean_sets
            images = rng.permutation(people[person])
            half = int(rng.integers(1, len(images)))
            for part in (images[:half], images[half:]):
                pool = frame_index[part].ravel()
                weights = np.tile(clean_prior if clean else prior, len(part))
                k = min(int(rng.integers(2, MAX_FRAMES + 1)), int(np.count_nonzero(weights)))
                index[n, :k] = rng.choice(pool, k, replace=False, p=weights / weights.sum())
                mask[n, :k] = True
                labels[n] = person
                n += 1
    return index, mask, labels


def build_head(name: str, nan_kwargs: dict | None = None):
    """A fresh head `name` (NAN heads with `nan_kwargs`) and its set-embedding loss: NAN with
    the contrastive loss, QAN with the set triplet loss (trained with `quality_anchor`)."""
    head = new_head(name, nan_kwargs)
    if name == "qan_dlib":
        return head, TripletLoss(margin=0.2)
    return head, ContrastiveLoss(margin=1.0, pairs="batch")


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


def validate(head, v: dict) -> dict:
    """`set_verification` of the head on one held-out variant `v` (`held_out_embeddings`) and
    the Spearman correlation of the frames' relative weights with their severity ("spearman")."""
    features = head_features(head, v)
    sides = [head_sets(head, v["embedding"], v[side], features) for side in ("rows_a", "rows_b")]
    report = set_verification(sides[0][0], sides[1][0], v["same"], v["fold"])
    report["spearman"] = pairs_spearman(v, [s[1] for s in sides], [s[2] for s in sides])
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/lfw")
    parser.add_argument("--cache", default="/work/scratch/sets")
    parser.add_argument("--chips", default="/work/scratch/chips")
    parser.add_argument("--out", default=str(WEIGHTS))
    parser.add_argument("--heads", default="nan1_dlib,nan2_dlib,qan_dlib")
    parser.add_argument("--max-images", type=int, default=2400)
    parser.add_argument("--versions", type=int, default=4)
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
        "--nan-kwargs",
        default=None,
        help='NANHead options as JSON, e.g. \'{"feature_shape": 256, "max_logit": 2}\' '
        "(default: evaluate_lfw_sets.NAN_KWARGS)",
    )
    parser.add_argument(
        "--spearman-weight",
        type=float,
        default=SPEARMAN_WEIGHT,
        help="epoch choice: weight of the held-out Spearman(weight, severity) in the score",
    )
    args = parser.parse_args(argv)
    nan_kwargs = None if args.nan_kwargs is None else json.loads(args.nan_kwargs)
    keras.utils.set_random_seed(args.seed)
    lfw = LFW(args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images, frames, arrays = cached_embeddings(
        lfw, cache, args.chips, args.max_images, args.versions
    )
    frame_index = frames.index.to_numpy().reshape(len(images), args.versions + 1)
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
    baseline = {}
    for variant, v in val.items():
        mean = [pool_sets(v["embedding"], v[side], "mean") for side in ("rows_a", "rows_b")]
        baseline[variant] = set_verification(*mean, v["same"], v["fold"])
        print(f"held-out {variant}, mean pooling: {_short(baseline[variant])}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.heads.split(","):
        # each head its own streams, so that it trains the same alone or after others
        keras.utils.set_random_seed(args.seed)
        rng = np.random.default_rng([args.seed, 2, zlib.crc32(name.encode())])
        head, loss = build_head(name, nan_kwargs)
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
                frame_index, train_people, args.people_per_batch, args.steps, rng, args.clean_sets
            )
            targets = {"embedding": labels, "quality": np.zeros(len(labels), np.float32)}
            history = head.fit(
                head_inputs(head, arrays, index, mask),
                {key: targets[key] for key in losses},
                batch_size=2 * args.people_per_batch,
                shuffle=False,
                verbose=0,
            )
            reports = {variant: validate(head, v) for variant, v in val.items()}
            epochs.append((reports, head.get_weights()))
            print(
                f"{name} epoch {epoch + 1}: loss {history.history['loss'][-1]:.4f}, held out "
                f"degraded {_short(reports['degraded'])}, spearman "
                f"{reports['degraded']['spearman']:.3f}; clean {_short(reports['clean'])}",
                flush=True,
            )
        best = select_epoch(
            [reports for reports, _ in epochs],
            baseline["clean"],
            args.spearman_weight,
        )
        head.set_weights(epochs[best][1])
        head.save_weights(out / f"{name}.weights.h5")
        print(f"{name}: kept epoch {best + 1}", flush=True)


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


def _short(report: dict) -> str:
    return ", ".join(
        f"{key} {report[key]:.4f}" for key in ("accuracy", "auc", "tar@far=0.01", "tar@far=0.001")
    )


if __name__ == "__main__":
    main()

"""Train NAN-1, NAN-2 and QAN heads on frozen dlib-ResNet frame embeddings of LFW DevTrain.

Each selected DevTrain image (people with >= 2 images, at most 6 images each) is embedded
clean and in `--versions` random degradations (kind uniform over the six of
`keras_faceset.data.degrade`, severity ~ U[0.2, 1]), applied to the 250x250 image and warped
with the clean image's five-point transform, as in ``zoo/evaluate_lfw_sets.py``. A training
pair is two sets of 2-6 distinct frames from disjoint halves of a person's images, drawn without
replacement with weight 0.2 for clean and 0.8 for degraded frames (LFW-sets degraded: 80% of
frames degraded). People are split 80/20 (seed 0); the held-out people's set pairs pick the
epoch (largest AUC + TAR@FAR=1e-2 + TAR@FAR=1e-3, the first of ties) and are the only data the
choices were made on (LFW-sets, built from DevTest, is not used here).

    python zoo/train_set_heads.py --data /work/shared/data/lfw --cache /work/scratch/sets \
        --chips /work/scratch/chips --out keras_faceset/zoo/weights
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_lfw_sets import WEIGHTS, embed_frames  # noqa: E402

from keras_faceset.data import LFW  # noqa: E402
from keras_faceset.data.degrade import KINDS  # noqa: E402
from keras_faceset.eval.sets import head_sets, pool_sets, set_verification  # noqa: E402
from keras_faceset.losses import ContrastiveLoss, TripletLoss  # noqa: E402
from keras_faceset.models import NANHead, QANHead  # noqa: E402

MAX_PER_PERSON = 6
MAX_FRAMES = 6
CLEAN_PROBABILITY = 0.2
SEVERITY = (0.2, 1.0)


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
    """(images, frames, {"embedding", "pooled"}), embedded once into `cache`."""
    images = select_images(lfw, max_images)
    frames = training_frames(images, versions)
    digest = hashlib.sha256(frames.to_csv(index=False).encode()).hexdigest()[:12]
    path = cache / f"devtrain_dlib_{digest}.npz"
    if not path.is_file():
        print(f"embedding {len(frames)} DevTrain frames ({len(images)} images)", flush=True)
        np.savez(path, **embed_frames(frames, lfw, chips))
    with np.load(path) as data:
        return images, frames, {key: data[key] for key in data.files}


def sample_sets(
    frame_index: np.ndarray, people: list[np.ndarray], pairs_per_batch: int, batches: int, rng
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batches` batches of `pairs_per_batch` people x 2 sets: frame rows (N, T), mask, labels.

    `frame_index[image, version]` is the frame row (version 0 clean). A person's images are
    split in two random halves, one per set; a set holds k ~ U{2..6} distinct frames (at most
    the half's frames) of its half's images drawn without replacement, a clean frame with
    weight 0.2 and a degraded one with weight 0.8 / versions.
    """
    versions = frame_index.shape[1] - 1
    prior = np.array([CLEAN_PROBABILITY] + [(1 - CLEAN_PROBABILITY) / versions] * versions)
    index = np.zeros((batches * pairs_per_batch * 2, MAX_FRAMES), np.int64)
    mask = np.zeros(index.shape, bool)
    labels = np.zeros(len(index), np.int64)
    n = 0
    for _ in range(batches):
        for person in rng.choice(len(people), pairs_per_batch, replace=False):
            images = rng.permutation(people[person])
            half = int(rng.integers(1, len(images)))
            for part in (images[:half], images[half:]):
                pool = frame_index[part].ravel()
                weights = np.tile(prior, len(part))
                k = min(int(rng.integers(2, MAX_FRAMES + 1)), len(pool))
                index[n, :k] = rng.choice(pool, k, replace=False, p=weights / weights.sum())
                mask[n, :k] = True
                labels[n] = person
                n += 1
    return index, mask, labels


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


def build_head(name: str):
    if name == "qan_dlib":
        head = QANHead(128, feature_shape=256)
        loss = TripletLoss(margin=0.2)
    else:
        head = NANHead(128, num_blocks=int(name[3]))
        loss = ContrastiveLoss(margin=1.0, pairs="batch")
    return head, loss


def head_inputs(head, arrays, index, mask):
    inputs = {"frame_embeddings": arrays["embedding"][index], "mask": mask}
    if head.feature_shape is not None:
        inputs["frame_features"] = arrays["pooled"][index]
    return inputs


def validate(head, arrays, val) -> dict:
    rows_a, rows_b, same = val
    emb = [head_sets(head, arrays["embedding"], r, arrays["pooled"])[0] for r in (rows_a, rows_b)]
    return set_verification(emb[0], emb[1], same, folds=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/lfw")
    parser.add_argument("--cache", default="/work/scratch/sets")
    parser.add_argument("--chips", default="/work/scratch/chips")
    parser.add_argument("--out", default=str(WEIGHTS))
    parser.add_argument("--heads", default="nan1_dlib,nan2_dlib,qan_dlib")
    parser.add_argument("--max-images", type=int, default=2400)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="batches per epoch")
    parser.add_argument("--people-per-batch", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    lfw = LFW(args.data)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images, frames, arrays = cached_embeddings(
        lfw, cache, args.chips, args.max_images, args.versions
    )
    frame_index = frames.index.to_numpy().reshape(len(images), args.versions + 1)
    codes, identities = pd.factorize(images.identity)
    rng = np.random.default_rng([args.seed, 2])
    order = rng.permutation(len(identities))
    held_out = set(order[: len(order) // 5].tolist())
    people = [np.flatnonzero(codes == p) for p in range(len(identities))]
    train_people = [people[p] for p in range(len(people)) if p not in held_out]
    val_people = [people[p] for p in sorted(held_out)]
    print(
        f"{len(images)} images, {len(frames)} frames; people: {len(train_people)} train, "
        f"{len(val_people)} held out",
        flush=True,
    )
    val = validation_pairs(frame_index, val_people, 400, np.random.default_rng([args.seed, 3]))
    mean = [pool_sets(arrays["embedding"], r, "mean") for r in val[:2]]
    print("held-out mean pooling:", _short(set_verification(*mean, val[2], folds=5)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.heads.split(","):
        head, loss = build_head(name)
        head.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss={"embedding": loss})
        best, best_epoch = None, -1
        for epoch in range(args.epochs):
            index, mask, labels = sample_sets(
                frame_index, train_people, args.people_per_batch, args.steps, rng
            )
            history = head.fit(
                head_inputs(head, arrays, index, mask),
                {"embedding": labels},
                batch_size=2 * args.people_per_batch,
                shuffle=False,
                verbose=0,
            )
            report = validate(head, arrays, val)
            score = report["auc"] + report["tar@far=0.01"] + report["tar@far=0.001"]
            print(
                f"{name} epoch {epoch + 1}: loss {history.history['loss'][-1]:.4f}, "
                f"held out {_short(report)}",
                flush=True,
            )
            if best is None or score > best:
                best, best_epoch = score, epoch + 1
                head.save_weights(out / f"{name}.weights.h5")
        print(f"{name}: kept epoch {best_epoch}", flush=True)


def _short(report: dict) -> str:
    return ", ".join(
        f"{key} {report[key]:.4f}" for key in ("accuracy", "auc", "tar@far=0.01", "tar@far=0.001")
    )


if __name__ == "__main__":
    main()

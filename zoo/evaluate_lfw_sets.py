"""Evaluate set pooling and the NAN / QAN heads on LFW-sets (clean and degraded) with dlib.

Every distinct frame of both protocols is embedded once by dlib's ResNet (128-d descriptor,
256-d pooled last map and 448 texture statistics, cached as an .npz under --cache). A frame
is the 250x250 LFW image with its protocol degradation applied, warped to dlib's 150x150
chip by the five-point transform MTCNN found on the *clean* image (a tracker gives the box;
quality varies).

    python zoo/evaluate_lfw_sets.py --data /work/shared/data/lfw --cache /work/scratch/sets \
        --chips /work/scratch/chips --record keras_faceset/zoo/results.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.data import LFW, lfw_sets
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.eval.results import record_result
from keras_faceset.eval.sets import (
    POOLINGS,
    head_sets,
    pad_sets,
    pool_sets,
    set_verification,
    weight_severity_spearman,
)
from keras_faceset.files import atomic_path

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = REPO / "keras_faceset" / "zoo" / "protocols"
WEIGHTS = REPO / "keras_faceset" / "zoo" / "weights"
HEADS = ("nan1_dlib", "nan2_dlib", "qan_dlib", "seqface_dlib")
TEXTURE_DIM = 448
NAN_KWARGS: dict = {"feature_shape": TEXTURE_DIM, "max_logit": 1.5}
FEATURE_KEYS = ("embedding", "pooled", "texture")
SIDES = ("rows_a", "rows_b")
METRICS = ("accuracy", "std", "auc", "tar@far=0.01", "tar@far=0.001")


def frame_chips(frames: pd.DataFrame, lfw: LFW, chips: str, batch_size: int = 64):
    """Batches of dlib chips (n, 150, 150, 3) float32 of `protocol_frames`-style rows, in order.

    The clean image of each path is aligned once (MTCNN five points, chip cache `chips`); each
    (possibly degraded) 250x250 frame is cropped with that alignment (`FaceEmbedder.chips`'s
    `like`).
    """
    embedder = FaceEmbedder("dlib_resnet", chip_cache=chips)
    paths = sorted(set(frames["path"]))
    aligned = embedder.align_faces([str(lfw.image_dir / p) for p in paths])
    where = {p: i for i, p in enumerate(paths)}
    dataset = lfw_sets.frame_dataset(frames, lfw, batch_size=batch_size)
    for batch, names in zip(dataset, _chunks(list(frames["path"]), batch_size), strict=True):
        like = aligned.take([where[name] for name in names])
        yield embedder.chips(list(batch.numpy()), like=like).astype(np.float32)


def cached_frame_embeddings(
    frames: pd.DataFrame, lfw: LFW, chips: str, path: Path
) -> dict[str, np.ndarray]:
    """`embed_frames` of `frames`, computed once and kept in the .npz `path` (written
    atomically; a cache without every `FEATURE_KEYS` is computed again)."""
    if path.is_file():
        with np.load(path) as data:
            if set(FEATURE_KEYS) <= set(data.files):
                return {key: data[key] for key in FEATURE_KEYS}
    print(f"embedding {len(frames)} frames into {path}", flush=True)
    arrays = embed_frames(frames, lfw, chips)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays


def frames_digest(frames: pd.DataFrame) -> str:
    """A short content key of a frame table (names its embedding cache)."""
    return hashlib.sha256(frames.to_csv(index=False).encode()).hexdigest()[:12]


def embed_frames(
    frames: pd.DataFrame, lfw: LFW, chips: str, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """dlib "embedding" (F, 128), "pooled" (F, 256) and "texture" (F, 448) of
    `protocol_frames`-style rows, from
    the chips of `frame_chips`."""
    from keras_faceset import zoo

    extractor = zoo.load("dlib_resnet").feature_extractor()
    out: dict[str, list] = {key: [] for key in FEATURE_KEYS}
    start, done = time.time(), 0
    for batch in frame_chips(frames, lfw, chips, batch_size):
        result = extractor.predict_on_batch(batch)
        for key in out:
            out[key].append(np.asarray(result[key]))
        done += len(batch)
        print(f"  embedded {done}/{len(frames)} ({done / (time.time() - start):.1f}/s)", flush=True)
    return {key: np.concatenate(value) for key, value in out.items()}


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def protocol_embeddings(lfw: LFW, cache: Path, chips: str) -> dict:
    """Per variant: pairs, frame rows and the frame embeddings / features / severity.

    The distinct frames of both variants (the clean frames of the degraded variant are shared)
    are embedded once into ``cache/lfw_sets_dlib.npz``.
    """
    variants = {}
    for variant in ("clean", "degraded"):
        pairs = lfw_sets.load_protocol(PROTOCOLS / f"lfw_sets_{variant}.jsonl")
        frames, rows_a, rows_b = lfw_sets.protocol_frames(pairs)
        variants[variant] = {"pairs": pairs, "frames": frames, "rows_a": rows_a, "rows_b": rows_b}
    union = pd.concat([v["frames"] for v in variants.values()]).drop_duplicates(ignore_index=True)
    path = cache / "lfw_sets_dlib.npz"
    arrays = cached_frame_embeddings(union, lfw, chips, path)
    if len(arrays["embedding"]) != len(union):
        raise ValueError(f"{path} has {len(arrays['embedding'])} rows, not {len(union)}")
    position = {key: i for i, key in enumerate(union.itertuples(index=False, name=None))}
    for v in variants.values():
        where = np.array([position[key] for key in v["frames"].itertuples(index=False, name=None)])
        v.update({key: value[where] for key, value in arrays.items()})
        v["severity"] = v["frames"]["severity"].to_numpy()
    return variants


def new_head(name: str, nan_kwargs: dict | None = None):
    """A fresh head of the shipped architecture `name` (nan1_dlib, nan2_dlib with `nan_kwargs`,
    default `NAN_KWARGS`; qan_dlib; both read dlib's 448 texture statistics as
    `"frame_features"`; seqface_dlib)."""
    from keras_faceset.models import NANHead, QANHead, SeqFaceHead

    if name.startswith("nan"):
        return NANHead(
            128, num_blocks=int(name[3]), **(NAN_KWARGS if nan_kwargs is None else nan_kwargs)
        )
    if name == "seqface_dlib":
        return SeqFaceHead(128, projection_dim=128)
    return QANHead(128, feature_shape=TEXTURE_DIM)


def head_features(head, arrays: dict) -> np.ndarray | None:
    """The cached per-frame features `head` reads ("texture" or "pooled", by its
    `feature_shape`), None for a head that reads none."""
    if head.feature_shape is None:
        return None
    for key in ("texture", "pooled"):
        if arrays[key].shape[1:] == tuple(head.feature_shape):
            return arrays[key]
    raise ValueError(f"no cached frame features of shape {head.feature_shape}")


def load_head(name: str, weights_dir: Path, nan_kwargs: dict | None = None):
    """The head `name` (see `new_head`) with its weights from `weights_dir`, or None when they
    are missing."""
    path = weights_dir / f"{name}.weights.h5"
    if not path.is_file():
        return None
    head = new_head(name, nan_kwargs)
    head.load_weights(path)
    return head


def evaluate(
    variants: dict,
    weights_dir: Path,
    names: tuple[str, ...] = HEADS,
    nan_kwargs: dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Rows of metrics per (method, variant) and the weight/severity Spearman per head."""
    rows, spearman = [], {}
    heads = {name: load_head(name, weights_dir, nan_kwargs) for name in names}
    for variant, v in variants.items():
        same = v["pairs"]["same"].to_numpy()
        folds = v["pairs"]["fold"].to_numpy()
        methods = {
            f"{pooling}_dlib": (
                pool_sets(v["embedding"], v["rows_a"], pooling),
                pool_sets(v["embedding"], v["rows_b"], pooling),
            )
            for pooling in POOLINGS
        }
        for name, head in heads.items():
            if head is None:
                continue
            features = head_features(head, v)
            sides = [head_sets(head, v["embedding"], v[side], features) for side in SIDES]
            methods[name] = (sides[0][0], sides[1][0])
            if variant == "degraded":
                spearman[name] = pairs_spearman(v, [s[1] for s in sides], [s[2] for s in sides])
        for name, (set_a, set_b) in methods.items():
            report = set_verification(set_a, set_b, same, folds)
            rows.append({"model": name, "protocol": f"lfw_sets_{variant}", **report})
    return pd.DataFrame(rows), spearman


def pairs_spearman(v: dict, weights: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """`weight_severity_spearman` over both sides of the pairs of a variant `v` (its
    "rows_a" / "rows_b" sets and frame "severity"): `weights` and `masks` (N, T) per side."""
    rows = [pad_sets(v[side])[0] for side in SIDES]
    width = max(part.shape[1] for part in rows)
    weights, masks, rows = (
        np.concatenate([np.pad(p, [(0, 0), (0, width - p.shape[1])]) for p in parts])
        for parts in (weights, masks, rows)
    )
    return weight_severity_spearman(weights, masks, v["severity"][rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/lfw", help="LFW data folder")
    parser.add_argument("--cache", default="/work/scratch/sets", help="frame embedding cache")
    parser.add_argument("--chips", default="/work/scratch/chips", help="aligned chip cache")
    parser.add_argument("--weights", default=str(WEIGHTS), help="folder of the head weights")
    parser.add_argument("--record", default=None, help="results CSV to record rows in")
    parser.add_argument("--heads", default=",".join(HEADS), help="heads to evaluate")
    parser.add_argument(
        "--nan-kwargs", default=None, help="NANHead options as JSON (default: NAN_KWARGS)"
    )
    args = parser.parse_args(argv)
    nan_kwargs = None if args.nan_kwargs is None else json.loads(args.nan_kwargs)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    variants = protocol_embeddings(LFW(args.data), cache, args.chips)
    table, spearman = evaluate(
        variants, Path(args.weights), tuple(args.heads.split(",")), nan_kwargs
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table[["model", "protocol", *METRICS]].round(4).to_string(index=False))
    for name, rho in spearman.items():
        print(f"Spearman(relative weight, severity) on lfw_sets_degraded, {name}: {rho:.3f}")
    if args.record:
        command = "python zoo/evaluate_lfw_sets.py " + shlex.join(sys.argv[1:])
        for row in table.to_dict("records"):
            variant = row["protocol"].removeprefix("lfw_sets_")
            record_result(
                args.record,
                {
                    "model": row["model"],
                    "protocol": row["protocol"],
                    "alignment": "five_point",
                    "accuracy": row["accuracy"],
                    "std": row["std"],
                    "auc": row["auc"],
                    "tar@far=1e-2": row["tar@far=0.01"],
                    "tar@far=1e-3": row["tar@far=0.001"],
                    "pairs": len(variants[variant]["pairs"]),
                    "command": command,
                },
            )


if __name__ == "__main__":
    main()

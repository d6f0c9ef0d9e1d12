"""LFW-sets: set-to-set face verification on LFW View 1 DevTest people (docs/lfw_sets.md).

Each pair compares two sets of k frames (k in [2, 6]): genuine pairs are two disjoint image
subsets of one person, impostor pairs subsets of two people. Only DevTest people with >= 4
images are used (none is in DevTrain, the training split). People are dealt into 10 folds by
image count, so no person is in two folds; each fold has as many genuine as impostor pairs, and
the impostor set sizes copy the genuine ones. The degraded variant has the same pairs, with each
frame degraded (probability 0.8) by `degrade.degrade` with a recorded kind, severity and seed.

The lists shipped in ``keras_faceset/zoo/protocols/`` are the protocol; `make_lfw_sets`
regenerates them (the test suite checks that it still does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_faceset.data import degrade as degrade_module
from keras_faceset.data.images import load_image
from keras_faceset.data.lfw import LFW

NAME = "lfw_sets"
VERSION = 1
COLUMNS = ["fold", "same", "name_a", "name_b", "set_a", "set_b", "degrade_a", "degrade_b"]
DEFAULTS = {
    "split": "dev_test",
    "min_images": 4,
    "num_folds": 10,
    "pairs_per_fold": 40,
    "min_frames": 2,
    "max_frames": 6,
    "max_genuine_per_person": 5,
    "degrade_probability": 0.8,
    "severity_range": [0.3, 1.0],
    "kinds": list(degrade_module.KINDS),
}
SEED_LIMIT = 2**31

Spec = dict | None


def _people(lfw: LFW, params: dict, exclude: Collection[str] | None) -> pd.DataFrame:
    """Eligible people: in the split with >= min_images images and not in `exclude` (default:
    the DevTrain people, on which heads are trained)."""
    people = lfw.people(params["split"])
    exclude = set(lfw.people("dev_train")["name"]) if exclude is None else set(exclude)
    keep = (people["count"] >= params["min_images"]) & ~people["name"].isin(exclude)
    return people[keep].sort_values("name").reset_index(drop=True)[["name", "count"]]


def _deal_folds(counts: np.ndarray, num_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each person: shuffle, sort by image count, deal in snake order 0..F-1, F-1..0."""
    order = rng.permutation(len(counts))
    order = order[np.argsort(-counts[order], kind="stable")]
    rank = np.arange(len(counts)) % (2 * num_folds)
    folds = np.empty(len(counts), np.int64)
    folds[order] = np.where(rank < num_folds, rank, 2 * num_folds - 1 - rank)
    return folds


def _genuine_quotas(counts: np.ndarray, total: int, params: dict) -> np.ndarray:
    """One genuine pair per person, the rest by D'Hondt (count / (quota + 1)) under a cap."""
    cap = np.minimum(params["max_genuine_per_person"], counts // params["min_frames"])
    quotas = np.ones(len(counts), np.int64)
    if len(counts) > total or cap.sum() < total:
        raise ValueError(
            f"a fold of {len(counts)} people cannot give {total} genuine pairs "
            f"(one per person, at most {cap.sum()}); change pairs_per_fold"
        )
    while quotas.sum() < total:
        priority = np.where(quotas < cap, counts / (quotas + 1), -1.0)
        quotas[np.argmax(priority)] += 1
    return quotas


def _subset(count: int, k: int, rng: np.random.Generator) -> list[int]:
    return sorted(int(i) + 1 for i in rng.choice(count, k, replace=False))


def _fold_pairs(names, counts, total, params, rng) -> list[tuple]:
    """(same, index_a, index_b, numbers_a, numbers_b) for one fold's people."""
    pairs, used = [], set()
    for person, quota in enumerate(_genuine_quotas(counts, total, params)):
        top = min(params["max_frames"], counts[person] // 2)
        for _ in range(quota):
            for _attempt in range(1000):
                k = int(rng.integers(params["min_frames"], top + 1))
                numbers = rng.permutation(counts[person])[: 2 * k] + 1
                a, b = sorted(numbers[:k].tolist()), sorted(numbers[k:].tolist())
                key = (person, frozenset([tuple(a), tuple(b)]))
                if key not in used:
                    break
            else:
                raise ValueError(f"{names[person]}: not enough images for distinct subsets")
            used.add(key)
            pairs.append((True, person, person, a, b))
    usage = np.zeros(len(counts), np.int64)
    partners: set[frozenset] = set()
    for k in rng.permutation([len(pair[3]) for pair in pairs]).tolist():
        tie_break = rng.permutation(len(counts))
        chosen = []
        for _ in range(2):
            allowed = [
                p
                for p in tie_break
                if counts[p] >= k
                and p not in chosen
                and not (chosen and frozenset([chosen[0], p]) in partners)
            ]
            if not allowed:
                raise ValueError(f"a fold has too few people with {k} images for impostor pairs")
            chosen.append(min(allowed, key=lambda p: usage[p]))  # first least used
        usage[chosen] += 1
        partners.add(frozenset(chosen))
        a, b = chosen
        pairs.append((False, a, b, _subset(counts[a], k, rng), _subset(counts[b], k, rng)))
    return pairs


def _degrade_specs(lengths: Sequence[int], params: dict, rng: np.random.Generator) -> list:
    """Per frame, None (clean) or {"kind", "severity", "seed"}; every frame draws the same
    numbers whether or not it is degraded, so one parameter does not shift the others."""
    kinds, (low, high) = params["kinds"], params["severity_range"]
    specs = []
    for length in lengths:
        frames = []
        for _ in range(length):
            degraded = rng.random() < params["degrade_probability"]
            kind = kinds[int(rng.integers(len(kinds)))]
            severity = round(float(rng.uniform(low, high)), 3)
            seed = [int(s) for s in rng.integers(SEED_LIMIT, size=2)]
            frames.append({"kind": kind, "severity": severity, "seed": seed} if degraded else None)
        specs.append(frames)
    return specs


def make_lfw_sets(
    lfw: LFW,
    seed: int = 0,
    degraded: bool = False,
    exclude: Collection[str] | None = None,
    streams: tuple[int, int] = (0, 1),
    **params,
) -> pd.DataFrame:
    """The LFW-sets pair list: columns fold, same, name_a, name_b, set_a, set_b (lists of paths
    relative to ``lfw.image_dir``), degrade_a, degrade_b (per frame None or a spec dict).

    `params` override `DEFAULTS`; `exclude` names people left out (default: DevTrain's). Only
    the people files are read. Pairs and folds come from ``np.random.default_rng([seed,
    streams[0]])`` and degradations from ``[seed, streams[1]]``, so the degraded variant has the
    same pairs as the clean one. ``df.attrs["protocol"]`` holds the parameters.
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown LFW-sets parameters {sorted(unknown)}; known: {list(DEFAULTS)}")
    params = {**DEFAULTS, **params}
    if not 1 <= params["min_frames"] <= params["max_frames"]:
        raise ValueError("need 1 <= min_frames <= max_frames")
    if params["min_images"] < 2 * params["min_frames"]:
        raise ValueError("min_images must be at least 2 * min_frames (two disjoint subsets)")
    people = _people(lfw, params, exclude)
    names, counts = people["name"].tolist(), people["count"].to_numpy()
    rng = np.random.default_rng([seed, streams[0]])
    folds = _deal_folds(counts, params["num_folds"], rng)
    records = []
    for fold in range(params["num_folds"]):
        members = np.flatnonzero(folds == fold)
        fold_names = [names[i] for i in members]
        for same, a, b, numbers_a, numbers_b in _fold_pairs(
            fold_names, counts[members], params["pairs_per_fold"], params, rng
        ):
            name_a, name_b = fold_names[a], fold_names[b]
            records.append(
                (
                    fold,
                    same,
                    name_a,
                    name_b,
                    [_relative(lfw, name_a, n) for n in numbers_a],
                    [_relative(lfw, name_b, n) for n in numbers_b],
                )
            )
    frame = pd.DataFrame.from_records(records, columns=COLUMNS[:6])
    lengths = [len(s) for pair in zip(frame["set_a"], frame["set_b"], strict=True) for s in pair]
    if degraded:
        specs = _degrade_specs(lengths, params, np.random.default_rng([seed, streams[1]]))
    else:
        specs = [[None] * length for length in lengths]
    frame["degrade_a"], frame["degrade_b"] = specs[0::2], specs[1::2]
    frame.attrs["protocol"] = {
        "name": NAME,
        "version": VERSION,
        "variant": "degraded" if degraded else "clean",
        "seed": seed,
        **params,
    }
    return frame


def _relative(lfw: LFW, name: str, number: int) -> str:
    return Path(lfw.image_path(name, number)).relative_to(lfw.image_dir).as_posix()


def save_protocol(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write JSON lines: a header ``{"protocol": frame.attrs["protocol"]}``, then one pair per
    line; atomically (a temporary file renamed into place)."""
    from keras_faceset.files import atomic_path

    missing = [c for c in COLUMNS if c not in frame]
    if missing or "protocol" not in frame.attrs:
        raise ValueError(f"not an LFW-sets table (missing {missing or 'attrs[protocol]'})")
    lines = [json.dumps({"protocol": frame.attrs["protocol"]})]
    for row in frame[COLUMNS].itertuples(index=False):
        record = dict(zip(COLUMNS, row, strict=True))
        record.update(fold=int(record["fold"]), same=bool(record["same"]))
        lines.append(json.dumps(record))
    with atomic_path(Path(path)) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def load_protocol(path: str | os.PathLike) -> pd.DataFrame:
    """Read a file written by `save_protocol`; the header goes to ``df.attrs["protocol"]``."""
    lines = Path(path).read_text().splitlines()
    try:
        rows = [json.loads(line) for line in lines]
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not JSON lines ({err.msg})") from err
    if not rows or "protocol" not in rows[0]:
        raise ValueError(f"{path}: first line must be the {{'protocol': ...}} header")
    for number, row in enumerate(rows[1:], 2):
        if set(row) != set(COLUMNS):
            raise ValueError(f"{path}:{number}: expected the keys {COLUMNS}, got {sorted(row)}")
    frame = pd.DataFrame(rows[1:], columns=COLUMNS)
    frame.attrs["protocol"] = rows[0]["protocol"]
    return frame


def _lfw(lfw: LFW | str | os.PathLike) -> LFW:
    return lfw if isinstance(lfw, LFW) else LFW(lfw)


def degraded_frame(path: str, spec: Spec, lfw: LFW | str | os.PathLike) -> np.ndarray:
    """Frame `path` (relative to the LFW images) with `spec` applied: uint8 (250, 250, 3).

    `lfw` is an `LFW` or its data folder. ``spec=None`` is the clean image.
    """
    image = load_image(_lfw(lfw).image_dir / path)
    if spec is None:
        return image.numpy()
    return degrade_module.degrade(image, spec["kind"], spec["severity"], spec["seed"]).numpy()


def protocol_frames(frame: pd.DataFrame) -> tuple[pd.DataFrame, list, list]:
    """The distinct (path, spec) frames of a pair list, and each pair's rows into them.

    Returns ``(frames, rows_a, rows_b)``: frames has columns path, kind_id (index in
    `degrade.KINDS`, 0 when clean), severity (0.0 when clean: the identity), seed0, seed1;
    ``rows_a[i]`` indexes the frames of pair i's set_a. Embed the frames once (e.g. with
    `frame_dataset`), then score sets via `sets.embedding_set_dataset` or direct indexing.
    """
    table: dict[tuple, int] = {}

    def rows(paths, specs):
        out = []
        for path, spec in zip(paths, specs, strict=True):
            key = (path, 0, 0.0, 0, 0)
            if spec is not None:
                kind_id = degrade_module.KINDS.index(spec["kind"])
                key = (path, kind_id, float(spec["severity"]), *map(int, spec["seed"]))
            out.append(table.setdefault(key, len(table)))
        return np.array(out, np.int64)

    rows_a = [rows(p, s) for p, s in zip(frame["set_a"], frame["degrade_a"], strict=True)]
    rows_b = [rows(p, s) for p, s in zip(frame["set_b"], frame["degrade_b"], strict=True)]
    columns = ["path", "kind_id", "severity", "seed0", "seed1"]
    return pd.DataFrame(list(table), columns=columns), rows_a, rows_b


def frame_dataset(
    frames: pd.DataFrame,
    lfw: LFW | str | os.PathLike,
    preprocess_fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
    batch_size: int = 32,
) -> tf.data.Dataset:
    """Batches of ``preprocess_fn(degraded frame)`` for `protocol_frames`'s table, in order.

    Decoding and degrading run in parallel inside tf.data; the pixels equal `degraded_frame`.
    """
    image_dir = _lfw(lfw).image_dir
    paths = [str(image_dir / p) for p in frames["path"]]
    seeds = frames[["seed0", "seed1"]].to_numpy(np.int64)
    columns = (
        paths,
        frames["kind_id"].to_numpy(np.int32),
        frames["severity"].to_numpy(np.float32),
        seeds,
    )

    def load(path, kind_id, severity, seed):
        image = degrade_module.degrade(load_image(path), kind_id, severity, seed)
        return image if preprocess_fn is None else preprocess_fn(image)

    dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def write_protocols(
    lfw: LFW | str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0
) -> list[Path]:
    """Write ``lfw_sets_clean.jsonl`` and ``lfw_sets_degraded.jsonl`` (default parameters)."""
    paths = []
    for variant in ("clean", "degraded"):
        path = Path(out_dir) / f"{NAME}_{variant}.jsonl"
        save_protocol(make_lfw_sets(_lfw(lfw), seed, degraded=variant == "degraded"), path)
        paths.append(path)
    return paths

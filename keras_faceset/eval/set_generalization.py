"""Set heads against mean pooling on faces and corruptions the heads never saw in training.

Variants, each at least 1,000 set pairs (docs/set_generalization.md):

- ``lfw_clean``: LFW-sets rules (`keras_faceset.data.lfw_sets.make_lfw_sets`) on the View 1
  DevTest people (disjoint from DevTrain, the set heads' training people), 10 folds x 50
  genuine + 50 impostor pairs of 2-6 frames, undegraded: LFW's own quality spread.
- ``lfw_<family>`` for each of the six `keras_faceset.data.degrade.KINDS`: the same pairs with
  each frame degraded by that family alone with probability `DEGRADE_PROBABILITY`, severity ~
  U`SEVERITY` (the same frames and severities for every family: only the kind changes).
- ``lfw_<a>+<b>`` for the `COMPOSITIONS`: the frames of ``lfw_<a>`` degraded again by `b`
  (its own severity and seed), two families on the same frame.
- ``lfw_<family>_hard``: ``lfw_<family>`` with the same pairs and the same random draws per
  frame, at `HARD_DEGRADE_PROBABILITY` and severity ~ U`HARD_SEVERITY` (fixed before any head
  was measured on them): every frame degraded in ``lfw_<family>`` is degraded here too, with
  the same kind and seed, more strongly; more frames are degraded.
- ``lfw_unseen_<family>`` for each of the `UNSEEN` families (motion blur, haze, speckle; none
  of them in training, fixed before any aggregator was measured on them): the pairs and
  degraded frames of ``lfw_<family>_hard`` (the same frames, severities and seeds for every
  family), each degraded frame degraded by that family instead.
- ``yale_3+3`` and ``yale_random6``: Extended Yale B people (cropped, grayscale), sets of 3
  near-frontal + 3 extreme-light images (`extreme_light`), or 6 random images; `YALE_PAIRS`
  pairs, aligned as a user's files are (`keras_faceset.FaceEmbedder`, detection with the
  centre-crop fallback).

LFW frames are warped to dlib's chip with the clean image's five-point transform, as in
LFW-sets (`keras_faceset.eval.protocol_cache`); every distinct frame is embedded once and
cached. `compare` scores a head and mean pooling of the same unit frame embeddings on the same
pairs, with a paired bootstrap over set pairs (`paired_bootstrap`) of the difference.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from keras_faceset.align import align_faces, crop_like
from keras_faceset.data import degrade as degrade_module
from keras_faceset.data import lfw_sets
from keras_faceset.data.images import load_image
from keras_faceset.data.lfw import LFW
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.eval.pair_reports import SIDES
from keras_faceset.eval.protocol_cache import (
    FEATURE_KEYS,
    PRESET,
    embedded_variants,
    frames_digest,
    head_features,
)
from keras_faceset.eval.sets import pool_sets, set_verification
from keras_faceset.eval.verification import kfold_accuracy, tar_at_far
from keras_faceset.files import atomic_path
from keras_faceset.models.set_inference import head_sets
from keras_faceset.vectors import clean_centre_residuals
from keras_faceset.zoo import get_preset, load

FAMILIES = degrade_module.KINDS
COMPOSITIONS = (("blur", "noise"), ("downscale", "jpeg"), ("gamma", "occlusion"))
"""Pairs of families applied to the same frame; together they cover each family once."""
PAIRS_PER_FOLD = 50
DEGRADE_PROBABILITY = 0.5
SEVERITY = (0.3, 1.0)
HARD_DEGRADE_PROBABILITY = 0.8
HARD_SEVERITY = (0.8, 1.0)
UNSEEN = ("motion_blur", "haze", "speckle")
"""Degradation families outside `FAMILIES` (no head trained on them), fixed before any aggregator
was measured on them: ``lfw_unseen_<family>`` (`unseen_degrade`)."""
MAX_MOTION_LENGTH = 16.0
MOTION_SAMPLES = 33
"""Motion blur: the mean along a segment of 16 s px at a seeded angle (the Gaussian blur's
sigma is 4 s px; a segment's standard deviation is its length / √12 = 4.6 s px)."""
MAX_HAZE = 0.8
HAZE_LIGHT = 200.0
"""Haze: `(1 − a) x + a · 200` with a = 0.8 s (contrast down to 1 − a, towards a light grey)."""
MAX_SPECKLE = 0.4
"""Speckle: `x (1 + 0.4 s n)`, n ~ N(0, 1) per pixel, the same for the three channels."""
STREAMS = (20, 21)
"""Random streams of the LFW pair lists (pairs, degradations); 22 draws the compositions'
second family, 30 the Yale B pairs."""
YALE_PAIRS = 1000
YALE_SET = 6
FAR = 1e-2
RESAMPLES = 1000
METRICS = ("accuracy", f"tar@far={FAR}")
YALE_NAME = re.compile(r"(yaleB\d+)_P00A([+-]\d+)E([+-]\d+)\.png$")


def extreme_light(azimuth: int, elevation: int) -> bool:
    """An extreme-light Yale B image: |azimuth| >= 60 or |elevation| >= 45 degrees."""
    return abs(azimuth) >= 60 or abs(elevation) >= 45


def lfw_protocols(lfw: LFW, seed: int = 0, hard: bool = False) -> dict[str, pd.DataFrame]:
    """The pair lists of ``lfw_clean`` and each ``lfw_<family>`` (same pairs and folds), or
    with `hard` each ``lfw_<family>_hard`` only (the same pairs and per-frame draws at
    `HARD_DEGRADE_PROBABILITY` and `HARD_SEVERITY`)."""
    common = {"seed": seed, "streams": STREAMS, "pairs_per_fold": PAIRS_PER_FOLD}
    protocols = {} if hard else {"lfw_clean": lfw_sets.make_lfw_sets(lfw, **common)}
    probability, severity = (
        (HARD_DEGRADE_PROBABILITY, HARD_SEVERITY) if hard else (DEGRADE_PROBABILITY, SEVERITY)
    )
    for family in FAMILIES:
        protocols[f"lfw_{family}{'_hard' if hard else ''}"] = lfw_sets.make_lfw_sets(
            lfw,
            degraded=True,
            kinds=[family],
            degrade_probability=probability,
            severity_range=list(severity),
            **common,
        )
    return protocols


def lfw_variants(
    lfw: LFW, cache: str | os.PathLike, chips: str | os.PathLike | None = None, seed: int = 0
) -> dict[str, dict]:
    """The LFW variants (``lfw_clean``, ``lfw_<family>``, ``lfw_<a>+<b>``,
    ``lfw_<family>_hard``, ``lfw_unseen_<family>``) in the `keras_faceset.eval.protocol_cache`
    variant form, embedded once into `cache` (the hard and each unseen family's frames in files
    of their own)."""
    protocols = lfw_protocols(lfw, seed)
    variants, union = embedded_variants(protocols, lfw, cache, chips, "set_generalization_lfw")
    for first, second in COMPOSITIONS:
        variants[f"lfw_{first}+{second}"] = _composed(
            variants[f"lfw_{first}"], union, second, lfw, cache, chips, seed
        )
    hard, hard_union = embedded_variants(
        lfw_protocols(lfw, seed, hard=True), lfw, cache, chips, "set_generalization_lfw_hard"
    )
    base = hard[f"lfw_{FAMILIES[0]}_hard"]
    unseen = {
        f"lfw_unseen_{family}": _unseen(base, hard_union, family, lfw, cache, chips)
        for family in UNSEEN
    }
    return {**variants, **hard, **unseen}


def _composed(
    base: dict, union: pd.DataFrame, second: str, lfw: LFW, cache, chips, seed: int
) -> dict:
    """`base` with each of its degraded frames degraded again by family `second`."""
    degraded = _degraded_rows(base, union)
    rng = np.random.default_rng([seed, 22, FAMILIES.index(second)])
    frames = union.iloc[degraded].reset_index(drop=True)
    frames["kind_id2"] = FAMILIES.index(second)
    frames["severity2"] = np.round(rng.uniform(*SEVERITY, len(frames)), 3)
    frames[["seed2_0", "seed2_1"]] = rng.integers(lfw_sets.SEED_LIMIT, size=(len(frames), 2))
    path = Path(cache) / f"set_generalization_composed_{frames_digest(frames)}.npz"
    columns = (
        *(frames[c].to_numpy(np.int32) for c in ("kind_id", "kind_id2")),
        *(frames[c].to_numpy(np.float32) for c in ("severity", "severity2")),
        frames[["seed0", "seed1"]].to_numpy(np.int64),
        frames[["seed2_0", "seed2_1"]].to_numpy(np.int64),
    )

    def twice(image, kind1, kind2, severity1, severity2, seed1, seed2):
        image = degrade_module.degrade(image, kind1, severity1, seed1)
        return degrade_module.degrade(image, kind2, severity2, seed2)

    extra = _cached_degraded_embeddings(frames, columns, twice, lfw, chips, path, "composed")
    severity = frames["severity"] + frames["severity2"]
    return _replace_frames(base, union, degraded, extra, severity.to_numpy())


def _unseen(base: dict, union: pd.DataFrame, family: str, lfw: LFW, cache, chips) -> dict:
    """`base` with each of its degraded frames degraded by the `UNSEEN` `family` instead (the
    frame's severity and seed)."""
    degraded = _degraded_rows(base, union)
    frames = union.iloc[degraded].reset_index(drop=True).assign(unseen=family)
    path = Path(cache) / f"set_generalization_unseen_{frames_digest(frames)}.npz"
    columns = (frames["severity"].to_numpy(np.float32), frames[["seed0", "seed1"]].to_numpy())

    def degraded_by(image, severity, seed):
        return unseen_degrade(image, family, severity, seed)

    extra = _cached_degraded_embeddings(
        frames, columns, degraded_by, lfw, chips, path, f"{family}-degraded"
    )
    return _replace_frames(base, union, degraded, extra, frames["severity"].to_numpy())


def _degraded_rows(base: dict, union: pd.DataFrame) -> np.ndarray:
    """The rows of `union` that `base`'s pairs use and that are degraded (severity > 0)."""
    rows = np.unique(np.concatenate([*base["rows_a"], *base["rows_b"]]))
    return rows[union["severity"].to_numpy()[rows] > 0]


def _replace_frames(
    base: dict, union: pd.DataFrame, rows: np.ndarray, extra: dict, severity: np.ndarray
) -> dict:
    """`base` whose pairs use the frames `extra` (`FEATURE_KEYS` arrays, appended after the
    `union` table's) in place of its frames `rows`."""
    remap = np.arange(len(union))
    remap[rows] = len(union) + np.arange(len(rows))
    arrays = {key: np.concatenate([base[key], extra[key]]) for key in FEATURE_KEYS}
    arrays["severity"] = np.concatenate([base["severity"], severity])
    arrays["path"] = np.concatenate([base["path"], union["path"].to_numpy()[rows]])
    sides = tuple([remap[r] for r in base[side]] for side in SIDES)
    return {**base, **arrays, "rows_a": sides[0], "rows_b": sides[1]}


def unseen_degrade(image, family: str, severity, seed) -> tf.Tensor:
    """One `UNSEEN` family on a uint8 or float (0..255) RGB image (H, W, 3), the same dtype out
    (clipped to 0..255, rounded for uint8), severity s in [0, 1] (0: the image), random draws
    from the stateless `seed` (shape (2,)):

    - ``motion_blur``: the mean along a segment of `MAX_MOTION_LENGTH` s px centred on each
      pixel, at an angle uniform in [0, π) (reflect padding);
    - ``haze``: `(1 − a) x + a HAZE_LIGHT`, a = `MAX_HAZE` s (no randomness);
    - ``speckle``: `x (1 + MAX_SPECKLE s n)`, n ~ N(0, 1) per pixel, shared by the channels.
    """
    if family not in UNSEEN:
        raise ValueError(f"unknown unseen family {family!r}; expected one of {list(UNSEEN)}")
    image = tf.convert_to_tensor(image)
    x = tf.cast(image, tf.float32)
    s = tf.cast(severity, tf.float32)
    seed = tf.cast(seed, tf.int64)
    if family == "haze":
        out = (1.0 - MAX_HAZE * s) * x + MAX_HAZE * s * HAZE_LIGHT
    elif family == "speckle":
        n = tf.random.stateless_normal(tf.shape(x)[:2], seed)[..., None]
        out = x * (1.0 + MAX_SPECKLE * s * n)
    else:
        out = _motion_blur(x, MAX_MOTION_LENGTH * s, seed)
    out = tf.clip_by_value(out, 0.0, 255.0)
    return tf.cast(tf.round(out) if image.dtype == tf.uint8 else out, image.dtype)


def _motion_blur(x: tf.Tensor, length: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mean of (H, W, 3) `x` shifted along a segment of `length` px centred on each pixel, at
    an angle uniform in [0, π) from `seed`: `MOTION_SAMPLES` points on the segment, each
    splatted bilinearly into the kernel (length 0: the identity)."""
    angle = np.pi * tf.random.stateless_uniform([], seed)
    radius = int(np.ceil(MAX_MOTION_LENGTH / 2)) + 1
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    t = tf.linspace(-0.5, 0.5, MOTION_SAMPLES) * length
    dx = tf.nn.relu(1.0 - tf.abs(taps[None, :] - (t * tf.cos(angle))[:, None]))
    dy = tf.nn.relu(1.0 - tf.abs(taps[None, :] - (t * tf.sin(angle))[:, None]))
    weight = tf.einsum("ny,nx->yx", dy, dx)
    kernel = tf.tile((weight / tf.reduce_sum(weight))[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(x[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def _cached_degraded_embeddings(
    frames: pd.DataFrame, columns: tuple, degrade, lfw: LFW, chips, path: Path, label: str
) -> dict:
    """dlib's `FEATURE_KEYS` of `frames` degraded by `degrade(image, *column values)` (the
    250x250 image, cropped with the clean image's alignment), computed once into the .npz
    `path`."""
    if path.is_file():
        with np.load(path) as data:
            return {key: data[key] for key in FEATURE_KEYS}
    preset = get_preset(PRESET)
    paths = sorted(set(frames["path"]))
    aligned = align_faces([str(lfw.image_dir / p) for p in paths], **preset.crop, cache=chips)
    where = np.array([paths.index(p) for p in frames["path"]])
    extractor = load(PRESET).feature_extractor()
    images = [str(lfw.image_dir / p) for p in frames["path"]]
    dataset = tf.data.Dataset.from_tensor_slices((images, *columns)).map(
        lambda image_path, *values: degrade(load_image(image_path), *values),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    out: dict[str, list] = {key: [] for key in FEATURE_KEYS}
    print(f"embedding {len(frames)} {label} frames into {path}", flush=True)
    for start, batch in zip(range(0, len(frames), 64), dataset.batch(64), strict=True):
        like = aligned.take(where[start : start + 64].tolist())
        result = extractor.predict_on_batch(
            crop_like(list(batch.numpy()), like, preset.crop_spec).astype(np.float32)
        )
        for key in out:
            out[key].append(keras.ops.convert_to_numpy(result[key]))
    arrays = {key: np.concatenate(value) for key, value in out.items()}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays


def yale_images(root: str | os.PathLike) -> pd.DataFrame:
    """Extended Yale B images under `root`: path, person, azimuth, elevation, extreme."""
    rows = []
    for path in sorted(Path(root).rglob("*.png")):
        match = YALE_NAME.search(path.name)
        if match:
            person, azimuth, elevation = match[1], int(match[2]), int(match[3])
            rows.append((str(path), person, azimuth, elevation, extreme_light(azimuth, elevation)))
    if not rows:
        raise FileNotFoundError(f"no Extended Yale B images (yaleBxx_P00A...E....png) in {root}")
    return pd.DataFrame(rows, columns=["path", "person", "azimuth", "elevation", "extreme"])


def yale_pairs(
    images: pd.DataFrame, mixed: bool, pairs: int = YALE_PAIRS, seed: int = 0
) -> tuple[list, list, np.ndarray, np.ndarray]:
    """(rows_a, rows_b, same, fold): `pairs` set pairs (half genuine) of `YALE_SET` images,
    each set 3 near-frontal + 3 extreme-light images (`mixed`) or 6 random ones; a genuine
    pair's two sets are disjoint; folds 0-9 dealt in turn over a shuffled order."""
    rng = np.random.default_rng([seed, 30, int(mixed)])
    people = sorted(images["person"].unique())
    by_person = {p: images.index[images["person"] == p].to_numpy() for p in people}

    def draw(person: str, avoid: np.ndarray) -> np.ndarray:
        pool = np.setdiff1d(by_person[person], avoid)
        if not mixed:
            return rng.choice(pool, YALE_SET, replace=False)
        extreme = images["extreme"].to_numpy()[pool]
        half = YALE_SET // 2
        return np.concatenate(
            [
                rng.choice(pool[~extreme], half, replace=False),
                rng.choice(pool[extreme], half, replace=False),
            ]
        )

    rows_a, rows_b, same = [], [], []
    for i in range(pairs):
        genuine = i < pairs // 2
        a, b = rng.choice(len(people), 2, replace=False)
        first = draw(people[a], np.array([], np.int64))
        second = draw(people[a], first) if genuine else draw(people[b], np.array([], np.int64))
        rows_a.append(first)
        rows_b.append(second)
        same.append(genuine)
    fold = np.empty(pairs, np.int64)
    fold[rng.permutation(pairs)] = np.arange(pairs) % 10
    return rows_a, rows_b, np.array(same), fold


def yale_variants(
    root: str | os.PathLike, cache: str | os.PathLike, chips: str | os.PathLike | None = None
) -> tuple[dict[str, dict], dict]:
    """``yale_3+3`` and ``yale_random6`` (`yale_pairs`), and the alignment counts ("images",
    "fallbacks": images where no face was found and the centre crop was used). Frames are
    embedded by `FaceEmbedder` (a NAN preset: descriptors and texture statistics) and cached."""
    images = yale_images(root)
    names = images.assign(path=[Path(p).relative_to(root).as_posix() for p in images["path"]])
    path = Path(cache) / f"set_generalization_yale_{frames_digest(names)}.npz"
    if path.is_file():
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    else:
        embedder = FaceEmbedder("nan", chip_cache=chips)
        aligned = embedder.align_faces(images["path"].tolist())
        out = embedder.frame_outputs(aligned.chips)
        arrays = {
            "embedding": out["frame_embeddings"],
            "texture": out["frame_features"],
            "fallback": aligned.fallback,
        }
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    counts = {"images": len(images), "fallbacks": int(arrays.pop("fallback").sum())}
    arrays["pooled"] = np.zeros((len(images), 0), np.float32)
    arrays["severity"] = images["extreme"].to_numpy(np.float64)
    variants = {}
    for name, mixed in (("yale_3+3", True), ("yale_random6", False)):
        rows_a, rows_b, same, fold = yale_pairs(images, mixed)
        variants[name] = {"rows_a": rows_a, "rows_b": rows_b, "same": same, "fold": fold, **arrays}
    return variants, counts


def _metrics(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> np.ndarray:
    return np.array([kfold_accuracy(scores, same, fold).mean, tar_at_far(scores, same, FAR)])


def paired_bootstrap(
    scores: np.ndarray,
    baseline: np.ndarray,
    same: np.ndarray,
    fold: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy (10-fold) and TAR@FAR=1e-2 of `scores` and `baseline` (similarities of the
    same set pairs), their difference and its 95 % percentile interval over `resamples`
    resamplings of the pairs with replacement (both methods on the same resampled pairs)."""
    scores, baseline = np.asarray(scores, np.float64), np.asarray(baseline, np.float64)
    same, fold = np.asarray(same, bool), np.asarray(fold)
    rng = np.random.default_rng(seed)
    diffs = np.empty((resamples, len(METRICS)))
    for r in range(resamples):
        take = rng.integers(len(scores), size=len(scores))
        diffs[r] = _metrics(scores[take], same[take], fold[take]) - _metrics(
            baseline[take], same[take], fold[take]
        )
    head, mean = _metrics(scores, same, fold), _metrics(baseline, same, fold)
    low, high = np.percentile(diffs, [2.5, 97.5], axis=0)
    out = {}
    for i, metric in enumerate(METRICS):
        out.update(
            {
                metric: head[i],
                f"mean_{metric}": mean[i],
                f"diff_{metric}": head[i] - mean[i],
                f"low_{metric}": low[i],
                f"high_{metric}": high[i],
            }
        )
    return out


def residual_oracle_weights(variant: dict, clean: dict) -> np.ndarray:
    """Inverse-variance frame weights that know each frame's identity: `1 / r_k`, with
    `r_k = 1 − cos(f_k, c)` and `c` the unit mean of the clean unit embeddings (from `clean`,
    the ``lfw_clean`` variant) of the other images of the frame's person (its image's folder).

    This is the precision weighting (`keras_faceset.losses.GaussianPrecisionLoss`) with the
    true residual in place of a predicted one: no aggregator can know it (it needs the
    identity), so its figures bound what weighting these frame embeddings can gain over mean
    pooling, rather than measure a method."""
    clean_rows = np.flatnonzero(clean["severity"] == 0)
    paths = np.asarray(clean["path"])[clean_rows]
    image_of = {path: i for i, path in enumerate(paths)}
    frame_images = np.array([image_of[path] for path in variant["path"]])
    people = [path.split("/")[0] for path in paths]
    embeddings = np.asarray(clean["embedding"])[clean_rows]
    return 1.0 / clean_centre_residuals(variant["embedding"], frame_images, embeddings, people)


def set_scores(
    aggregator: keras.Model | np.ndarray | None, variant: dict
) -> tuple[np.ndarray, dict]:
    """Cosine similarity of each pair's set embeddings and its `verification_report`: by a set
    head, by frame weights (F,) (the weighted mean of the unit frame embeddings, e.g.
    `residual_oracle_weights`) or, for None, by mean pooling of the unit frame embeddings."""
    if aggregator is None or isinstance(aggregator, np.ndarray):
        sides = [pool_sets(variant["embedding"], variant[s], "mean", aggregator) for s in SIDES]
        report = set_verification(*sides, variant["same"], variant["fold"])
        return np.sum(sides[0] * sides[1], axis=1), report
    head = aggregator
    features = head_features(head, variant)
    sides = [head_sets(head, variant["embedding"], variant[s], features)[0] for s in SIDES]
    report = set_verification(*sides, variant["same"], variant["fold"])
    return np.sum(sides[0] * sides[1], axis=1), report


def threshold_rates(scores, same, threshold: float) -> tuple[float, float]:
    """(FAR, TAR) of a preset's cosine-distance `threshold` (*same* when 1 − similarity <=
    threshold, as ``keras-faceset verify`` decides) on pairs of similarities `scores`."""
    accept = 1.0 - np.asarray(scores, np.float64) <= threshold
    same = np.asarray(same, bool)
    return float(accept[~same].mean()), float(accept[same].mean())


def compare(
    head: keras.Model | np.ndarray,
    variant: dict,
    resamples: int = RESAMPLES,
    seed: int = 0,
    thresholds: tuple[float, float] | None = None,
) -> dict[str, float]:
    """`paired_bootstrap` of `head` (a set head, or frame weights as `set_scores` takes) against
    mean pooling on `variant`, with both reports; with
    `thresholds` (the head's and mean pooling's FAR 1e-2 distance thresholds) also the FAR
    and TAR each gives on these pairs (`threshold_rates`: does a preset's threshold keep its
    FAR on other data?)."""
    scores, report = set_scores(head, variant)
    baseline, mean_report = set_scores(None, variant)
    out = {
        "pairs": len(scores),
        **paired_bootstrap(scores, baseline, variant["same"], variant["fold"], resamples, seed),
    }
    if thresholds is not None:
        for prefix, values, threshold in zip(
            ("", "mean_"), (scores, baseline), thresholds, strict=True
        ):
            far, tar = threshold_rates(values, variant["same"], threshold)
            out.update({f"{prefix}far@threshold": far, f"{prefix}tar@threshold": tar})
    return {**out, "report": report, "mean_report": mean_report}

"""Frame embeddings of set protocols, computed once by dlib_resnet and kept in .npz caches.

A protocol's frames are `keras_faceset.data.lfw_sets.protocol_frames`-style rows (path,
kind_id, severity, seed0, seed1): the 250x250 LFW image, degraded as the row says, warped to
dlib's 150x150 chip by the five-point transform MTCNN found on the *clean* image (a tracker
gives the box; quality varies). Each distinct frame is embedded once by dlib's feature
extractor into `FEATURE_KEYS`: "embedding" (F, 128) descriptor, "pooled" (F, 256) last map and
"texture" (F, 448) statistics of three early maps.

A *variant* is one pair list with its frames, as a dict: "rows_a" / "rows_b" (each pair's two
sets, as rows into the frames), "same", "fold", the frames' `FEATURE_KEYS` arrays, their
"severity" (0 for a clean frame) and their image's "path" (relative to the LFW image folder).
`lfw_sets_embeddings` gives the two LFW-sets variants, `held_out_embeddings` the held-out
DevTrain pairs that pick a set head's epoch, and `devtrain_embeddings` the training frames.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from keras_faceset.align import align_faces, crop_like
from keras_faceset.data import lfw_sets
from keras_faceset.data.devtrain_sets import select_images, training_frames
from keras_faceset.data.held_out_sets import held_out_protocol
from keras_faceset.data.lfw import LFW
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.eval.lfw import cached_embeddings
from keras_faceset.eval.sets import lfw_sets_protocol_dir
from keras_faceset.files import atomic_path
from keras_faceset.zoo import get_preset, load

PRESET = "dlib_resnet"
FEATURE_KEYS = ("embedding", "pooled", "texture")
CLEAN_REPLICATES = 5
"""Clean held-out pair lists pooled into one variant (one list of 400 impostor pairs saturates)."""

ChipFolder = str | os.PathLike | None


def default_cache_dir(kind: str) -> Path:
    """``~/.cache/keras_faceset/<kind>``: the default folder of a research cache (e.g. "sets"
    for frame embeddings, "chips" for aligned chips)."""
    return Path.home() / ".cache" / "keras_faceset" / kind


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    """``--data`` (LFW, default ``$KERAS_FACESET_DATA``), ``--cache`` (frame embeddings) and
    ``--chips`` (aligned chips) on a research script's parser, with `default_cache_dir`s."""
    parser.add_argument(
        "--data", default=None, help="LFW data folder (default: $KERAS_FACESET_DATA)"
    )
    parser.add_argument(
        "--cache",
        default=default_cache_dir("sets"),
        help="frame embedding cache (default: %(default)s)",
    )
    parser.add_argument(
        "--chips",
        default=default_cache_dir("chips"),
        help="aligned chip cache (default: %(default)s)",
    )


def lfw_image_embeddings(
    lfw: LFW, model: str, cache: str | os.PathLike, chips: str | os.PathLike | None = None
) -> tuple[np.ndarray, list]:
    """Unit embeddings of every LFW image by image preset `model`, cached in
    ``cache/lfw_<model>_<digest>.npz`` (aligned chips in `chips`), and each image's identity.
    The digest is of the embedder's name (preset, crop, detector), so a cache made another way
    (an older default detector, say) is left alone rather than refused."""
    images = lfw.images("view2")
    embedder = FaceEmbedder(model, chip_cache=chips)
    digest = hashlib.sha256(embedder.__name__.encode()).hexdigest()[:10]
    path = Path(cache) / f"lfw_{model}_{digest}.npz"
    embeddings = cached_embeddings(embedder, images["path"].tolist(), cache_path=path)
    return embeddings, images["identity"].tolist()


def frame_chips(
    frames: pd.DataFrame, lfw: LFW, chips: ChipFolder = None, batch_size: int = 64
) -> Iterator[np.ndarray]:
    """Batches of dlib chips (n, 150, 150, 3) float32 of `frames`, in order.

    The clean image of each path is aligned once (`align_faces` with the preset's crop, chip
    cache `chips`); each (possibly degraded) 250x250 frame is cropped with that alignment
    (`crop_like`).
    """
    preset = get_preset(PRESET)
    paths = sorted(set(frames["path"]))
    print(f"aligning {len(paths)} clean images", flush=True)
    aligned = align_faces([str(lfw.image_dir / p) for p in paths], **preset.crop, cache=chips)
    where = {p: i for i, p in enumerate(paths)}
    names = list(frames["path"])
    dataset = lfw_sets.frame_dataset(frames, lfw, batch_size=batch_size)
    starts = range(0, len(names), batch_size)
    for batch, start in zip(dataset, starts, strict=True):
        like = aligned.take([where[name] for name in names[start : start + batch_size]])
        yield crop_like(list(batch.numpy()), like, preset.crop_spec).astype(np.float32)


def embed_frames(
    frames: pd.DataFrame, lfw: LFW, chips: ChipFolder = None, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """dlib's `FEATURE_KEYS` arrays of `frames`, from the chips of `frame_chips`."""
    extractor = load(PRESET).feature_extractor()
    out: dict[str, list] = {key: [] for key in FEATURE_KEYS}
    start, done = time.time(), 0
    for batch in frame_chips(frames, lfw, chips, batch_size):
        result = extractor.predict_on_batch(batch)
        for key in out:
            out[key].append(keras.ops.convert_to_numpy(result[key]))
        done += len(batch)
        print(f"  embedded {done}/{len(frames)} ({done / (time.time() - start):.1f}/s)", flush=True)
    return {key: np.concatenate(value) for key, value in out.items()}


def frames_digest(frames: pd.DataFrame) -> str:
    """A short content key of a frame table (names its embedding cache)."""
    return hashlib.sha256(frames.to_csv(index=False).encode()).hexdigest()[:12]


def cached_frame_embeddings(
    frames: pd.DataFrame, lfw: LFW, chips: ChipFolder, path: str | os.PathLike
) -> dict[str, np.ndarray]:
    """`embed_frames` of `frames`, computed once and kept in the .npz `path` (written
    atomically; a cache without every `FEATURE_KEYS` is computed again)."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as data:
            if set(FEATURE_KEYS) <= set(data.files):
                return {key: data[key] for key in FEATURE_KEYS}
    print(f"embedding {len(frames)} frames into {path}", flush=True)
    arrays = embed_frames(frames, lfw, chips)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays


def head_features(head: keras.Model, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """The cached per-frame features a set head reads ("texture" or "pooled", by its
    `feature_shape`), None for a head that reads none."""
    if head.feature_shape is None:
        return None
    for key in ("texture", "pooled"):
        if arrays[key].shape[1:] == tuple(head.feature_shape):
            return arrays[key]
    raise ValueError(
        f"no cached frame features of shape {head.feature_shape}: the cache holds texture "
        f"{arrays['texture'].shape[1:]} and pooled {arrays['pooled'].shape[1:]}"
    )


def lfw_sets_embeddings(
    lfw: LFW,
    cache: str | os.PathLike,
    chips: ChipFolder = None,
    protocol_dir: str | os.PathLike | None = None,
) -> dict[str, dict]:
    """The LFW-sets variants ("clean", "degraded"), each with its "pairs" and "frames" tables.

    The distinct frames of both variants (the clean frames of the degraded variant are shared)
    are embedded once into ``cache/lfw_sets_dlib.npz``. `protocol_dir` holds the pair lists
    (default: those shipped with the package, `keras_faceset.eval.sets.lfw_sets_protocol_dir`).
    """
    protocol_dir = Path(protocol_dir) if protocol_dir is not None else lfw_sets_protocol_dir()
    variants = {}
    for variant in ("clean", "degraded"):
        pairs = lfw_sets.load_protocol(protocol_dir / f"lfw_sets_{variant}.jsonl")
        frames, rows_a, rows_b = lfw_sets.protocol_frames(pairs)
        variants[variant] = {
            "pairs": pairs,
            "frames": frames,
            "rows_a": rows_a,
            "rows_b": rows_b,
            "same": pairs["same"].to_numpy(),
            "fold": pairs["fold"].to_numpy(),
        }
    union = pd.concat([v["frames"] for v in variants.values()]).drop_duplicates(ignore_index=True)
    path = Path(cache) / "lfw_sets_dlib.npz"
    arrays = cached_frame_embeddings(union, lfw, chips, path)
    if len(arrays["embedding"]) != len(union):
        raise ValueError(
            f"{path} has {len(arrays['embedding'])} rows, not {len(union)}: it was written for "
            "other pair lists; delete it to embed these"
        )
    position = {key: i for i, key in enumerate(union.itertuples(index=False, name=None))}
    for v in variants.values():
        where = np.array([position[key] for key in v["frames"].itertuples(index=False, name=None)])
        v.update({key: value[where] for key, value in arrays.items()})
        v["severity"] = v["frames"]["severity"].to_numpy()
    return variants


def held_out_embeddings(
    lfw: LFW,
    cache: str | os.PathLike,
    chips: ChipFolder,
    exclude: Collection[str],
    replicates: int = CLEAN_REPLICATES,
) -> dict[str, dict]:
    """The held-out DevTrain variants (`keras_faceset.data.held_out_sets.held_out_protocol`).

    "degraded" is the pair list of seed 0; "clean" pools `replicates` clean pair lists (seeds
    0, 1, ...; folds numbered apart), because one list (400 impostor pairs) saturates: mean
    pooling accepts no impostor and rejects no genuine pair. Both variants share one frame
    table; its distinct frames are embedded once into ``cache/devtrain_sets_dlib_<digest>.npz``.
    """
    clean = [
        held_out_protocol(lfw, exclude, seed).assign(fold=lambda t, s=seed: t["fold"] + 10 * s)
        for seed in range(replicates)
    ]
    protocols = {
        "clean": pd.concat(clean, ignore_index=True),
        "degraded": held_out_protocol(lfw, exclude, 0, degraded=True),
    }
    return embedded_variants(protocols, lfw, cache, chips, "devtrain_sets_dlib")[0]


def embedded_variants(
    protocols: dict[str, pd.DataFrame],
    lfw: LFW,
    cache: str | os.PathLike,
    chips: ChipFolder,
    name: str,
) -> tuple[dict[str, dict], pd.DataFrame]:
    """Each LFW-sets pair list of `protocols` in the variant form (rows_a, rows_b, same, fold
    and the frame arrays), and the frame table they index: the distinct frames of all of
    them, embedded once into ``cache/<name>_<digest>.npz``."""
    union, rows_a, rows_b = lfw_sets.protocol_frames(pd.concat(protocols.values()))
    path = Path(cache) / f"{name}_{frames_digest(union)}.npz"
    arrays = cached_frame_embeddings(union, lfw, chips, path)
    arrays["severity"] = union["severity"].to_numpy()
    arrays["path"] = union["path"].to_numpy()
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
    return variants, union


def devtrain_embeddings(
    lfw: LFW, cache: str | os.PathLike, chips: ChipFolder, max_images: int, versions: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """The training images (`select_images`), their frames (`training_frames`) and the frames'
    `FEATURE_KEYS` arrays, embedded once into ``cache/devtrain_dlib_<digest>.npz``."""
    images = select_images(lfw, max_images)
    frames = training_frames(images, versions)
    path = Path(cache) / f"devtrain_dlib_{frames_digest(frames)}.npz"
    return images, frames, cached_frame_embeddings(frames, lfw, chips, path)

"""tf.data pipelines for metric learning and sets: P x K batches, padded sets with masks.

``pk_batches`` draws P identities with K images each per batch (Hermans et al. 2017, "In
Defense of the Triplet Loss": batches of P persons x K images for batch-hard mining).
``padded_set_batches`` and ``embedding_set_dataset`` batch variable-size sets as
``(frames [B, T, ...], mask [B, T])``: frames padded with zeros, ``mask[b, t]`` True for real
frames; the aggregation heads (NAN, QAN) take this pair.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_faceset.data.folders import even_indices
from keras_faceset.data.images import load_image

AUTOTUNE = tf.data.AUTOTUNE


def _int_array(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(f"{what} must be a 1-D integer array, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def _positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def pk_indices(
    labels: Sequence[int] | np.ndarray,
    P: int,
    K: int,
    num_batches: int,
    seed: int = 0,
    min_images: int = 1,
) -> np.ndarray:
    """Row indices of `num_batches` P x K batches, shape (num_batches, P * K), identity-major.

    Identities with fewer than `min_images` rows are left out. Identities are visited in
    shuffled cycles (each once per cycle, P distinct ones per batch); an identity with n >= K
    images gives K distinct ones, with n < K all n plus K - n drawn again with replacement.
    Everything comes from ``np.random.default_rng(seed)``.
    """
    labels = _int_array(labels, "labels")
    _positive(P=P, K=K, num_batches=num_batches, min_images=min_images)
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    groups = [group for group in groups if len(group) >= min_images]
    if len(groups) < P:
        raise ValueError(
            f"P={P} identities per batch but only {len(groups)} have >= {min_images} images"
        )
    rng = np.random.default_rng(seed)
    batches, queue = [], []
    for _ in range(num_batches):
        if len(queue) < P:  # start a new cycle after the leftovers, without repeating them
            queue += [i for i in rng.permutation(len(groups)).tolist() if i not in queue]
        chosen, queue = queue[:P], queue[P:]
        rows = []
        for identity in chosen:
            group = rng.permutation(groups[identity])
            extra = rng.choice(group, K - len(group)) if len(group) < K else group[:0]
            rows.append(np.concatenate([group[:K], extra]))
        batches.append(np.concatenate(rows))
    return np.stack(batches)


def _labels_of(table: pd.DataFrame, label_column: str) -> np.ndarray:
    if label_column in table:
        return _int_array(table[label_column].to_numpy(), label_column)
    if "identity" in table:
        return pd.factorize(table["identity"], sort=True)[0].astype(np.int64)
    raise ValueError(f"table needs a {label_column!r} or an 'identity' column")


def pk_batches(
    table: pd.DataFrame,
    P: int,
    K: int,
    seed: int = 0,
    num_batches: int | None = None,
    preprocess_fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
    min_images: int = 1,
    label_column: str = "label",
    path_column: str = "path",
) -> tf.data.Dataset:
    """Batches ``(images [P*K, ...], labels [P*K] int64)`` of `pk_indices` over `table`.

    `table` has a path column and integer labels (or an 'identity' column, numbered in sorted
    order), e.g. from `folders.image_folder` or `LFW.images`. `num_batches` defaults to one
    pass's worth, ``max(1, rows // (P * K))``; for more epochs pass a larger count (or a new seed
    per epoch). Images are ``preprocess_fn(load_image(path))`` (uint8 images without it, which
    must then share one size); decoding is parallel, the order deterministic.
    """
    labels = _labels_of(table, label_column)
    if path_column not in table:
        raise ValueError(f"table has no {path_column!r} column")
    _positive(P=P, K=K)
    if num_batches is None:
        num_batches = max(1, len(table) // (P * K))
    rows = pk_indices(labels, P, K, num_batches, seed, min_images).reshape(-1)
    paths = np.asarray([os.fspath(p) for p in table[path_column]])[rows]

    def load(path, label):
        image = load_image(path)
        return (image if preprocess_fn is None else preprocess_fn(image)), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels[rows]))
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.batch(P * K).prefetch(AUTOTUNE)


def _set_batches(
    table: np.ndarray,
    set_indices: Sequence[Sequence[int]],
    labels: Sequence[int] | np.ndarray | None,
    batch_size: int,
    max_frames: int | None,
    shuffle_seed: int | None,
    drop_remainder: bool,
    fetch: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """Sets ``table[indices]`` (then `fetch`), padded to [B, T, ...] with a [B, T] mask."""
    _positive(batch_size=batch_size, max_frames=max_frames)
    if len(set_indices) == 0:
        raise ValueError("no sets given")
    picked = []
    for i, indices in enumerate(set_indices):
        indices = _int_array(indices, f"set {i}'s indices")
        if len(indices) == 0:
            raise ValueError(f"set {i} is empty")
        if indices.min() < 0 or indices.max() >= len(table):
            raise ValueError(f"set {i} has indices outside [0, {len(table)})")
        picked.append(indices[even_indices(len(indices), max_frames)])
    ragged = tf.RaggedTensor.from_row_lengths(
        np.concatenate(picked), np.array([len(p) for p in picked], np.int64)
    )
    if labels is not None:
        labels = _int_array(labels, "labels")
        if len(labels) != len(picked):
            raise ValueError(f"{len(labels)} labels for {len(picked)} sets")
    dataset = tf.data.Dataset.from_tensor_slices(ragged if labels is None else (ragged, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(picked), seed=shuffle_seed, reshuffle_each_iteration=True)
    values = tf.constant(table)

    def gather(indices, *label):
        frames = tf.gather(values, indices)
        if fetch is not None:
            frames = fetch(frames)
        mask = tf.ones(tf.shape(frames)[:1], tf.bool)
        return ((frames, mask), label[0]) if label else (frames, mask)

    dataset = dataset.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)
    features = dataset.element_spec if labels is None else dataset.element_spec[0]
    shapes = tuple([max_frames, *spec.shape[1:]] for spec in features)
    return dataset.padded_batch(
        batch_size,
        padded_shapes=shapes if labels is None else (shapes, []),
        drop_remainder=drop_remainder,
    ).prefetch(AUTOTUNE)


def embedding_set_dataset(
    embeddings: np.ndarray,
    set_indices: Sequence[Sequence[int]],
    labels: Sequence[int] | np.ndarray | None,
    batch_size: int,
    max_frames: int | None = None,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Sets of precomputed embeddings: set i is ``embeddings[set_indices[i]]`` (N, D) rows.

    Yields ``((embeddings [B, T, D], mask [B, T]), labels [B])``, or ``(embeddings, mask)``
    without labels. T is `max_frames` when given (longer sets keep `even_indices` of their
    frames), else the longest set of the batch. `shuffle_seed` shuffles the set order,
    differently each epoch but the same sequence for the same seed.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {embeddings.shape}")
    return _set_batches(
        embeddings, set_indices, labels, batch_size, max_frames, shuffle_seed, drop_remainder
    )


def padded_set_batches(
    sets: Sequence[Sequence[str | os.PathLike] | np.ndarray],
    batch_size: int,
    max_frames: int | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    preprocess_fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of variable-size sets ``(frames [B, T, ...], mask [B, T])`` (with labels
    ``((frames, mask), labels)``), frames zero-padded, as in `embedding_set_dataset`.

    Each set is an array (n, ...) of frames or embeddings, or a list of image paths decoded
    with ``preprocess_fn(load_image(path))`` (all frames must then share one shape). Video
    frames from `folders.set_folder` are decoded first with `folders.load_frames`.
    """
    if len(sets) == 0:
        raise ValueError("no sets given")
    sets = list(sets)
    lengths = [len(s) for s in sets]
    if min(lengths) == 0:
        raise ValueError(f"set {lengths.index(0)} is empty")
    first = sets[0][0]
    offsets = np.cumsum([0, *lengths])
    set_indices = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(sets))]
    if isinstance(first, tuple):
        raise ValueError("(video, frame index) frames: decode them with folders.load_frames")
    if not isinstance(first, (str, os.PathLike)):
        arrays = [np.asarray(s) for s in sets]
        if len({a.shape[1:] for a in arrays}) > 1 or len({a.dtype for a in arrays}) > 1:
            raise ValueError("the frames of all sets must share one shape and dtype")
        return _set_batches(
            np.concatenate(arrays),
            set_indices,
            labels,
            batch_size,
            max_frames,
            shuffle_seed,
            drop_remainder,
        )
    paths = np.asarray([os.fspath(p) for s in sets for p in s])

    def decode(path):
        image = load_image(path)
        return image if preprocess_fn is None else preprocess_fn(image)

    sample = decode(tf.constant(paths[0]))
    spec = tf.TensorSpec(sample.shape, sample.dtype)
    return _set_batches(
        paths,
        set_indices,
        labels,
        batch_size,
        max_frames,
        shuffle_seed,
        drop_remainder,
        fetch=lambda frame_paths: tf.map_fn(decode, frame_paths, fn_output_signature=spec),
    )

"""Closed-set identification metrics on a gallery/probe split (NumPy only): CMC and mAP.

Every probe embedding is ranked against the whole gallery by distance (cosine distance
``1 - <p/|p|, g/|g|>`` on L2-normalised embeddings, or Euclidean distance on the raw ones).
Gallery items carrying the probe's label are *relevant*.

- CMC: ``cmc[k-1]`` is the fraction of probes whose first relevant gallery item is at rank
  ``<= k`` (rank 1 = nearest).
- AP of one probe: ``AP = (1/R) sum_i P(r_i)`` over its ``R`` relevant items at ranks ``r_i``,
  with ``P(r) = (#relevant in the top r) / r``; mAP is the mean over probes.

Open set: probes whose label has no gallery item have neither a first match nor an AP; they
are left out of CMC and mAP and counted as ``open_set_probes``.

Ties: gallery items at exactly the same distance from a probe are ordered pessimistically,
non-relevant before relevant, so ties never flatter a score and the results do not depend on
the gallery order. (scikit-learn's ``average_precision_score`` instead averages over tied
items; the two agree whenever there are no ties.)

Probes are processed in blocks, so memory holds one probe-by-gallery distance block (and a few
arrays of its size) at a time, never the full distance matrix.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np

from keras_faceset.vectors import unit_vectors

METRICS = ("cosine", "euclidean")
BLOCK_ELEMENTS = 1 << 22  # distances per block: 32 MB of float64


def _embeddings(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items, dim), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} are empty")
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def _labels(labels, n: int, name: str) -> list[Hashable]:
    labels = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} labels for {n} embeddings")
    return labels


def _prepare(probe_embeddings, probe_labels, gallery_embeddings, gallery_labels, metric: str):
    """Validated (probes, probe codes, gallery, gallery codes); code -1 = absent from gallery."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    probes = _embeddings(probe_embeddings, "probe_embeddings")
    gallery = _embeddings(gallery_embeddings, "gallery_embeddings")
    if probes.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"probe and gallery embedding dimensions differ: {probes.shape[1]} vs "
            f"{gallery.shape[1]}"
        )
    gallery_names = _labels(gallery_labels, len(gallery), "gallery_labels")
    probe_names = _labels(probe_labels, len(probes), "probe_labels")
    try:
        codes: dict[Hashable, int] = {}
        gallery_codes = np.array([codes.setdefault(y, len(codes)) for y in gallery_names])
        probe_codes = np.array([codes.get(y, -1) for y in probe_names])
    except TypeError as err:
        raise ValueError(f"labels must be hashable: {err}") from None
    if metric == "cosine":
        probes = unit_vectors(probes, name="probe_embeddings", dtype=probes.dtype)
        gallery = unit_vectors(gallery, name="gallery_embeddings", dtype=gallery.dtype)
    return probes, probe_codes, gallery, gallery_codes


def _blocks(probes, probe_codes, gallery, gallery_codes, metric: str, block_probes: int | None):
    """Yield (probe slice, distances, relevant mask) per block of closed-set probes."""
    if block_probes is None:
        block_probes = max(1, BLOCK_ELEMENTS // len(gallery))
    if block_probes < 1:
        raise ValueError(f"block_probes must be >= 1, got {block_probes}")
    gallery_sq = np.sum(gallery**2, axis=1)
    for start in range(0, len(probes), block_probes):
        block = slice(start, start + block_probes)
        cross = probes[block] @ gallery.T
        if metric == "cosine":
            dist = 1.0 - cross
        else:  # squared Euclidean: same ranking as Euclidean
            dist = np.sum(probes[block] ** 2, axis=1)[:, None] + gallery_sq[None, :] - 2 * cross
        yield block, dist, probe_codes[block, None] == gallery_codes[None, :]


def _first_match_ranks(dist: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Rank of the nearest relevant item: 1 + #non-relevant at distance <= it (0 if none)."""
    nearest = np.where(relevant, dist, np.inf).min(axis=1)
    ranks = 1 + np.sum(~relevant & (dist <= nearest[:, None]), axis=1)
    return np.where(relevant.any(axis=1), ranks, 0)


def _average_precision(dist: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP per row; ties ordered non-relevant first (lexsort: last key is the primary one)."""
    order = np.lexsort((relevant, dist), axis=1)
    rows, positions = np.nonzero(np.take_along_axis(relevant, order, axis=1))  # row-major
    counts = np.bincount(rows, minlength=len(dist))
    hits_so_far = np.arange(1, rows.size + 1) - (np.cumsum(counts) - counts)[rows]
    return np.bincount(rows, hits_so_far / (positions + 1), minlength=len(dist)) / counts


def _scan(inputs, metric: str, block_probes: int | None, with_ap: bool) -> Iterator:
    for block, dist, relevant in _blocks(*inputs, metric, block_probes):
        ranks = _first_match_ranks(dist, relevant)
        closed = ranks > 0
        ap = _average_precision(dist[closed], relevant[closed]) if with_ap else None
        yield block, ranks, ap


def _cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    closed = ranks[ranks > 0]
    if closed.size == 0:
        raise ValueError("no probe label occurs in the gallery: CMC and mAP are undefined")
    counts = np.bincount(np.minimum(closed, max_rank + 1), minlength=max_rank + 2)
    return np.cumsum(counts[1 : max_rank + 1]) / closed.size


def _check_rank(k, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def cmc_curve(
    probe_embeddings,
    probe_labels: Sequence[Hashable],
    gallery_embeddings,
    gallery_labels: Sequence[Hashable],
    max_rank: int = 10,
    metric: str = "cosine",
    block_probes: int | None = None,
) -> np.ndarray:
    """CMC curve, shape (max_rank,): ``cmc[k-1]`` = fraction of closed-set probes whose first
    correct gallery match is at rank <= k. Open-set probes are left out (see module docstring).

    `block_probes` probes are scored at a time (default: ~4M distances per block).
    """
    max_rank = _check_rank(max_rank, "max_rank")
    inputs = _prepare(probe_embeddings, probe_labels, gallery_embeddings, gallery_labels, metric)
    ranks = np.zeros(len(inputs[0]), dtype=np.int64)
    for block, block_ranks, _ in _scan(inputs, metric, block_probes, with_ap=False):
        ranks[block] = block_ranks
    return _cmc(ranks, max_rank)


def identification_report(
    probe_embeddings,
    probe_labels: Sequence[Hashable],
    gallery_embeddings,
    gallery_labels: Sequence[Hashable],
    ranks: Sequence[int] = (1, 5),
    metric: str = "cosine",
    block_probes: int | None = None,
) -> dict[str, float | int | str]:
    """Rank-k identification rates (CMC), mAP and probe counts for one gallery/probe split.

    Keys: ``rank-<k>`` for each k in `ranks`, ``mAP``, ``closed_set_probes`` (label present in
    the gallery; the only ones CMC and mAP average over), ``open_set_probes`` (label absent) and
    ``metric``. Labels may be any hashables (ints, strings, ...).
    """
    ranks = [_check_rank(k, "ranks") for k in ranks]
    if not ranks:
        raise ValueError("ranks is empty")
    inputs = _prepare(probe_embeddings, probe_labels, gallery_embeddings, gallery_labels, metric)
    first = np.zeros(len(inputs[0]), dtype=np.int64)
    ap_sum = 0.0
    for block, block_ranks, ap in _scan(inputs, metric, block_probes, with_ap=True):
        first[block] = block_ranks
        ap_sum += float(np.sum(ap))
    cmc = _cmc(first, max(ranks))
    closed = int(np.sum(first > 0))
    report: dict[str, float | int | str] = {f"rank-{k}": float(cmc[k - 1]) for k in ranks}
    report["mAP"] = ap_sum / closed
    report["closed_set_probes"] = closed
    report["open_set_probes"] = len(first) - closed
    report["metric"] = metric
    return report

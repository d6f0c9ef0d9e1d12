"""Group the faces of unknown people: clustering of unit embeddings, and its scores.

Distances are cosine distances ``d(x, y) = 1 - <x/|x|, y/|y|>`` (0 = same direction, 2 =
opposite), the unit the presets' verification thresholds are given in. Two methods:

- ``"graph"``: an edge joins every two faces with ``d <= threshold``; clusters are the connected
  components of that graph (single linkage cut at `threshold`). One wrong edge merges two people.
- ``"agglomerative"``: average linkage (UPGMA), cut at `threshold`: clusters A and B merge while
  ``d(A, B) = (1 / |A||B|) sum_{a in A, b in B} d(a, b) <= threshold``. Since an average is at
  least the smallest distance, each cluster lies inside one graph component at the same
  threshold, so the linkage runs per component (nearest-neighbour chain, Lance-Williams update
  ``d(A u B, C) = (|A| d(A, C) + |B| d(B, C)) / (|A| + |B|)``), with memory O(largest
  component squared), not O(N^2).

Both read the embeddings in blocks of rows, so the N x N distances are never held at once.
Per-image embeddings and set embeddings (a video track or a folder as one template,
`FaceEmbedder.embed_sets`) are clustered alike.

Scores compare a clustering with the true identities: pairwise precision and recall (over the
pairs of items put in one cluster / sharing an identity) and BCubed precision and recall
(Bagga and Baldwin 1998; Amigo et al. 2009: per item, the share of its cluster with its
identity and the share of its identity in its cluster, averaged over items).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from keras_faceset.vectors import unit_vectors

METHODS = ("graph", "agglomerative")
DEFAULT_FAR = "1e-03"
"""The false accept rate whose preset threshold (`Preset.thresholds`) average linkage cuts at
when no `threshold` is given. Measured on LFW (docs/clustering.md): BCubed F peaks at 0.6-0.85
of the FAR 1e-2 threshold for facenet and dlib_resnet; their FAR 1e-3 threshold is 0.80-0.84
of it (dlib_resnet loses at most 0.4 points of BCubed F there, facenet 1.8-2.8). The
threshold graph has no default: it peaks near half the FAR 1e-2 threshold, and moves with the
number of faces (more faces, more chance of one wrong edge)."""
BLOCK_ELEMENTS = 1 << 23  # similarities per block of rows: 64 MB of float64
COMPACT_ROWS = 256  # average linkage drops merged rows from matrices at least this large


def cluster(
    embeddings,
    threshold: float | None = None,
    method: str = "agglomerative",
    model: str | None = None,
    min_size: int = 1,
    block_rows: int | None = None,
) -> np.ndarray:
    """Cluster labels (N,) int64 of embeddings (N, D) (per image or per set).

    Labels are 0, 1, ... in order of cluster size, largest first (ties: the cluster of the
    earliest item first); a face alone is a cluster of one with its own label. Clusters of
    fewer than `min_size` items get -1 instead (``min_size=2``: singletons apart).

    Args:
        threshold: the cosine distance at which faces are the same person (`method`'s cut).
            None (agglomerative only): `default_threshold(model)`.
        method: "agglomerative" (average linkage, the default) or "graph".
        model: the preset whose embeddings these are (for the default threshold).
        block_rows: rows of similarities computed at a time (default: ~8M similarities).
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {METHODS}")
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size!r}")
    threshold = _threshold(threshold, method, model)
    x = unit_vectors(embeddings, name="embeddings", dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    roots = threshold_components(x, threshold, block_rows)
    if method == "agglomerative":
        roots = _average_linkage_cut(x, roots, threshold)
    return _relabel(roots, min_size)


def _threshold(threshold: float | None, method: str, model: str | None) -> float:
    if threshold is None:
        if method == "graph":
            raise ValueError(
                "the graph method needs threshold= (a cosine distance): at a verification "
                "threshold one wrong edge chains people together; on LFW its best cut was about "
                "half the FAR 1e-2 threshold. Or use method='agglomerative' with model="
            )
        if model is None:
            raise ValueError(
                "give threshold= (a cosine distance, e.g. a preset's verification threshold) "
                "or model= (the preset that made the embeddings, for its own threshold)"
            )
        return default_threshold(model)
    if isinstance(threshold, bool) or not np.isfinite(threshold) or not 0 <= threshold <= 2:
        raise ValueError(f"threshold must be a cosine distance in [0, 2], got {threshold!r}")
    return float(threshold)


def default_threshold(model: str) -> float:
    """The cosine distance average linkage cuts at for preset `model`'s embeddings: its
    verification threshold at FAR `DEFAULT_FAR`, or at 1e-2 for a preset measured only there
    (the set presets)."""
    from keras_faceset.zoo import get_preset

    thresholds = get_preset(model).thresholds
    far = DEFAULT_FAR if DEFAULT_FAR in thresholds else "1e-02"
    if far not in thresholds:
        raise ValueError(
            f"preset {model} has no verification threshold to cluster with: give threshold= "
            "(calibrate one with `keras-faceset evaluate ... --calibrate`)"
        )
    return float(thresholds[far])


def threshold_components(
    x: np.ndarray, threshold: float, block_rows: int | None = None
) -> np.ndarray:
    """Connected components of the graph ``d(x_i, x_j) <= threshold`` on unit rows `x`, as
    each item's root: the smallest index of its component."""
    n = len(x)
    if block_rows is None:
        block_rows = max(1, BLOCK_ELEMENTS // max(n, 1))
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    parent = np.arange(n)
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        distance = 1.0 - x[start:stop] @ x[start:].T  # the pairs (i, j >= i) of these rows
        rows, cols = np.nonzero(distance <= threshold)
        rows, cols = rows + start, cols + start
        later = rows < cols
        _union(parent, rows[later], cols[later])
    return _compress(parent)


def _compress(parent: np.ndarray) -> np.ndarray:
    """Point every item at its root (in place; returns `parent`)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent[:] = grand


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the sets of a[k] and b[k] for every k (vectorised union-find: the larger of two
    roots is hooked under the smaller, so roots stay the smallest index of their set)."""
    while a.size:
        _compress(parent)
        root_a, root_b = parent[a], parent[b]
        apart = root_a != root_b
        a, b, root_a, root_b = a[apart], b[apart], root_a[apart], root_b[apart]
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
    _compress(parent)


def _average_linkage_cut(x: np.ndarray, components: np.ndarray, threshold: float) -> np.ndarray:
    """Roots of the average-linkage clusters cut at `threshold`, linkage run per component."""
    parent = np.arange(len(x))
    order = np.argsort(components, kind="stable")
    starts = np.flatnonzero(np.r_[True, components[order][1:] != components[order][:-1]])
    for members in np.split(order, starts[1:]):
        if len(members) < 2:
            continue
        points = x[members]
        distance = points @ points.T
        a, b, height = _average_linkage(np.subtract(1.0, distance, out=distance))
        merged = height <= threshold
        _union(parent, members[a[merged]], members[b[merged]])
    return parent


def _average_linkage(distance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every merge of average linkage on a dense distance matrix (overwritten), found by the
    nearest-neighbour chain: (a, b, height) arrays, a and b being one item of each cluster.

    Average linkage is reducible, so merging reciprocal nearest neighbours gives the same
    dendrogram as always merging the closest pair (Murtagh 1983); heights never decrease
    along a branch, so the clusters cut at t are the unions of the merges of height <= t.
    The matrix is compacted to its live clusters whenever half of its rows are merged away.
    """
    np.fill_diagonal(distance, np.inf)
    ids = np.arange(len(distance))  # the item each row stands for
    size = np.ones(len(distance))
    active = np.ones(len(distance), dtype=bool)
    merges: list[tuple[int, int, float]] = []
    chain: list[int] = []
    for live in range(len(distance), 1, -1):
        if 2 * live <= len(ids) >= COMPACT_ROWS:
            keep = np.flatnonzero(active)
            distance = distance[np.ix_(keep, keep)]
            row_of = np.cumsum(active) - 1
            chain = [int(row_of[c]) for c in chain]
            ids, size, active = ids[keep], size[keep], np.ones(live, dtype=bool)
        while True:
            if not chain:
                chain.append(int(np.argmax(active)))
            top = chain[-1]
            row = np.where(active, distance[top], np.inf)
            nearest = int(np.argmin(row))
            previous = chain[-2] if len(chain) > 1 else -1
            if previous >= 0 and row[previous] <= row[nearest]:
                break  # reciprocal nearest neighbours (ties keep the chain's pair: no cycles)
            chain.append(nearest)
        chain = chain[:-2]
        merges.append((int(ids[top]), int(ids[previous]), float(row[previous])))
        joined = (size[top] * distance[top] + size[previous] * distance[previous]) / (
            size[top] + size[previous]
        )
        joined[top] = np.inf
        size[top] += size[previous]
        active[previous] = False  # its row and column are never read again
        distance[top], distance[:, top] = joined, joined
    a, b, height = (np.array(column) for column in zip(*merges, strict=True))
    return a.astype(np.int64), b.astype(np.int64), height.astype(np.float64)


def _relabel(roots: np.ndarray, min_size: int) -> np.ndarray:
    """0, 1, ... by cluster size (largest first, ties by first item); -1 below `min_size`."""
    _, first, inverse, counts = np.unique(
        roots, return_index=True, return_inverse=True, return_counts=True
    )
    rank = np.empty(len(counts), dtype=np.int64)
    rank[np.lexsort((first, -counts))] = np.arange(len(counts))
    labels = rank[inverse.ravel()]
    return np.where(counts[inverse.ravel()] >= min_size, labels, -1)


def clustering_scores(
    true_labels: Sequence[Hashable], predicted: Sequence[int] | np.ndarray
) -> dict[str, float | int]:
    """Pairwise and BCubed precision, recall and F1 of `predicted` cluster labels against
    `true_labels` (any hashables). A negative predicted label (-1: left out, DBSCAN noise) is a
    cluster of its own item.

    With n_ij items of identity i in cluster j, a_i = sum_j n_ij and b_j = sum_i n_ij:
    pairwise P = sum C(n_ij, 2) / sum C(b_j, 2), R = sum C(n_ij, 2) / sum C(a_i, 2) (1 when
    there is no pair); BCubed P = (1/N) sum n_ij^2 / b_j, R = (1/N) sum n_ij^2 / a_i;
    F = 2PR / (P + R). Keys: ``pairwise_precision``, ``pairwise_recall``, ``pairwise_f``,
    ``bcubed_precision``, ``bcubed_recall``, ``bcubed_f``, ``clusters``, ``items``.
    """
    truth = _codes(true_labels, "true_labels")
    predicted = np.asarray(predicted)
    if predicted.ndim != 1 or len(predicted) != len(truth):
        raise ValueError(
            f"predicted must be one label per item: {predicted.shape} for {len(truth)} items"
        )
    if len(truth) == 0:
        raise ValueError("no items to score")
    if predicted.dtype.kind not in "iu":
        raise ValueError(f"predicted labels must be integers, got dtype {predicted.dtype}")
    alone = predicted < 0
    pred = np.where(alone, predicted.max(initial=0) + 1 + np.cumsum(alone), predicted)
    pred = np.unique(pred, return_inverse=True)[1].ravel()
    pairs, n_ij = np.unique(np.stack([truth, pred]), axis=1, return_counts=True)
    a = np.bincount(truth)
    b = np.bincount(pred)

    def choose2(v):
        return float(np.sum(v * (v - 1.0) / 2.0))

    together = choose2(n_ij)
    pairwise_p = together / choose2(b) if choose2(b) else 1.0
    pairwise_r = together / choose2(a) if choose2(a) else 1.0
    squares = n_ij.astype(np.float64) ** 2
    bcubed_p = float(np.sum(squares / b[pairs[1]])) / len(truth)
    bcubed_r = float(np.sum(squares / a[pairs[0]])) / len(truth)
    return {
        "pairwise_precision": pairwise_p,
        "pairwise_recall": pairwise_r,
        "pairwise_f": _f1(pairwise_p, pairwise_r),
        "bcubed_precision": bcubed_p,
        "bcubed_recall": bcubed_r,
        "bcubed_f": _f1(bcubed_p, bcubed_r),
        "clusters": len(b),
        "items": len(truth),
    }


def _codes(labels: Sequence[Hashable], name: str) -> np.ndarray:
    labels = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    try:
        codes: dict[Hashable, int] = {}
        return np.array([codes.setdefault(y, len(codes)) for y in labels], dtype=np.int64)
    except TypeError as err:
        raise ValueError(f"{name} must be hashable: {err}") from None


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

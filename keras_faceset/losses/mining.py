"""Triplet mining on a `(B, B)` distance matrix (cf. pytorch-metric-learning's miners).

Each miner takes the distances, the positive mask (same identity, off-diagonal), the
negative mask (different identity) and the margin ``alpha``, and returns
``(per_anchor, count)``: the summed hinge losses ``max(d_ap - d_an + alpha, 0)`` of each
anchor's mined triplets, shape `(B,)`, and the number of terms the batch loss averages over,
so that ``loss = sum(per_anchor) / max(count, 1)`` (0, with zero gradients, if ``count == 0``).
All three stay `(B, B)` in memory: `semi_hard` and `all` sort each anchor's negative distances
once and binary-search them (O(B^2 log B) time) instead of building tfa's `(B, B, B)` tensor.
"""

from keras import ops

from keras_faceset.losses._validation import validate_labels

MINING = ("semi_hard", "hard", "all")
AVERAGES = ("mined", "all_anchors")
MINING_BATCHES = ("replica", "global")


def check_mining(mining: str) -> str:
    """Return `mining` if it names a known miner, else raise `ValueError`."""
    if mining not in MINING:
        raise ValueError(f"Unknown mining {mining!r}; expected one of {MINING}")
    return mining


def check_average(average: str, mining: str) -> str:
    """Return `average` if it names a known averaging that `mining` supports, else raise."""
    if average not in AVERAGES:
        raise ValueError(f"Unknown average {average!r}; expected one of {AVERAGES}")
    if average == "all_anchors" and mining != "hard":
        raise ValueError(
            f"average='all_anchors' is batch-hard's averaging (tfa's triplet_hard_loss); "
            f"use it with mining='hard', not mining={mining!r}"
        )
    return average


def check_mining_batch(mining_batch: str) -> str:
    """Return `mining_batch` if it names a known batch to mine in, else raise `ValueError`."""
    if mining_batch not in MINING_BATCHES:
        raise ValueError(
            f"Unknown mining_batch {mining_batch!r}; expected one of {MINING_BATCHES} (mine in "
            "each replica's share of the batch, or in the batch gathered from all replicas)"
        )
    return mining_batch


def identity_adjacency(labels):
    """Integer labels `(B,)` or `(B, 1)` -> boolean `(B, B)` matrix ``labels_i == labels_j``."""
    labels = validate_labels(labels)
    return ops.equal(labels[:, None], labels[None, :])


def identity_masks(adjacency):
    """Boolean adjacency -> ``(positive, negative)``: same identity off the diagonal, other."""
    index = ops.arange(ops.shape(adjacency)[0])
    diagonal = ops.equal(index[:, None], index[None, :])
    return ops.logical_and(adjacency, ops.logical_not(diagonal)), ops.logical_not(adjacency)


def masked_min(x, mask, axis: int):
    """Minimum of `x` over the `mask`ed entries along `axis` (an arbitrary value where none)."""
    return ops.min(ops.where(mask, x, ops.stop_gradient(ops.max(x))), axis=axis)


def masked_max(x, mask, axis: int):
    """Maximum of `x` over the `mask`ed entries along `axis` (an arbitrary value where none)."""
    return ops.max(ops.where(mask, x, ops.stop_gradient(ops.min(x))), axis=axis)


def _count(mask, dtype):
    return ops.sum(ops.cast(mask, dtype))


def sorted_negatives(distances, negative):
    """Each anchor's negative distances in ascending order, `(B, B)`, and their count `(B,)`.

    Returns ``(values, keys, count)``: `values` carries the gradient to the distances it was
    taken from; `keys` (no gradient) equals `values` in the first ``count`` columns and is
    ``+inf`` after them, where the row's non-negatives went."""
    masked = ops.where(negative, distances, float("inf"))
    order = ops.argsort(masked, axis=1)
    keys = ops.stop_gradient(ops.take_along_axis(masked, order, axis=1))
    values = ops.take_along_axis(distances, order, axis=1)
    return values, keys, ops.sum(ops.cast(negative, "int32"), axis=1)


def rank_in_rows(keys, queries, side: str):
    """Per row `i`, ``searchsorted(keys[i], queries[i], side)``: how many of row `i`'s sorted
    `keys` are ``<= query`` (``side="right"``) or ``< query`` (``"left"``), as int32."""
    queries = ops.stop_gradient(queries)
    ranks = ops.vectorized_map(lambda row: ops.searchsorted(*row, side=side), (keys, queries))
    return ops.cast(ranks, "int32")


def semi_hard(distances, positive, negative, margin: float):
    """FaceNet semi-hard mining with tfa's `TripletSemiHardLoss` semantics.

    For every positive pair ``(a, p)`` the negative is the closest one farther than the
    positive, ``argmin_n {d_an : d_an > d_ap}``, or, if there is none, the farthest negative;
    the loss averages ``max(d_ap - d_an + alpha, 0)`` over all positive pairs. The closest
    farther negative is the ``k``-th of the anchor's sorted negatives, ``k = #{n : d_an <=
    d_ap}``, found by binary search.
    """
    values, keys, count = sorted_negatives(distances, negative)
    beyond = rank_in_rows(keys, distances, side="right")  # (a, p): negatives with d_an <= d_ap
    last = ops.shape(distances)[1] - 1
    closest_outside = ops.take_along_axis(values, ops.minimum(beyond, last), axis=1)
    farthest = masked_max(distances, negative, axis=1)[:, None]
    d_neg = ops.where(ops.less(beyond, count[:, None]), closest_outside, farthest)
    pairs = ops.logical_and(positive, ops.greater(count, 0)[:, None])
    hinge = ops.where(pairs, ops.relu(distances - d_neg + margin), 0)
    return ops.sum(hinge, axis=1), _count(pairs, distances.dtype)


def hard(distances, positive, negative, margin: float):
    """Batch-hard mining (Hermans et al. 2017): per anchor, the farthest positive and the
    closest negative, ``max(max_p d_ap - min_n d_an + alpha, 0)``, averaged over the anchors
    that have at least one positive and one negative."""
    anchors = ops.logical_and(ops.any(positive, axis=1), ops.any(negative, axis=1))
    hardest_positive = masked_max(distances, positive, axis=1)
    hardest_negative = masked_min(distances, negative, axis=1)
    hinge = ops.relu(hardest_positive - hardest_negative + margin)
    return ops.where(anchors, hinge, 0), _count(anchors, distances.dtype)


def hard_all_anchors(distances, positive, negative, margin: float):
    """Batch-hard averaged over every anchor of the batch, as tfa's `triplet_hard_loss`.

    tfa's masked maximum and minimum fall back to the row's minimum and maximum: an anchor
    without a positive takes ``max_p d_ap = 0`` (the zero diagonal), so it contributes
    ``max(alpha - min_n d_an, 0)``; one without a negative takes its farthest sample as
    ``min_n d_an``, so it contributes ``alpha``.
    """
    hardest_positive = ops.where(
        ops.any(positive, axis=1), masked_max(distances, positive, axis=1), 0
    )
    hardest_negative = ops.where(
        ops.any(negative, axis=1),
        masked_min(distances, negative, axis=1),
        ops.max(distances, axis=1),
    )
    hinge = ops.relu(hardest_positive - hardest_negative + margin)
    return hinge, ops.cast(ops.shape(distances)[0], distances.dtype)


def batch_all(distances, positive, negative, margin: float):
    """Batch-all (Hermans et al. 2017): every valid triplet ``(a, p, n)``, averaged over the
    triplets with a positive loss ``d_ap - d_an + alpha > 0``.

    The active negatives of a positive pair are the anchor's ``k = #{n : d_an < d_ap + alpha}``
    closest ones, so their hinges sum to ``k (d_ap + alpha) - (sum of those k distances)``,
    read from prefix sums of the sorted negatives.
    """
    values, keys, _ = sorted_negatives(distances, negative)
    threshold = distances + margin
    active = ops.where(positive, rank_in_rows(keys, threshold, side="left"), 0)  # (a, p): k
    prefix = ops.pad(ops.cumsum(values, axis=1), [[0, 0], [1, 0]])  # prefix[:, k]: first k
    active_sum = ops.take_along_axis(prefix, active, axis=1)
    hinge = ops.cast(active, distances.dtype) * threshold - active_sum
    return ops.sum(hinge, axis=1), ops.sum(ops.cast(active, distances.dtype))


MINERS = {"semi_hard": semi_hard, "hard": hard, "all": batch_all}


def miner(mining: str, average: str = "mined"):
    """The miner for `mining` and `average` (both checked)."""
    if check_average(average, check_mining(mining)) == "all_anchors":
        return hard_all_anchors
    return MINERS[mining]

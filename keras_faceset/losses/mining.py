"""Triplet mining on a `(B, B)` distance matrix (cf. pytorch-metric-learning's miners).

Each miner takes the distances, the positive mask (same identity, off-diagonal), the
negative mask (different identity) and the margin ``alpha``, and returns
``(per_anchor, count)``: the summed hinge losses ``max(d_ap - d_an + alpha, 0)`` of each
anchor's mined triplets, shape `(B,)`, and the number of terms the batch loss averages over,
so that ``loss = sum(per_anchor) / max(count, 1)`` (0, with zero gradients, if ``count == 0``).
`semi_hard` and `all` build a `(B, B, B)` tensor (as tfa does); `hard` stays `(B, B)`.
"""

from keras import ops

from keras_faceset.losses._validation import validate_labels

MINING = ("semi_hard", "hard", "all")


def check_mining(mining: str) -> str:
    """Return `mining` if it names a known miner, else raise `ValueError`."""
    if mining not in MINING:
        raise ValueError(f"Unknown mining {mining!r}; expected one of {MINING}")
    return mining


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


def semi_hard(distances, positive, negative, margin: float):
    """FaceNet semi-hard mining with tfa's `TripletSemiHardLoss` semantics.

    For every positive pair ``(a, p)`` the negative is the closest one farther than the
    positive, ``argmin_n {d_an : d_an > d_ap}``, or, if there is none, the farthest negative;
    the loss averages ``max(d_ap - d_an + alpha, 0)`` over all positive pairs.
    """
    d_an = distances[:, None, :]  # (a, ., n)
    d_ap = distances[:, :, None]  # (a, p, .)
    outside = ops.logical_and(negative[:, None, :], ops.greater(d_an, d_ap))  # (a, p, n)
    closest_outside = masked_min(ops.broadcast_to(d_an, ops.shape(outside)), outside, axis=2)
    farthest = masked_max(distances, negative, axis=1)[:, None]
    d_neg = ops.where(ops.any(outside, axis=2), closest_outside, farthest)
    pairs = ops.logical_and(positive, ops.any(negative, axis=1, keepdims=True))
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


def batch_all(distances, positive, negative, margin: float):
    """Batch-all (Hermans et al. 2017): every valid triplet ``(a, p, n)``, averaged over the
    triplets with a positive loss ``d_ap - d_an + alpha > 0``."""
    triplets = ops.logical_and(positive[:, :, None], negative[:, None, :])
    hinge = ops.relu(distances[:, :, None] - distances[:, None, :] + margin)
    hinge = ops.where(triplets, hinge, 0)
    return ops.sum(hinge, axis=(1, 2)), _count(ops.greater(hinge, 0), distances.dtype)


MINERS = {"semi_hard": semi_hard, "hard": hard, "all": batch_all}

"""Distances between embeddings: a pairwise `(B, B)` matrix for a batch, or row-wise pairs.

- `"squared_l2"`: ``||x - y||^2`` (FaceNet, Schroff et al. 2015).
- `"l2"`: ``||x - y||``, with a gradient-safe square root (finite, zero gradient at ``d = 0``).
- `"cosine"`: ``1 - x.y / (||x|| ||y||)``.
"""

from keras import ops

from keras_faceset.losses._validation import validate_embeddings

DISTANCES = ("squared_l2", "l2", "cosine")


def check_distance(distance: str) -> str:
    """Return `distance` if it names a known distance, else raise `ValueError`."""
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; expected one of {DISTANCES}")
    return distance


def safe_sqrt(x):
    """``sqrt(x)`` for ``x >= 0`` whose gradient is 0 (not inf/NaN) where ``x <= 0``."""
    positive = ops.greater(x, 0)
    return ops.where(positive, ops.sqrt(ops.where(positive, x, ops.ones_like(x))), 0)


def l2_normalize(x, epsilon: float = 1e-12):
    """``x / max(||x||, sqrt(epsilon))`` along the last axis (finite for zero vectors)."""
    squared_norm = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, epsilon))


def pairwise_distance(embeddings, distance: str = "squared_l2"):
    """`(B, D)` embeddings -> `(B, B)` distance matrix with an exactly zero diagonal.

    Uses the Gram expansion ``||x_i||^2 - 2 x_i.x_j + ||x_j||^2`` (clipped at 0), as tfa does.
    """
    check_distance(distance)
    x = validate_embeddings(embeddings)
    if distance == "cosine":
        x = l2_normalize(x)
        squared = 1.0 - ops.matmul(x, ops.transpose(x))
    else:
        norms = ops.sum(ops.square(x), axis=1)
        gram = ops.matmul(x, ops.transpose(x))
        squared = norms[:, None] - 2.0 * gram + norms[None, :]
    index = ops.arange(ops.shape(x)[0])
    diagonal = ops.equal(index[:, None], index[None, :])
    matrix = ops.where(diagonal, 0, ops.maximum(squared, 0))
    return safe_sqrt(matrix) if distance == "l2" else matrix


def paired_distance(x, y, distance: str = "l2"):
    """Row-wise distance between `(B, D)` batches `x` and `y` -> `(B,)`."""
    check_distance(distance)
    x = validate_embeddings(x, "x")
    y = validate_embeddings(y, "y")
    if distance == "cosine":
        return 1.0 - ops.sum(l2_normalize(x) * l2_normalize(y), axis=-1)
    squared = ops.sum(ops.square(x - y), axis=-1)
    return safe_sqrt(squared) if distance == "l2" else squared

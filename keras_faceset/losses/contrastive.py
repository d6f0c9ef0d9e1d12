"""Contrastive loss on pairs (Hadsell, Chopra & LeCun 2006; NAN's verification loss).

``L = y d^2 + (1 - y) max(0, m - d)^2`` with ``y = 1`` for a same-identity pair.

With ``pairs="batch"`` under `tf.distribute`, ``mining_batch="replica"`` (the default) pairs
the samples within each replica's share of the batch; ``mining_batch="global"`` gathers the
embeddings and labels of all replicas first, so every pair of the global batch is used and the
loss equals the single-device loss of that batch.
"""

import keras
from keras import ops

from keras_faceset.losses._validation import validate_labels, validate_pair_labels
from keras_faceset.losses.distances import check_distance, paired_distance, pairwise_distance
from keras_faceset.losses.distribute import all_gather, local_rows
from keras_faceset.losses.mining import check_mining_batch, identity_adjacency, identity_masks

PAIRS = ("stacked", "batch")


def contrastive_loss(y_same, distances, *, margin: float = 1.0):
    """Unreduced contrastive loss of precomputed pair `distances` (like `keras.losses`
    functions): ``y d^2 + (1 - y) max(0, m - d)^2``, elementwise.

    `y_same` (1 = same identity, 0 = different) broadcasts against `distances`: pass `(B,)`
    pair labels with `(B,)` distances, or a `(B, B)` `identity_adjacency` with a
    `pairwise_distance` matrix.
    """
    distances = ops.convert_to_tensor(distances)
    y = ops.cast(y_same, distances.dtype)
    return y * ops.square(distances) + (1.0 - y) * ops.square(ops.relu(margin - distances))


def _stacked_pairs(y_pred):
    shape = tuple(y_pred.shape)
    if len(shape) != 3 or shape[1] != 2:
        raise ValueError(f"embedding pairs y_pred must have shape (B, 2, D), got shape {shape}")
    return y_pred[:, 0], y_pred[:, 1]


@keras.saving.register_keras_serializable(package="keras_faceset")
class ContrastiveLoss(keras.losses.Loss):
    """Contrastive loss as a `keras.losses.Loss`, mean over pairs by default.

    Args:
        margin: ``m``.
        distance: `"l2"` (Hadsell et al.), `"squared_l2"` or `"cosine"`; ``d`` in the formula.
        pairs: `"stacked"`: ``y_true`` = pair labels `(B,)` (1 same, 0 different) and
            ``y_pred`` = the two embeddings of each pair stacked, `(B, 2, D)`; `call` returns
            one loss per pair. `"batch"`: ``y_true`` = integer identity labels `(B,)`,
            ``y_pred`` = embeddings `(B, D)`, and every pair ``i != j`` of the batch is used;
            `call` returns per-anchor contributions whose mean is the mean over all pairs.
        mining_batch: with `pairs="batch"` under `tf.distribute`, pair the samples within each
            replica's share of the batch (`"replica"`) or within the batch gathered from all
            replicas (`"global"`: each replica returns its own anchors' contributions over
            every pair of the global batch, whose mean over the replicas, of equal batch
            size, is the global batch's loss). The same on one device. Stacked pairs are
            per sample and take only `"replica"`.
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance: str = "l2",
        pairs: str = "stacked",
        mining_batch: str = "replica",
        name: str = "contrastive_loss",
        reduction: str | None = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if pairs not in PAIRS:
            raise ValueError(f"Unknown pairs {pairs!r}; expected one of {PAIRS}")
        self.margin = float(margin)
        self.distance = check_distance(distance)
        self.pairs = pairs
        self.mining_batch = check_mining_batch(mining_batch)
        if pairs == "stacked" and mining_batch != "replica":
            raise ValueError(
                "mining_batch='global' needs pairs='batch': stacked pairs are per sample, "
                "already averaged over the global batch under tf.distribute"
            )

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.pairs == "stacked":
            return super().__call__(validate_pair_labels(y_true), y_pred, sample_weight)
        # Keras casts y_true to float: pass the exact identity adjacency instead of labels.
        labels = validate_labels(y_true)
        if self.mining_batch == "global":
            labels = all_gather(labels)
        return super().__call__(identity_adjacency(labels), y_pred, sample_weight)

    def call(self, y_true, y_pred):
        if self.pairs == "stacked":
            distances = paired_distance(*_stacked_pairs(y_pred), self.distance)
            return contrastive_loss(y_true, distances, margin=self.margin)
        adjacency = ops.greater(y_true, 0.5)
        embeddings = all_gather(y_pred) if self.mining_batch == "global" else y_pred
        off_diagonal = ops.logical_or(*identity_masks(adjacency))
        losses = contrastive_loss(
            adjacency, pairwise_distance(embeddings, self.distance), margin=self.margin
        )
        others = ops.cast(ops.maximum(ops.shape(embeddings)[0] - 1, 1), losses.dtype)
        contributions = ops.sum(ops.where(off_diagonal, losses, 0), axis=1) / others
        if self.mining_batch == "global":
            return local_rows(contributions, ops.shape(y_pred)[0])
        return contributions

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            margin=self.margin,
            distance=self.distance,
            pairs=self.pairs,
            mining_batch=self.mining_batch,
        )
        return config

"""Triplet loss with online mining (FaceNet, Schroff et al. 2015; Hermans et al. 2017).

``L = mean over mined triplets of max(d(a, p) - d(a, n) + alpha, 0)``.

Under `tf.distribute` each replica holds a share of the batch. With ``mining_batch="replica"``
(the default) triplets are mined within each replica's share: positives and negatives on
another replica are never seen, and the loss is the mean of the replicas' losses. With
``mining_batch="global"`` the embeddings and labels of all replicas are gathered first, so the
mining sees the global batch and the loss equals the single-device loss of that batch.
"""

import keras
from keras import ops

from keras_faceset.losses._validation import validate_labels
from keras_faceset.losses.distances import check_distance, pairwise_distance
from keras_faceset.losses.distribute import all_gather, local_rows
from keras_faceset.losses.mining import (
    check_average,
    check_mining,
    check_mining_batch,
    identity_adjacency,
    identity_masks,
    miner,
)


def _triplet_terms(adjacency, embeddings, mining: str, margin: float, distance: str, average: str):
    positive, negative = identity_masks(adjacency)
    distances = pairwise_distance(embeddings, distance)
    return miner(mining, average)(distances, positive, negative, margin)


def triplet_loss(
    labels,
    embeddings,
    *,
    mining: str = "semi_hard",
    margin: float = 0.2,
    distance: str = "squared_l2",
    average: str = "mined",
    mining_batch: str = "replica",
):
    """Batch triplet loss (a scalar) of `(B, D)` embeddings with integer identity `labels`.

    Args:
        labels: integer identities, shape `(B,)` or `(B, 1)`.
        embeddings: `(B, D)` float embeddings.
        mining: `"semi_hard"` (FaceNet; tfa `TripletSemiHardLoss`), `"hard"` (batch-hard)
            or `"all"` (batch-all, mean over the triplets with a positive loss).
        margin: ``alpha``.
        distance: `"squared_l2"` (FaceNet), `"l2"` or `"cosine"` (``1 - cos``).
        average: what the loss is the mean over. `"mined"`: the mined terms (the positive
            pairs for semi-hard, the anchors with a positive and a negative for batch-hard,
            the triplets with a positive loss for batch-all). `"all_anchors"` (with
            `mining="hard"` only): every anchor of the batch, as tfa's `triplet_hard_loss`;
            an anchor without a positive counts ``max(alpha - min_n d_an, 0)``, one without
            a negative counts ``alpha``.
        mining_batch: under `tf.distribute`, mine in each replica's share of the batch
            (`"replica"`) or in the batch gathered from all replicas (`"global"`: every
            replica returns the global batch's loss). The same on one device.

    With `average="mined"`, a batch without any valid triplet (all labels distinct or all
    equal) gives 0.
    """
    if check_mining_batch(mining_batch) == "global":
        labels, embeddings = all_gather(validate_labels(labels)), all_gather(embeddings)
    per_anchor, count = _triplet_terms(
        identity_adjacency(labels), embeddings, mining, margin, distance, average
    )
    return ops.sum(per_anchor) / ops.maximum(count, 1)


@keras.saving.register_keras_serializable(package="keras_faceset")
class TripletLoss(keras.losses.Loss):
    """Triplet loss as a `keras.losses.Loss`: ``y_true`` = identity labels, ``y_pred`` =
    embeddings. See `triplet_loss` for the arguments.

    The loss is batch-level; `call` returns per-anchor contributions `(B,)` whose mean is the
    batch loss, so the default ``reduction="sum_over_batch_size"`` gives `triplet_loss`,
    ``"sum"`` gives ``B`` times it, ``None`` returns the contributions, and a `sample_weight`
    weights each anchor's contribution.

    With ``mining_batch="global"`` under `tf.distribute`, the terms are mined in the gathered
    global batch and each replica returns its own anchors' contributions, so Keras' mean over
    each replica's batch, averaged over the replicas, is the global batch's `triplet_loss`
    (replicas of equal batch size, as Keras' own averaging assumes); gradients reach the
    embeddings of every replica.
    """

    def __init__(
        self,
        mining: str = "semi_hard",
        margin: float = 0.2,
        distance: str = "squared_l2",
        average: str = "mined",
        mining_batch: str = "replica",
        name: str = "triplet_loss",
        reduction: str | None = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mining = check_mining(mining)
        self.margin = float(margin)
        self.distance = check_distance(distance)
        self.average = check_average(average, self.mining)
        self.mining_batch = check_mining_batch(mining_batch)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras casts y_true to float: pass the exact identity adjacency instead of labels.
        labels = validate_labels(y_true)
        if self.mining_batch == "global":
            labels = all_gather(labels)
        return super().__call__(identity_adjacency(labels), y_pred, sample_weight)

    def call(self, y_true, y_pred):
        adjacency = ops.greater(y_true, 0.5)
        embeddings = all_gather(y_pred) if self.mining_batch == "global" else y_pred
        per_anchor, count = _triplet_terms(
            adjacency, embeddings, self.mining, self.margin, self.distance, self.average
        )
        batch_size = ops.cast(ops.shape(embeddings)[0], per_anchor.dtype)
        contributions = per_anchor * (batch_size / ops.maximum(count, 1))
        if self.mining_batch == "global":
            return local_rows(contributions, ops.shape(y_pred)[0])
        return contributions

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            mining=self.mining,
            margin=self.margin,
            distance=self.distance,
            average=self.average,
            mining_batch=self.mining_batch,
        )
        return config

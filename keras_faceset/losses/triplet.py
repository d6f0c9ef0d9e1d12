"""Triplet loss with online mining (FaceNet, Schroff et al. 2015; Hermans et al. 2017).

``L = mean over mined triplets of max(d(a, p) - d(a, n) + alpha, 0)``.
"""

import keras
from keras import ops

from keras_faceset.losses.distances import check_distance, pairwise_distance
from keras_faceset.losses.mining import (
    check_average,
    check_mining,
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

    With `average="mined"`, a batch without any valid triplet (all labels distinct or all
    equal) gives 0.
    """
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
    """

    def __init__(
        self,
        mining: str = "semi_hard",
        margin: float = 0.2,
        distance: str = "squared_l2",
        average: str = "mined",
        name: str = "triplet_loss",
        reduction: str | None = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mining = check_mining(mining)
        self.margin = float(margin)
        self.distance = check_distance(distance)
        self.average = check_average(average, self.mining)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras casts y_true to float: pass the exact identity adjacency instead of labels.
        return super().__call__(identity_adjacency(y_true), y_pred, sample_weight)

    def call(self, y_true, y_pred):
        adjacency = ops.greater(y_true, 0.5)
        per_anchor, count = _triplet_terms(
            adjacency, y_pred, self.mining, self.margin, self.distance, self.average
        )
        batch_size = ops.cast(ops.shape(y_pred)[0], per_anchor.dtype)
        return per_anchor * (batch_size / ops.maximum(count, 1))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            mining=self.mining, margin=self.margin, distance=self.distance, average=self.average
        )
        return config

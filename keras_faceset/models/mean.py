"""Mean pooling of unit frame embeddings: the set head of every image preset (and SeqFace's)."""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers import MaskedMeanPooling
from keras_faceset.models.set_head import SetHead
from keras_faceset.models.task import SetEmbeddingModel


@keras.saving.register_keras_serializable(package="keras_faceset")
class MeanHead(SetHead):
    """`f_k = x_k / ‖x_k‖`, `r = Σ_k m_k f_k / Σ_k m_k`, output `{"embedding": r / ‖r‖,
    "weights": m_k / Σ m}` (uniform over the unmasked frames).

    The set embedding an image model gives: it has no weights (unless `projection_dim` adds a
    per-frame `Dense` before normalising), and as it normalises the frames first, raw and unit
    frame embeddings give the same set embedding. A set of one frame gives `f_1`.
    """

    def __init__(
        self,
        dim: int = 128,
        projection_dim: int | None = None,
        name: str = "mean_head",
        **kwargs,
    ):
        inputs, features = self._frame_graph(dim, projection_dim, None)
        pooled, weights = MaskedMeanPooling(return_weights=True, name="aggregation")(
            [features, inputs["mask"]]
        )
        self._finish(inputs, pooled, weights, name, **kwargs)

    def frame_log_weights(self, features, frame_embeddings, frame_features=None):
        """Equal weights: `ℓ_k = 0`."""
        return ops.zeros(ops.shape(features)[:1])


@keras.saving.register_keras_serializable(package="keras_faceset")
class MeanSet(SetEmbeddingModel):
    """An image backbone on image sets: each frame embedded, the set the mean of the unit frame
    embeddings (`MeanHead`)."""

    head_class = MeanHead

"""Center loss (Wen et al., ECCV 2016, "A Discriminative Feature Learning Approach for Deep
Face Recognition").

    L_C = 1/2 * sum_i ||x_i - c_{y_i}||^2                                   (eq. 2)

We average over the batch instead of summing (so the value does not grow with the batch size;
the paper's lambda = 0.003 then weighs a per-sample term). The centers are not learnt by
gradient descent but moved towards the class means with rate alpha (eq. 4):

    dc_j = sum_i delta(y_i = j) (c_j - x_i) / (1 + sum_i delta(y_i = j)),  c_j <- c_j - alpha dc_j

Under `tf.distribute` the sums run over the global batch: every replica gathers the labels and
embeddings of all replicas (B x D values, fewer than the C x D class sums when C > B) and
computes the same update, which `CenterLoss` writes to a variable aggregated as
``only_first_replica``, so the replicas' centers never drift apart.
"""

import threading

import keras
from keras import ops

from keras_faceset.losses._validation import validate_embeddings, validate_labels
from keras_faceset.losses.distribute import all_gather


def center_loss(labels, embeddings, centers):
    """Batch mean of 1/2 ||x_i - c_{y_i}||^2; labels (B,) or (B, 1) ints, embeddings (B, D),
    centers (C, D), labels in [0, C). Gradients reach the embeddings and the centers."""
    labels = validate_labels(labels, centers.shape[0], "center loss")
    embeddings = validate_embeddings(embeddings)
    own_centers = ops.take(centers, labels, axis=0)
    return 0.5 * ops.mean(ops.sum(ops.square(embeddings - own_centers), axis=-1))


def updated_centers(labels, embeddings, centers, alpha: float):
    """The paper's update c_j - alpha * sum_i [y_i=j](c_j - x_i) / (1 + sum_i [y_i=j]).

    Classes absent from the batch keep their center. No gradient flows through the result.
    Under `tf.distribute` the sums run over the global batch (every replica's rows)."""
    labels = all_gather(validate_labels(labels))
    embeddings = ops.stop_gradient(ops.cast(validate_embeddings(embeddings), centers.dtype))
    embeddings = all_gather(embeddings)
    num_classes = ops.shape(centers)[0]
    ones = ops.ones_like(embeddings[:, :1])
    counts = ops.segment_sum(ones, labels, num_segments=num_classes)  # (C, 1)
    class_sums = ops.segment_sum(embeddings, labels, num_segments=num_classes)  # (C, D)
    delta = (counts * centers - class_sums) / (1.0 + counts)
    return centers - alpha * delta


class ReplicaLosses:
    """A layer's `add_loss` list, one list per thread.

    `MirroredStrategy` traces each replica's step in its own thread, and the threads take
    turns at every cross-replica synchronisation. `CenterLoss` synchronises inside `call`, so
    with Keras' single list per layer a replica would clear or sum the losses that another
    replica added (the model's loss would then count one replica twice, another not at all).
    """

    def __init__(self):
        self._local = threading.local()

    @property
    def _items(self) -> list:
        if not hasattr(self._local, "items"):
            self._local.items = []
        return self._local.items

    def extend(self, losses) -> None:
        self._items.extend(losses)

    def clear(self) -> None:
        self._items.clear()

    def __getitem__(self, index):
        return self._items[index]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class EmbeddingLossLayer(keras.layers.Layer):
    """Base of the layers called on `[embeddings (B, D), labels]` that add a loss with
    `add_loss` and return the embeddings unchanged (shape checks, output spec). Their losses
    are kept per replica thread (`ReplicaLosses`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._losses = ReplicaLosses()

    def _embeddings_dim(self, input_shape, dim: int | None) -> int:
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"expected inputs [embeddings, labels], got shapes {input_shape}")
        embeddings_shape = tuple(input_shape[0])
        if len(embeddings_shape) != 2:
            raise ValueError(f"embeddings must have rank 2 (B, D), got shape {embeddings_shape}")
        if embeddings_shape[-1] is None or dim not in (None, embeddings_shape[-1]):
            raise ValueError(
                f"{type(self).__name__}(dim={dim}) got embeddings of shape {embeddings_shape}"
            )
        return embeddings_shape[-1]

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs[0].shape, dtype=inputs[0].dtype)


@keras.saving.register_keras_serializable(package="keras_faceset")
class CenterLoss(EmbeddingLossLayer):
    """Adds `weight * center_loss` to the model losses and returns the embeddings unchanged.

    Call on `[embeddings (B, D), labels (B,) or (B, 1)]`. The centers are a non-trainable
    `(num_classes, dim)` variable (zeros at start, as in the paper), updated with the paper's
    rule when `training=True`; they are saved with the model. Use it next to a softmax or margin
    head: `L = L_S + weight * L_C` (the paper's face models use weight 0.003, alpha 0.5).

    Under `tf.distribute` the loss is each replica's batch mean (Keras averages the replicas)
    and the update uses the global batch's class sums and counts on every replica.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int | None = None,
        alpha: float = 0.5,
        weight: float = 0.003,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.num_classes = num_classes
        self.dim = dim
        self.alpha = alpha
        self.weight = weight

    def build(self, input_shape):
        self.dim = self._embeddings_dim(input_shape, self.dim)
        self.centers = self.add_weight(
            shape=(self.num_classes, self.dim),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",  # every replica computes the same update
            name="centers",
        )

    def call(self, inputs, training=None):
        embeddings, labels = inputs
        labels = validate_labels(labels, self.num_classes, f"CenterLoss layer {self.name}")
        loss = center_loss(labels, ops.cast(embeddings, self.centers.dtype), self.centers)
        self.add_loss(self.weight * loss)
        if training:
            self.centers.assign(updated_centers(labels, embeddings, self.centers, self.alpha))
        return embeddings

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, dim=self.dim, alpha=self.alpha, weight=self.weight
        )
        return config

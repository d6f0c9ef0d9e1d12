"""Discriminative Sequence Agent (DSA) loss (Hu et al. 2018, "SeqFace: Make full use of
sequence information for face recognition").

On L2-normalised features and agents (centers) the distance is

    d(x, c) = ||x/|x| - c/|c|||^2 / 4  in [0, 1]
    J(x, c_n) = max(0, alpha * d(x, c_y) - d(x, c_n) + beta)
    L_DSA = lambda * d(x, c_y) + (1 - lambda) * mean_{n in N(x)} J(x, c_n)

averaged over the batch. N(x) holds the negative agents drawn this step, each allowed one with
Bernoulli probability p (one uniformly random allowed agent when none is drawn).

Labels index `num_identities + num_sequences` agents: `[0, num_identities)` are identity
classes, `[num_identities, num_identities + num_sequences)` are sequence classes (a sequence
of unknown identity). An identity sample is pushed from every other agent; a sequence sample
only from the identity agents, since two sequences may show the same person.

Under `tf.distribute` the agents are trainable weights, kept in sync by the optimizer's
all-reduced gradients; each replica draws the negatives of its own rows with its own random
stream (the seed folded with the replica id).
"""

import keras
from keras import ops

from keras_faceset.losses._validation import validate_embeddings, validate_labels
from keras_faceset.losses.center import EmbeddingLossLayer
from keras_faceset.losses.distances import l2_normalize
from keras_faceset.losses.distribute import uniform as replica_uniform


def allowed_negatives(labels, num_centers: int, num_identities: int):
    """(B, C) bool: agent j may be a negative of sample i (j != y_i, and j is an identity
    agent when y_i is a sequence)."""
    labels = ops.expand_dims(validate_labels(labels), -1)
    agents = ops.expand_dims(ops.arange(num_centers, dtype="int32"), 0)
    is_identity_sample = labels < num_identities
    return ops.logical_and(
        ops.not_equal(agents, labels),
        ops.logical_or(is_identity_sample, agents < num_identities),
    )


def sample_negative_mask(
    labels,
    num_centers: int,
    num_identities: int,
    p: float = 0.01,
    seed: int | keras.random.SeedGenerator | None = None,
):
    """(B, C) float mask of the negatives drawn for one step.

    Each allowed negative is kept with probability p; a sample that keeps none gets one
    allowed negative drawn uniformly. So p=1 gives all allowed negatives, p=0 exactly one.
    Under `tf.distribute` each replica draws from its own stream (see `distribute.uniform`)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    allowed = allowed_negatives(labels, num_centers, num_identities)
    uniform = replica_uniform((2, *ops.shape(allowed)), seed)  # one draw: two fields
    drawn = ops.logical_and(allowed, uniform[0] < p)
    # A uniform pick among the allowed agents: argmax of iid uniform scores over them.
    scores = ops.where(allowed, uniform[1], -1.0)
    fallback = ops.one_hot(ops.argmax(scores, axis=-1), num_centers, dtype="bool")
    fallback = ops.logical_and(fallback, allowed)  # no agent at all when none is allowed
    has_draw = ops.any(drawn, axis=-1, keepdims=True)
    return ops.cast(ops.where(has_draw, drawn, fallback), "float32")


def dsa_loss(
    labels,
    embeddings,
    centers,
    *,
    num_identities: int,
    negative_mask,
    lambda_: float = 0.5,
    alpha: float = 2.0,
    beta: float = 1.0,
):
    """Batch mean of lambda d(x, c_y) + (1 - lambda) mean_n J(x, c_n) over the negatives in
    `negative_mask` (B, C), restricted to the allowed ones (see `allowed_negatives`)."""
    labels = validate_labels(labels, centers.shape[0], "DSA loss")
    num_centers = ops.shape(centers)[0]
    embeddings = ops.cast(validate_embeddings(embeddings), centers.dtype)
    cosine = ops.matmul(l2_normalize(embeddings), ops.transpose(l2_normalize(centers)))
    distances = (1.0 - cosine) / 2.0  # ||a - b||^2 / 4 = (1 - cos) / 2 for unit vectors
    positive = ops.sum(distances * ops.one_hot(labels, num_centers, dtype=distances.dtype), -1)
    hinge = ops.relu(alpha * ops.expand_dims(positive, -1) - distances + beta)
    allowed = allowed_negatives(labels, num_centers, num_identities)
    mask = ops.where(allowed, ops.cast(negative_mask, distances.dtype), 0.0)
    negative = ops.sum(hinge * mask, -1) / ops.maximum(ops.sum(mask, -1), 1.0)
    return ops.mean(lambda_ * positive + (1.0 - lambda_) * negative)


@keras.saving.register_keras_serializable(package="keras_faceset")
class DSALoss(EmbeddingLossLayer):
    """Adds `weight * dsa_loss` to the model losses and returns the embeddings unchanged.

    Call on `[embeddings (B, D), labels (B,) or (B, 1)]` with labels in
    `[0, num_identities + num_sequences)` (sequence ids after identity ids). Owns the trainable
    `(num_identities + num_sequences, dim)` agents; negatives are re-drawn on every call from
    a `keras.random.SeedGenerator(seed)`. Defaults are SeqFace's (lambda 0.5, alpha 2,
    beta 1, p 0.01).
    """

    def __init__(
        self,
        num_identities: int,
        num_sequences: int = 0,
        dim: int | None = None,
        lambda_: float = 0.5,
        alpha: float = 2.0,
        beta: float = 1.0,
        p: float = 0.01,
        weight: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_identities < 1 or num_sequences < 0:
            raise ValueError(
                f"need num_identities >= 1 and num_sequences >= 0, got {num_identities}, "
                f"{num_sequences}"
            )
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.num_identities = num_identities
        self.num_sequences = num_sequences
        self.dim = dim
        self.lambda_ = lambda_
        self.alpha = alpha
        self.beta = beta
        self.p = p
        self.weight = weight
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def num_centers(self) -> int:
        return self.num_identities + self.num_sequences

    def build(self, input_shape):
        self.dim = self._embeddings_dim(input_shape, self.dim)
        self.centers = self.add_weight(
            shape=(self.num_centers, self.dim), initializer="glorot_uniform", name="centers"
        )

    def call(self, inputs):
        embeddings, labels = inputs
        labels = validate_labels(labels, self.num_centers, f"DSALoss layer {self.name}")
        mask = sample_negative_mask(
            labels, self.num_centers, self.num_identities, self.p, seed=self.seed_generator
        )
        loss = dsa_loss(
            labels,
            embeddings,
            self.centers,
            num_identities=self.num_identities,
            negative_mask=mask,
            lambda_=self.lambda_,
            alpha=self.alpha,
            beta=self.beta,
        )
        self.add_loss(self.weight * loss)
        return embeddings

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_identities=self.num_identities,
            num_sequences=self.num_sequences,
            dim=self.dim,
            lambda_=self.lambda_,
            alpha=self.alpha,
            beta=self.beta,
            p=self.p,
            weight=self.weight,
            seed=self.seed,
        )
        return config

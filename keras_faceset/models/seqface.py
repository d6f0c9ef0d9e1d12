"""SeqFace (Hu et al. 2018, "SeqFace: Make full use of sequence information for face
recognition"): a frame embedding trained with a chief classification loss + LSR on sequence
images + the DSA loss (+ optional center loss); a set is the mean of its normalised frame
embeddings."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_faceset.losses import CenterLoss, DSALoss
from keras_faceset.models.identification import classifier_layer, needs_labels
from keras_faceset.models.mean import MeanHead, MeanSet


def lsr_targets(labels, num_identities: int) -> np.ndarray:
    """Targets of the classification/LSR output: identity labels `< num_identities` kept,
    sequence labels (`>= num_identities`) -> -1 (unlabeled: uniform target in `LSRLoss`)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    return np.where(labels < num_identities, labels, -1).astype("int32")


def seqface_training_model(
    model: SeqFace | SeqFaceHead,
    num_identities: int,
    num_sequences: int = 0,
    classifier: str | keras.layers.Layer = "l2_sphereface",
    dsa_weight: float = 1.0,
    center_loss_weight: float | None = None,
    dsa_options: dict | None = None,
    seed: int | None = None,
) -> keras.Model:
    """SeqFace's multi-loss training graph on single frames, sharing `model`'s weights.

    Inputs `{"images": (B, H, W, 3), "labels": (B,) int}` for a `SeqFace` (the backbone and
    the head's projection train), `{"frame_embeddings": (B, dim), "labels"}` for a
    `SeqFaceHead` (its projection trains). Labels in `[0, num_identities)` are identities,
    `[num_identities, num_identities + num_sequences)` sequences of unknown identity. Output
    `{"logits": (B, num_identities)}` from the chief classifier (margin on identity samples
    only); the DSA (and center) losses are added with `add_loss`. Train::

        train = model.training_model(num_identities, num_sequences)
        train.compile(optimizer, loss={"logits": keras_faceset.losses.LSRLoss()})
        train.fit({"images": x, "labels": y}, {"logits": lsr_targets(y, num_identities)})

    i.e. `L = L_chief (LSR's uniform target on sequence samples) + dsa_weight · L_DSA
    (+ center_loss_weight · L_C)`.

    Args:
        num_identities, num_sequences: label ranges (see above).
        classifier: `"l2_sphereface"` (the paper's), `"softmax"` or a margin head layer.
        dsa_weight: weight of the DSA loss.
        center_loss_weight: add a center loss over all identity and sequence classes.
        dsa_options: more `DSALoss` arguments (`lambda_`, `alpha`, `beta`, `p`).
        seed: seed of DSA's negative sampling.
    """
    if isinstance(model, SeqFace):
        key, frames = "images", keras.Input(model.backbone.input_shape[1:], name="images")
        embeddings = model.head.project(model.backbone(frames))
    elif isinstance(model, SeqFaceHead):
        if not model.has_projection:
            raise ValueError(
                "a SeqFaceHead without projection_dim has no frame weights to train; build it "
                "with SeqFaceHead(dim, projection_dim=...) or train the image model SeqFace."
            )
        key, frames = "frame_embeddings", keras.Input((model.dim,), name="frame_embeddings")
        embeddings = model.project(frames)
    else:
        raise ValueError(f"model must be a SeqFace or a SeqFaceHead, got {type(model).__name__}.")
    labels = keras.Input((), dtype="int32", name="labels")
    x = DSALoss(
        num_identities,
        num_sequences,
        weight=dsa_weight,
        seed=seed,
        name="dsa_loss",
        **(dsa_options or {}),
    )([embeddings, labels])
    if center_loss_weight is not None:
        x = CenterLoss(
            num_identities + num_sequences, weight=center_loss_weight, name="center_loss"
        )([x, labels])
    layer = classifier_layer(classifier, num_identities)
    if needs_labels(layer):  # sequence samples: label -1, no margin
        logits = layer([x, ops.where(labels < num_identities, labels, -1)])
    else:
        logits = layer(x)
    return keras.Model(
        {key: frames, "labels": labels}, {"logits": logits}, name=f"{model.name}_training"
    )


class _SeqFaceTraining:
    """`training_model(num_identities, num_sequences=0, **options)`: see
    `seqface_training_model`."""

    def training_model(self, num_identities: int, num_sequences: int = 0, **options) -> keras.Model:
        """SeqFace's multi-loss training graph sharing these weights; see
        `seqface_training_model` for the inputs, outputs and options."""
        return seqface_training_model(self, num_identities, num_sequences, **options)


@keras.saving.register_keras_serializable(package="keras_faceset")
class SeqFaceHead(_SeqFaceTraining, MeanHead):
    """SeqFace's set embedding: the mean of the normalised (projected) frame embeddings, as
    `MeanHead`. Give it a `projection_dim` (SeqFace's embedding layer on top of the frame
    features) to train on cached embeddings with `training_model`.
    """

    def __init__(
        self,
        dim: int = 128,
        projection_dim: int | None = None,
        name: str = "seqface_head",
        **kwargs,
    ):
        super().__init__(dim, projection_dim, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_faceset")
class SeqFace(_SeqFaceTraining, MeanSet):
    """SeqFace on image sets: `backbone` per frame -> `SeqFaceHead` (mean of normalised
    embeddings). Train the backbone on single images with `training_model`; this model then
    embeds sets with the trained weights."""

    head_class = SeqFaceHead

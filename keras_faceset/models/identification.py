"""Identification training graphs: a classifier (softmax or a margin head) on a set model."""

from __future__ import annotations

import keras

from keras_faceset.layers import L2SphereFace, NormalizedSoftmax, SphereFace
from keras_faceset.models.set_head import positive_int

CLASSIFIERS = ("softmax", "l2_sphereface")


def classifier_layer(classifier: str | keras.layers.Layer, num_classes: int):
    """The identification layer: `"softmax"` -> `Dense(num_classes)` logits; `"l2_sphereface"`
    -> `L2SphereFace(num_classes)` (SeqFace's chief loss); a layer instance (e.g. a margin head
    such as `ArcFace(num_classes)`) is returned as is."""
    if isinstance(classifier, keras.layers.Layer):
        return classifier
    if classifier not in CLASSIFIERS:
        raise ValueError(
            f"Unknown classifier {classifier!r}; expected one of {CLASSIFIERS} or a layer such "
            "as keras_faceset.layers.ArcFace(num_classes)."
        )
    num_classes = positive_int("num_classes", num_classes)
    if classifier == "softmax":
        return keras.layers.Dense(num_classes, name="classifier")
    return L2SphereFace(num_classes, name="classifier")


def needs_labels(layer: keras.layers.Layer) -> bool:
    """Margin heads (NormalizedSoftmax, SphereFace and their subclasses) take labels."""
    return isinstance(layer, (NormalizedSoftmax, SphereFace))


def identification_model(
    set_model: keras.Model, num_classes: int, classifier: str | keras.layers.Layer = "softmax"
) -> keras.Model:
    """Identification training graph around a head or a task (NAN's identification mode).

    Inputs: `set_model`'s inputs (plus `"labels"` (B,) int for a margin head); outputs:
    `{"embedding", "weights", "logits": (B, num_classes)}`, sharing `set_model`'s weights.
    Train with `compile(loss={"logits": SparseCategoricalCrossentropy(from_logits=True)})`.
    """
    inputs = {
        key: keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=key)
        for key, tensor in set_model.input.items()
    }
    outputs = dict(set_model(inputs))
    layer = classifier_layer(classifier, num_classes)
    if needs_labels(layer):
        inputs["labels"] = keras.Input((), dtype="int32", name="labels")
        outputs["logits"] = layer([outputs["embedding"], inputs["labels"]])
    else:
        outputs["logits"] = layer(outputs["embedding"])
    return keras.Model(inputs, outputs, name=f"{set_model.name}_identification")

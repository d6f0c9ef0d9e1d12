"""A preset's set head built from its spec (`Preset.head`: builder and kwargs), for training
and evaluating heads outside `zoo.load`: with some kwargs overridden, or weights from any file."""

from __future__ import annotations

import importlib
import os

import keras

from keras_faceset.zoo.registry import get_preset


def build_head(name: str, weights: str | os.PathLike | None = None, **overrides) -> keras.Model:
    """The head of preset `name`: ``builder(**{**kwargs, **overrides})`` of its `Preset.head`,
    with random weights, or those of the `.weights.h5` file `weights`.

    ``build_head("nan")`` is the architecture of ``zoo.load("nan", weights=None, form="head")``,
    ``build_head("nan1", feature_shape=256)`` a NAN-1 head reading 256-d frame features and
    ``build_head("dlib_resnet")`` an image preset's `MeanHead`.
    """
    spec = get_preset(name).head
    module, _, attribute = spec.builder.partition(":")
    head = getattr(importlib.import_module(module), attribute)(**{**spec.kwargs, **overrides})
    if weights is not None:
        head.load_weights(weights)
    return head

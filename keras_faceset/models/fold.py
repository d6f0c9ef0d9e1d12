"""Inference-graph optimisation: fold a per-channel scale and shift into the layer before it.

A convolution or dense layer `z = W x + b` followed by an inference-mode batch norm
`y = γ (z − μ) / √(σ² + ε) + β` (Ioffe & Szegedy 2015, Algorithm 2) is one layer

    W' = W · s,   b' = (b − μ) · s + β,   s = γ / √(σ² + ε)

per output channel (γ = 1 for `scale=False`, as in FaceNet; β = 0 for `center=False`).
dlib's `Affine` (`y = γ z + β`, the batch norm dlib already reduced to a scale and shift)
folds the same way with `s = γ`, `b' = b · γ + β`.
"""

from __future__ import annotations

from collections import Counter

import keras
import numpy as np

from keras_faceset.models.backbones.dlib_resnet import Affine

PRODUCERS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)
"""Layers (exact types, not subclasses) whose kernel's last axis is the output channel."""


def fold_batch_norm(model: keras.Model, dtype: str | None = None) -> keras.Model:
    """An inference-only copy of a Functional (or built Sequential) `model` with every
    `BatchNormalization` (moving statistics) or `Affine` that directly follows a `Conv1D`,
    `Conv2D`, `Conv3D` or `Dense` folded into that layer's kernel and bias.

    A pair is folded only when the producer has a linear activation, no extra weights (LoRA,
    quantisation), is called once, and its output feeds the normalisation alone, on the
    producer's channel axis; a normalisation called with `training=True` is kept. Every other
    layer (custom ones included) is copied unchanged with its weights, and nested Functional
    models are folded too. The copy shares no variables with `model`; its outputs equal the
    original's in inference mode up to float rounding. Don't train it: the batch statistics
    are gone.

    With `dtype` (a Keras dtype policy such as ``"mixed_bfloat16"``), every layer of the copy
    computes in that type except the ones that take the model's inputs (preprocessing) and the
    ones that give its outputs, which keep float32: the copy still takes and returns float32
    (an output produced inside a nested model keeps the compute dtype: cast it, as
    `FaceEmbedder` does).
    On a CPU with AVX512_BF16 ``"mixed_bfloat16"`` about doubles FaceNet's and DlibResNet's
    images/s (docs/performance.md).
    """
    if isinstance(model, keras.Sequential):
        if not model.built:
            raise ValueError("fold_batch_norm: build the Sequential model (give it an Input) first")
        model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"fold_batch_norm needs a Functional or Sequential keras.Model, got "
            f"{type(model).__name__}"
        )
    pairs = _foldable_pairs(model)
    folded = {id(follower) for _, follower, _ in pairs.values()}
    keep_float32 = _boundary_layers(model, pairs) if dtype is not None else set()

    def clone(layer):
        if id(layer) in folded:
            return layer  # never called: `call` below skips it
        layer_dtype = None if id(layer) in keep_float32 else dtype
        if id(layer) in pairs:
            return _fold(*pairs[id(layer)], dtype=layer_dtype)
        return _copy(layer, dtype=layer_dtype)

    def call(layer, *args, **kwargs):
        if id(layer) in folded:
            return args[0]
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=clone, call_function=call, recursive=True)


def _graph_nodes(model: keras.Model) -> list:
    return [
        node
        for nodes in model._nodes_by_depth.values()
        for node in nodes
        if node.operation is not None and not node.is_input
    ]


def _boundary_layers(model: keras.Model, pairs: dict[int, tuple]) -> set[int]:
    """ids of the layers that take one of `model`'s inputs or give one of its outputs (for an
    output of a folded pair, its producer: `pairs` as from `_foldable_pairs`)."""
    nodes = _graph_nodes(model)
    inputs = {id(tensor) for tensor in keras.tree.flatten(model.inputs)}
    producer_of = {id(tensor): node.operation for node in nodes for tensor in node.outputs}
    folded_into = {id(follower): producer for producer, follower, _ in pairs.values()}
    boundary = {
        id(node.operation)
        for node in nodes
        if any(id(tensor) in inputs for tensor in node.input_tensors)
    }
    for tensor in keras.tree.flatten(model.outputs):
        layer = producer_of.get(id(tensor))
        boundary.add(id(folded_into.get(id(layer), layer)))
    return boundary


def _config(layer: keras.layers.Layer, dtype: str | None, **changes) -> dict:
    """`layer`'s config with `changes` and, if given, the dtype policy `dtype`."""
    config = {**layer.get_config(), **changes}
    if dtype is not None:
        config["dtype"] = dtype
    return config


def _foldable_pairs(model: keras.Model) -> dict[int, tuple]:
    """`{id(producer): (producer, follower, rank)}` over `model`'s graph and nested Functional
    models; `rank` is that of the producer's output."""
    nodes = _graph_nodes(model)
    calls = Counter(id(node.operation) for node in nodes)
    consumers = Counter(id(tensor) for node in nodes for tensor in node.input_tensors)
    consumers.update(id(tensor) for tensor in keras.tree.flatten(model.outputs))
    producer_of = {id(tensor): node.operation for node in nodes for tensor in node.outputs}
    pairs = {}
    for node in nodes:
        follower = node.operation
        if isinstance(follower, keras.Model) and hasattr(follower, "_nodes_by_depth"):
            pairs.update(_foldable_pairs(follower))
            continue
        if len(node.input_tensors) != 1 or calls[id(follower)] != 1:
            continue
        if node.arguments.kwargs.get("training"):
            continue
        (tensor,) = node.input_tensors
        producer, rank = producer_of.get(id(tensor)), len(tensor.shape)
        if (
            type(producer) in PRODUCERS
            and calls[id(producer)] == 1
            and consumers[id(tensor)] == 1
            and _plain(producer)
            and _scale_shift(follower, _channel_axis(producer, rank), rank) is not None
        ):
            pairs[id(producer)] = (producer, follower, rank)
    return pairs


def _plain(producer: keras.layers.Layer) -> bool:
    """Linear activation and exactly the weights `[kernel(, bias)]`."""
    expected = 2 if producer.use_bias else 1
    linear = producer.activation is keras.activations.linear
    return linear and len(producer.weights) == expected


def _channel_axis(producer: keras.layers.Layer, rank: int) -> int:
    channels_first = getattr(producer, "data_format", "channels_last") == "channels_first"
    return 1 if channels_first else rank - 1


def _scale_shift(layer: keras.layers.Layer, axis: int, rank: int) -> tuple | None:
    """`(s, t)` in float64 with `layer(z) = s z + t` per channel on `axis` of rank-`rank`
    inputs, else None."""
    if type(layer) is keras.layers.BatchNormalization and layer.axis % rank == axis:
        variance = np.asarray(layer.moving_variance, np.float64)
        scale = 1.0 / np.sqrt(variance + layer.epsilon)
        if layer.scale:
            scale = scale * np.asarray(layer.gamma, np.float64)
        shift = -np.asarray(layer.moving_mean, np.float64) * scale
        if layer.center:
            shift = shift + np.asarray(layer.beta, np.float64)
        return scale, shift
    if type(layer) is Affine and axis == rank - 1:
        return np.asarray(layer.gamma, np.float64), np.asarray(layer.beta, np.float64)
    return None


def _copy(layer: keras.layers.Layer, dtype: str | None = None) -> keras.layers.Layer:
    """A new layer from `layer`'s config (with dtype policy `dtype`), built and holding a copy
    of its weights."""
    new = layer.__class__.from_config(_config(layer, dtype))
    build_config = layer.get_build_config()
    if layer.built and build_config is not None:
        new.build_from_config(build_config)
        new.set_weights(layer.get_weights())
    return new


def _fold(
    producer: keras.layers.Layer, follower: keras.layers.Layer, rank: int, dtype: str | None = None
):
    """`producer` with the follower's `s`, `t` folded in: `W' = W s`, `b' = b s + t`."""
    scale, shift = _scale_shift(follower, _channel_axis(producer, rank), rank)
    kernel = np.asarray(producer.kernel, np.float64)
    bias = np.asarray(producer.bias, np.float64) if producer.use_bias else 0.0
    # Keras kernels are (..., in, out) whatever the data format: `s` scales the last axis.
    new = producer.__class__.from_config(_config(producer, dtype, use_bias=True))
    new.build_from_config(producer.get_build_config())
    new.set_weights([kernel * scale, bias * scale + shift])
    return new

"""`facenet_keras.h5` (Keras 2.1.2 port of FaceNet 20170512-110547) -> `InceptionResNetV1`.

The file's Lambda layers hold Python 3.6 bytecode, so Keras cannot load it on current Python.
We read its weights with h5py and copy them by layer name into `InceptionResNetV1`, checking
that every stored array is used exactly once and every model weight is set.

For parity, `original_facenet_from_h5` rebuilds the original graph from the file's own
`model_config` JSON (sharing no code with `InceptionResNetV1`), replacing each Lambda by the
operation its bytecode performs, and loads the weights with Keras' own legacy HDF5 loader.
"""

import base64
import json
from os import PathLike
from pathlib import Path

import h5py
import keras
import numpy as np

from keras_faceset.models.backbones.inception_resnet_v1 import InceptionResNetV1

FACENET_H5_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"

# CPython 3.6 bytecode of facenet_keras.h5's `lambda inputs, scale: inputs[0] + inputs[1] * scale`:
# LOAD_FAST inputs, LOAD_CONST 0, BINARY_SUBSCR, LOAD_FAST inputs, LOAD_CONST 1, BINARY_SUBSCR,
# LOAD_FAST scale, BINARY_MULTIPLY, BINARY_ADD, RETURN_VALUE.
_SCALE_SUM_BYTECODE = b"|\x00d\x01\x19\x00|\x00d\x02\x19\x00|\x01\x14\x00\x17\x00S\x00"


def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _open_h5(path: str | PathLike) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: FaceNet conversion needs facenet_keras.h5 "
            f"(sha256 {FACENET_H5_SHA256})"
        )
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"{path} is not a readable HDF5 file (truncated or not HDF5): {err}"
        ) from err


def read_facenet_h5(path: str | PathLike) -> dict[str, list[np.ndarray]]:
    """Stored weights of a Keras 2 HDF5 model or weights file: layer name -> arrays.

    Arrays are in the layer's `weight_names` order (Conv2D: kernel[, bias]; Dense: kernel;
    BatchNormalization: [gamma,] beta, moving_mean, moving_variance). Layers without weights
    are left out.
    """
    with _open_h5(path) as f:
        try:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise ValueError(
                    f"{path} holds no Keras weights (no 'layer_names' attribute); "
                    "expected facenet_keras.h5"
                )
            weights = {}
            for layer_name in _decode(group.attrs["layer_names"]):
                layer_group = group[layer_name]
                names = _decode(layer_group.attrs.get("weight_names", []))
                if names:
                    weights[layer_name] = [np.asarray(layer_group[name]) for name in names]
        except (OSError, KeyError) as err:
            raise ValueError(f"{path} is damaged or not a Keras weights file: {err}") from err
    return weights


def load_facenet_weights(model: keras.Model, path: str | PathLike) -> keras.Model:
    """Copy the weights stored in `path` into `model` by layer name; returns `model`.

    Raises ValueError naming the layer when a stored layer has no model layer of that name,
    a model layer has no stored weights, or the number or shapes of the arrays differ.
    Nothing is assigned unless every check passes.
    """
    return _assign(model, read_facenet_h5(path), path)


def convert_facenet_h5(
    path: str | PathLike, include_preprocessing: bool = True
) -> InceptionResNetV1:
    """`InceptionResNetV1` (128-d) carrying the weights of `facenet_keras.h5` at `path`."""
    stored = read_facenet_h5(path)  # a bad file fails before the model is built
    model = InceptionResNetV1(include_preprocessing=include_preprocessing, embedding_dim=128)
    return _assign(model, stored, path)


def _assign(model: keras.Model, stored: dict[str, list[np.ndarray]], path) -> keras.Model:
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    unused = sorted(set(stored) - set(targets))
    if unused:
        raise ValueError(
            f"{path}: weights of {len(unused)} stored layer(s) would be unused, no layer of "
            f"that name in model {model.name!r}: {unused[:5]}"
        )
    missing = sorted(set(targets) - set(stored))
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} layer(s) of model {model.name!r} have no stored weights: "
            f"{missing[:5]}"
        )
    for name, layer in targets.items():
        arrays = stored[name]
        if len(arrays) != len(layer.weights):
            raise ValueError(
                f"{path}: layer {name!r} stores {len(arrays)} arrays but the model's layer has "
                f"{len(layer.weights)} weights ({[w.name for w in layer.weights]})"
            )
        for variable, array in zip(layer.weights, arrays, strict=True):
            if tuple(variable.shape) != array.shape:
                raise ValueError(
                    f"{path}: layer {name!r} weight {variable.name!r} has shape "
                    f"{tuple(variable.shape)} in the model but {array.shape} in the file"
                )
    for name, layer in targets.items():
        layer.set_weights(stored[name])
    return model


def prewhiten(images: np.ndarray) -> np.ndarray:
    """FaceNet's NumPy preprocessing (facenet.prewhiten), per image, computed in float64."""
    x = np.asarray(images, dtype=np.float64)
    axes = tuple(range(1, x.ndim))
    std = np.maximum(x.std(axis=axes, keepdims=True), 1.0 / np.sqrt(x[0].size))
    return ((x - x.mean(axis=axes, keepdims=True)) / std).astype(np.float32)


def _lambda_as_op(config: dict, inputs: list):
    """The one Lambda of facenet_keras.h5: `inputs[0] + inputs[1] * scale`."""
    code = base64.b64decode(config["function"][0])
    if _SCALE_SUM_BYTECODE not in code or set(config.get("arguments") or {}) != {"scale"}:
        raise ValueError(f"unknown Lambda {config['name']!r}: only the scaled sum is supported")
    return inputs[0] + inputs[1] * config["arguments"]["scale"]


def original_facenet_from_h5(path: str | PathLike) -> keras.Model:
    """The original Keras model rebuilt from the file's `model_config`, weights loaded by Keras.

    Every layer but the Lambdas is deserialised from its stored config; each Lambda becomes
    the scaled sum its bytecode computes. Input: prewhitened images (see `prewhiten`).
    """
    with _open_h5(path) as f:
        if "model_config" not in f.attrs:
            raise ValueError(f"{path} has no 'model_config' attribute: not a full Keras model")
        config = json.loads(f.attrs["model_config"])["config"]
    tensors = {}
    for layer in config["layers"]:
        name, class_name, layer_config = layer["name"], layer["class_name"], layer["config"]
        if class_name == "InputLayer":
            shape = layer_config["batch_input_shape"][1:]
            tensors[name] = keras.Input(shape=shape, name=name)
            continue
        if len(layer["inbound_nodes"]) != 1:
            raise ValueError(
                f"{path}: layer {name!r} is called {len(layer['inbound_nodes'])} times"
            )
        inputs = [tensors[node[0]] for node in layer["inbound_nodes"][0]]
        if class_name == "Lambda":
            tensors[name] = _lambda_as_op(layer_config, inputs)
        else:
            keras_layer = getattr(keras.layers, class_name).from_config(layer_config)
            tensors[name] = keras_layer(inputs if len(inputs) > 1 else inputs[0])
    inputs = [tensors[node[0]] for node in config["input_layers"]]
    outputs = [tensors[node[0]] for node in config["output_layers"]]
    model = keras.Model(
        inputs=inputs[0] if len(inputs) == 1 else inputs,
        outputs=outputs[0] if len(outputs) == 1 else outputs,
        name=config["name"],
    )
    model.load_weights(str(path), by_name=True)
    return model


def facenet_parity(model: keras.Model, path: str | PathLike, images: np.ndarray) -> float:
    """Max |model(images) - original(prewhiten(images))| over the embeddings.

    `images`: (N, 160, 160, 3) RGB 0..255. A model without in-model preprocessing gets the
    prewhitened images too.
    """
    whitened = prewhiten(images)
    original = original_facenet_from_h5(path)
    expected = original.predict(whitened, batch_size=10, verbose=0)
    raw = getattr(model, "include_preprocessing", False)
    got = model.predict(
        np.asarray(images, np.float32) if raw else whitened, batch_size=10, verbose=0
    )
    return float(np.max(np.abs(np.asarray(got) - np.asarray(expected))))

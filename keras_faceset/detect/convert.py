"""The `mtcnn` package's weights (``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``) -> our networks.

Each asset is a joblib pickle (lz4-compressed) of the list of the network's arrays in the
package's layer order (kernel then bias per layer, PReLU slopes). The files of ``mtcnn==1.0.0``
(MIT licence) are sha256-pinned and checked before they are unpickled. The arrays are assigned
in order to the layers of `keras_faceset.detect.networks`; every array must be used exactly
once and every weight set, with matching shapes, or nothing is assigned.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import keras
import numpy as np

from keras_faceset.detect.networks import NETWORKS
from keras_faceset.files import verify_sha256

ASSETS: dict[str, tuple[str, str]] = {
    "pnet": ("pnet.lz4", "ea6b0c3e685ebee3165326ad6484acc95f2ef78f1c94fbf40a55704fa989f7b5"),
    "rnet": ("rnet.lz4", "cb00e6460f3c98b0bfafaba3c0a0ded4bdf6e62cee7174d969e8670d7e757fee"),
    "onet": ("onet.lz4", "94f6ea2f4cf985275ee958cdd762d17b6009348a4fb9d8c6be39ba73ffd22ca3"),
}
"""Network name -> (file name, sha256) of the assets of ``mtcnn==1.0.0``."""

REMEDY = (
    "The weights ship with the mtcnn package: pip install --force-reinstall mtcnn==1.0.0, "
    "or pass weights_dir= a folder holding its pnet.lz4, rnet.lz4 and onet.lz4."
)


def default_weights_dir() -> Path:
    """``mtcnn/assets/weights`` of the installed `mtcnn` package (found without importing it)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the mtcnn package is not installed. {REMEDY}")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"


def read_mtcnn_weights(
    name: str, weights_dir: str | os.PathLike | None = None
) -> tuple[list[np.ndarray], Path]:
    """The arrays of asset `name` ("pnet", "rnet" or "onet") and the file they came from."""
    if name not in ASSETS:
        raise ValueError(f"unknown MTCNN network {name!r}; expected one of {sorted(ASSETS)}")
    filename, sha256 = ASSETS[name]
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (MTCNN {name} weights). {REMEDY}")
    verify_sha256(path, sha256, f"{filename} of mtcnn==1.0.0 ({REMEDY})")
    import joblib  # a dependency of mtcnn; the file is unpickled only once its sha256 matched

    arrays = joblib.load(path)
    if not isinstance(arrays, list) or not all(isinstance(a, np.ndarray) for a in arrays):
        raise ValueError(f"{path}: expected a list of numpy arrays, got {type(arrays).__name__}")
    return arrays, path


def assign_weights(model: keras.Model, arrays: list[np.ndarray], source: str) -> keras.Model:
    """Set `model`'s weights from `arrays`, in layer order; returns `model`.

    Raises ValueError naming `source` and the layer when an array's shape differs from its
    weight's, when arrays are left unused or when weights are left unset; nothing is assigned
    unless every check passes.
    """
    targets = [(layer.name, weight) for layer in model.layers for weight in layer.weights]
    if len(arrays) > len(targets):
        raise ValueError(
            f"{source}: {len(arrays) - len(targets)} array(s) left unused: the file holds "
            f"{len(arrays)} arrays, {model.name} has {len(targets)} weights"
        )
    if len(arrays) < len(targets):
        unset = [f"{layer}/{weight.name}" for layer, weight in targets[len(arrays) :]]
        raise ValueError(
            f"{source}: {len(unset)} weight(s) of {model.name} left unset (the file holds "
            f"{len(arrays)} arrays): {unset[:5]}"
        )
    for index, ((layer, weight), array) in enumerate(zip(targets, arrays, strict=True)):
        if tuple(weight.shape) != array.shape:
            raise ValueError(
                f"{source}: array {index} has shape {array.shape} but weight {weight.name!r} "
                f"of layer {layer!r} of {model.name} has shape {tuple(weight.shape)}"
            )
    for (_, weight), array in zip(targets, arrays, strict=True):
        weight.assign(array)
    return model


def mtcnn_network(name: str, weights_dir: str | os.PathLike | None = None) -> keras.Model:
    """Network `name` ("pnet", "rnet" or "onet") carrying the `mtcnn` package's weights."""
    arrays, path = read_mtcnn_weights(name, weights_dir)
    return assign_weights(NETWORKS[name](), arrays, str(path))

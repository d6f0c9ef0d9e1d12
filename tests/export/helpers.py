"""A tiny backbone, NumPy references of the signatures, and the fresh-process runners."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

VENV_BIN = Path(sys.executable).parent
FRESH_PROCESS = Path(__file__).with_name("fresh_process.py")
SIZE, DIM = 32, 16


def tiny_backbone(size: int = SIZE, dim: int = DIM, preprocessing=None) -> keras.Model:
    """Preprocessing (default: rescaling to -1..1) + Conv + BN + global pool + Dense on RGB
    0..255 images: fast, and exercises the same export as the real backbones."""
    images = keras.Input((size, size, 3), name="images")
    preprocessing = preprocessing or keras.layers.Rescaling(1 / 127.5, offset=-1.0)
    x = preprocessing(images)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(dim)(x), name="tiny")


def l2(x: np.ndarray) -> np.ndarray:
    """`x / max(‖x‖, 1e-12)` along the last axis."""
    return x / np.sqrt(np.maximum(np.sum(np.square(x), -1, keepdims=True), 1e-24))


def reference_frames(backbone: keras.Model, images: np.ndarray, size) -> np.ndarray:
    """Raw frame embeddings by hand: float32, tf.image.resize (bilinear, antialias) when the
    size differs, the Keras backbone."""
    x = images.astype("float32")
    if x.shape[1:3] != tuple(size):
        x = tf.image.resize(x, size, method="bilinear", antialias=True).numpy()
    return keras.ops.convert_to_numpy(backbone(x, training=False))


def reference_embed(backbone: keras.Model, images: np.ndarray, size) -> np.ndarray:
    """embed_images by hand: the L2-normalised raw frame embeddings."""
    return l2(reference_frames(backbone, images, size))


def reference_mean(frames: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """aggregate with the mean head: uniform weights over unmasked frames, L2 of the mean of
    the L2-normalised frames."""
    counts = mask.sum(1, keepdims=True)
    weights = np.where(mask, 1.0 / np.maximum(counts, 1), 0.0).astype("float32")
    return {"embedding": l2(np.einsum("bt,btd->bd", weights, l2(frames))), "weights": weights}


def reference_sets(backbone, images, mask, size, head=reference_mean) -> dict[str, np.ndarray]:
    """serving_default by hand: the head on the raw frame embeddings of every frame."""
    b, t = mask.shape
    frames = reference_frames(backbone, images.reshape(b * t, *images.shape[2:]), size)
    return head(frames.reshape(b, t, -1), mask)


def encode(image: np.ndarray, fmt: str) -> bytes:
    encoder = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    return encoder(image).numpy()


def decode(data: bytes) -> np.ndarray:
    """The decoder the graph uses (tf.io.decode_image, RGB, first frame)."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def start(command: list, log: Path) -> subprocess.Popen:
    """Start `command` with TF's C++ logging quiet; stdout and stderr go to `log`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)


def start_fresh_process(model_dir: Path, calls: dict, work: Path) -> subprocess.Popen:
    """Run fresh_process.py on `calls` = {call: (signature, {input: array})} in the background;
    its results go to work/results.npz (read with `fresh_results`)."""
    arrays = {
        f"{call}|{signature}|{name}": value
        for call, (signature, inputs) in calls.items()
        for name, value in inputs.items()
    }
    np.savez(work / "requests.npz", **arrays)
    command = [sys.executable, str(FRESH_PROCESS), str(model_dir)]
    return start([*command, str(work / "requests.npz"), str(work / "results.npz")], work / "log")


def fresh_results(process: subprocess.Popen, work: Path) -> dict[str, np.ndarray]:
    code = process.wait(timeout=600)
    log = (work / "log").read_text()
    assert code == 0, f"fresh process failed ({code}); keras_faceset imported? log:\n{log}"
    with np.load(work / "results.npz") as data:
        return {key: data[key] for key in data.files}

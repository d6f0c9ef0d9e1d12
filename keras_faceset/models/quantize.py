"""int8 inference of a frame model on CPUs: TFLite's post-training quantization
(`convert_tflite`: full-integer ``"int8"``, calibrated, or dynamic-range ``"int8-dynamic"``, no
calibration) and the LiteRT interpreter with XNNPack in the frame model's place
(`Int8FrameModel`); what `FaceEmbedder(precision="int8" | "int8-dynamic")` runs
(docs/performance.md). The int8 calibration images: LFW's by default, or the user's own
(`calibration_sample`, keyed in the cache by `calibration_key`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from keras_faceset.files import sha256_file

CALIBRATION_IMAGES = 256
"""Images a calibration samples (seeded): TFLite's calibrator records each activation's range
over them, one at a time."""
MIN_CALIBRATION_FACES = 32
"""The fewest faces a calibration may use. The activation ranges are the min/max over the
calibration faces, so a face outside them clips. Measured on dlib_resnet, int8 against float32
on 200 held-out LFW DevTest faces, 3 seeded samples of LFW DevTrain faces per size: the mean
cosine is 0.9993-0.9996 from 8 faces on, but the worst face fell to 0.986-0.989 on 4 to 24
faces and stayed >= 0.992 from 32 on (0.9991 on LFW's 256)."""
CalibrationSource = str | os.PathLike | Sequence[str | os.PathLike]
"""A folder of images (searched recursively) or a list of image files."""


TFLITE_PRECISIONS = ("int8", "int8-dynamic")
"""The TFLite quantizations `convert_tflite` makes: ``"int8"`` full-integer (int8 weights per
channel and int8 activations, their ranges calibrated on face chips); ``"int8-dynamic"``
dynamic-range (int8 weights per channel, of the kernels of 1,024 weights or more; activations
quantized to int8 at run time from each image's own range, so no calibration images, and an
image's embedding does not depend on the rest of its batch)."""
CONVERSIONS = ("float32", *TFLITE_PRECISIONS)
"""What `convert_tflite` writes: also ``"float32"``, the graph unquantized."""


def frame_function(frame_model: keras.Model):
    """`frame_model`'s ``frame_embeddings`` as one `tf.function` on float32 (N, S, S, 3) chips
    (0..255), S its input side."""
    import tensorflow as tf

    side = frame_model.input_shape[1]
    spec = tf.TensorSpec((None, side, side, 3), tf.float32, name="chips")
    return tf.function(
        lambda chips: frame_model(chips, training=False)["frame_embeddings"],
        input_signature=[spec],
    )


def convert_tflite(
    frame_model: keras.Model,
    path: str | os.PathLike,
    precision: str,
    chips: np.ndarray | None = None,
) -> Path:
    """`frame_model`'s embeddings as a TFLite model at `path`, float32 input (chips 0..255) and
    output: `precision` ``"float32"`` (unquantized), ``"int8-dynamic"`` (dynamic-range) or
    ``"int8"`` (full-integer, activation ranges calibrated on the uint8 `chips` one at a time;
    only it takes `chips`). See `TFLITE_PRECISIONS`."""
    if precision not in CONVERSIONS:
        raise ValueError(f"unknown TFLite precision {precision!r}; expected one of {CONVERSIONS}")
    if (chips is None) == (precision == "int8"):
        raise ValueError(
            "the full-integer int8 conversion needs calibration chips; float32 and "
            f"int8-dynamic take none (precision={precision!r}, chips "
            f"{'missing' if chips is None else 'given'})"
        )
    import tensorflow as tf

    fn = frame_function(frame_model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8":
        samples = np.asarray(chips, np.float32)
        converter.representative_dataset = lambda: ([chip[None]] for chip in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    Path(path).write_bytes(converter.convert())
    return Path(path)


class Int8FrameModel:
    """A `convert_tflite` model in `frame_model`'s place (`predict_on_batch`): the LiteRT
    interpreter (`ai_edge_litert`, else TensorFlow's `tf.lite`) with XNNPack on `threads`
    threads (default: the cores this process may use), resized to each batch; with
    `latest_features`, XNNPack's latest features switched on (the interpreter's
    ``experimental_default_delegate_latest_features``)."""

    def __init__(
        self, path: str | os.PathLike, threads: int | None = None, latest_features: bool = False
    ):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's own copy (deprecated in favour of LiteRT's)
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806

        threads = threads or len(os.sched_getaffinity(0))
        self.path = Path(path)
        self.interpreter = Interpreter(
            model_path=str(path),
            num_threads=threads,
            experimental_default_delegate_latest_features=latest_features,
        )
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None

    def predict_on_batch(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        chips = np.ascontiguousarray(chips, np.float32)
        if chips.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input, chips.shape)
            self.interpreter.allocate_tensors()
            self.shape = chips.shape
        self.interpreter.set_tensor(self.input, chips)
        self.interpreter.invoke()
        return {"frame_embeddings": self.interpreter.get_tensor(self.output).copy()}


def calibration_sample(
    source: CalibrationSource, count: int = CALIBRATION_IMAGES, seed: int = 0
) -> list[Path]:
    """Up to `count` image files of `source` (a folder, searched recursively, or a list of
    files), a seeded sample when there are more, in sorted order."""
    from keras_faceset.data.inputs import image_paths

    given = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not given:
        raise ValueError("the int8 calibration needs images of faces: got an empty list")
    paths = sorted(set(image_paths(given)))
    if len(paths) > count:
        chosen = np.random.default_rng(seed).choice(len(paths), count, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    return paths


def calibration_key(paths: Sequence[str | os.PathLike], settings: str) -> str:
    """sha256 of what an int8 model is calibrated on: the `settings` that turn images into
    chips (model, crop, detector) and the bytes of each file, in order (a file that cannot be
    read counts by its name)."""
    digest = hashlib.sha256(f"int8 calibration | {settings}\n".encode())
    for path in paths:
        try:
            digest.update(f"{sha256_file(path)}\n".encode())
        except OSError:
            digest.update(f"unreadable {os.fspath(path)}\n".encode())
    return digest.hexdigest()

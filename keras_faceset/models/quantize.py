"""int8 inference of a frame model on CPUs: TFLite full-integer post-training quantization
(`quantize_int8`) and the LiteRT interpreter with XNNPack in the frame model's place
(`Int8FrameModel`); what `FaceEmbedder(precision="int8")` runs (docs/performance.md)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


def quantize_int8(frame_model: keras.Model, chips: np.ndarray, path: Path) -> Path:
    """`frame_model`'s embeddings as a TFLite model at `path`, full-integer post-training
    quantization: int8 weights (per channel) and activations, their ranges calibrated on the
    uint8 `chips` one at a time; float32 input (chips 0..255) and output."""
    import tensorflow as tf

    side = frame_model.input_shape[1]
    spec = tf.TensorSpec((None, side, side, 3), tf.float32, name="chips")
    fn = tf.function(
        lambda x: frame_model(x, training=False)["frame_embeddings"], input_signature=[spec]
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = np.asarray(chips, np.float32)
    converter.representative_dataset = lambda: ([chip[None]] for chip in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    Path(path).write_bytes(converter.convert())
    return Path(path)


class Int8FrameModel:
    """A `quantize_int8` model in `frame_model`'s place (`predict_on_batch`): the LiteRT
    interpreter (`ai_edge_litert`, else TensorFlow's `tf.lite`) with XNNPack on `threads`
    threads (default: the cores this process may use), resized to each batch."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's own copy (deprecated in favour of LiteRT's)
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806

        threads = threads or len(os.sched_getaffinity(0))
        self.path = Path(path)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
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

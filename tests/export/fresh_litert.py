"""Run in a fresh interpreter that never imports keras_faceset: serve an int8 export as its
manifest says, with LiteRT (`ai_edge_litert`: nor Keras, nor TensorFlow), else TensorFlow's
`tf.lite` (importing TensorFlow loads Keras).

    python fresh_litert.py MODEL.int8.json CHIPS.npy RESULTS.npz

RESULTS.npz gets `embeddings` (the L2-normalised outputs, batch resized to the chips'),
`sha256_ok`, `engine` ("litert" or "tf.lite") and `modules` (imported packages).
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

try:
    from ai_edge_litert.interpreter import Interpreter

    ENGINE = "litert"
except ImportError:
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter
    ENGINE = "tf.lite"


def main(manifest_path, chips_path, results_path):
    manifest = json.loads(Path(manifest_path).read_text())
    model = Path(manifest_path).with_name(manifest["file"])
    sha256_ok = hashlib.sha256(model.read_bytes()).hexdigest() == manifest["sha256"]
    chips = np.load(chips_path).astype(manifest["input"]["dtype"])
    assert list(chips.shape[1:]) == manifest["input"]["shape"][1:], chips.shape
    interpreter = Interpreter(model_path=str(model), num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, chips.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, chips)
    interpreter.invoke()
    raw = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    embeddings = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    modules = np.array(sorted(m for m in sys.modules if "." not in m))
    np.savez(
        results_path, embeddings=embeddings, sha256_ok=sha256_ok, engine=ENGINE, modules=modules
    )
    keras_free = ENGINE == "tf.lite" or "keras" not in sys.modules
    return 0 if "keras_faceset" not in sys.modules and keras_free else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

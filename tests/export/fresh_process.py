"""Run in a fresh interpreter that imports only TensorFlow (and the TF Serving protos): load a
SavedModel both ways TF Serving users do and run requests, never importing keras_faceset.

    python fresh_process.py MODEL_DIR REQUESTS.npz RESULTS.npz

REQUESTS.npz holds `call|signature|input` arrays; RESULTS.npz gets `tf2|call|output` (eager
`tf.saved_model.load`), `v1|call|output` (graph mode `tf.compat.v1.saved_model.loader.load`, by
the SignatureDef's tensor names), `warmup|i|output` for each replayed warm-up record,
`v1_mask_error` (the graph-mode error for a mismatched mask) and `modules` (imported packages).
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


def read_requests(path):
    calls = {}
    with np.load(path, allow_pickle=True) as data:
        for key in data.files:
            call, signature, name = key.split("|")
            calls.setdefault(call, (signature, {}))[1][name] = data[key]
    return calls


def run_eager(model_dir, calls, results):
    loaded = tf.saved_model.load(model_dir)
    for call, (signature, inputs) in calls.items():
        outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        for name, value in outputs.items():
            results[f"tf2|{call}|{name}"] = value.numpy()
    return loaded


def run_graph_mode(model_dir, calls, results):
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], model_dir)
        for call, (signature, inputs) in calls.items():
            signature_def = meta_graph.signature_def[signature]
            feed = {signature_def.inputs[k].name: v for k, v in inputs.items()}
            fetch = {k: info.name for k, info in signature_def.outputs.items()}
            for name, value in sess.run(fetch, feed).items():
                results[f"v1|{call}|{name}"] = value
        signature_def = meta_graph.signature_def["aggregate"]
        dim = signature_def.inputs["embeddings"].tensor_shape.dim[2].size
        feed = {
            signature_def.inputs["embeddings"].name: np.zeros((2, 3, dim), "float32"),
            signature_def.inputs["mask"].name: np.ones((2, 2), bool),
        }
        try:
            sess.run(signature_def.outputs["embedding"].name, feed)
            results["v1_mask_error"] = np.array("")
        except tf.errors.InvalidArgumentError as error:
            results["v1_mask_error"] = np.array(error.message)


def replay_warmup(model_dir, loaded, results):
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(model_dir) / "assets.extra" / "tf_serving_warmup_requests"
    for i, record in enumerate(tf.data.TFRecordDataset(str(path))):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        results[f"warmup|{i}|model"] = np.array(request.model_spec.name)
        results[f"warmup|{i}|signature"] = np.array(request.model_spec.signature_name)
        for name, value in outputs.items():
            results[f"warmup|{i}|{name}"] = value.numpy()


def main(model_dir, requests_path, results_path):
    calls = read_requests(requests_path)
    results = {}
    loaded = run_eager(model_dir, calls, results)
    run_graph_mode(model_dir, calls, results)
    replay_warmup(model_dir, loaded, results)
    results["modules"] = np.array(sorted(m for m in sys.modules if "." not in m))
    np.savez(results_path, **results)
    return 0 if "keras_faceset" not in sys.modules else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

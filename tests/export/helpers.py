"""A tiny backbone, NumPy and Keras references of the signatures, the fresh-process runners,
TF Serving's REST handling emulated, and the SavedModel inspections (saved_model_cli listing,
op types, variables)."""

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from keras_faceset.models.task import frame_inputs_model

VENV_BIN = Path(sys.executable).parent
FRESH_PROCESS = Path(__file__).with_name("fresh_process.py")
SIZE, DIM = 32, 16


def tiny_backbone(size: int = SIZE, dim: int = DIM, preprocessing=None) -> keras.Model:
    """Preprocessing (default: rescaling to -1..1) + Conv + BN + ReLU + global pool + Dense on
    RGB 0..255 images: fast, and exercises the same export as the real backbones. The batch
    norm follows a linear convolution (the export folds it) and has seeded non-trivial
    statistics, so folding changes the weights."""
    images = keras.Input((size, size, 3), name="images")
    preprocessing = preprocessing or keras.layers.Rescaling(1 / 127.5, offset=-1.0)
    x = preprocessing(images)
    x = keras.layers.Conv2D(8, 3, strides=2)(x)
    norm = keras.layers.BatchNormalization()
    x = keras.layers.ReLU()(norm(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, keras.layers.Dense(dim)(x), name="tiny")
    rng = np.random.default_rng(7)
    norm.gamma.assign(rng.uniform(0.5, 2.0, 8))
    norm.beta.assign(rng.normal(0, 0.5, 8))
    norm.moving_mean.assign(rng.normal(0, 0.3, 8))
    norm.moving_variance.assign(rng.uniform(0.2, 3.0, 8))
    return model


def saved_variable_count(model_dir) -> int:
    """The number of variables in a SavedModel's checkpoint."""
    reader = tf.train.load_checkpoint(str(Path(model_dir) / "variables" / "variables"))
    return sum(key.endswith("VARIABLE_VALUE") for key in reader.get_variable_to_shape_map())


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
    """embed_images' `embedding` by hand: the L2-normalised raw frame embeddings."""
    return l2(reference_frames(backbone, images, size))


def reference_outputs(backbone: keras.Model, images: np.ndarray, size) -> dict[str, np.ndarray]:
    """embed_images by hand for the mean head: `embedding` and the raw `frame_features`."""
    frames = reference_frames(backbone, images, size)
    return {"embedding": l2(frames), "frame_features": frames}


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


def rest_predict(loaded, body: dict) -> dict:
    """TF Serving's REST predict on a columnar body for a loaded SavedModel: inputs typed by
    the SignatureDef, {"b64": ...} decoded to bytes; a one-output signature answers
    `{"outputs": array}`."""
    signature = body.get("signature_name", "serving_default")
    function = loaded.signatures[signature]
    specs = function.structured_input_signature[1]
    tensors = {
        name: tf.constant(_unb64(value), dtype=specs[name].dtype)
        for name, value in body["inputs"].items()
    }
    outputs = {name: value.numpy().tolist() for name, value in function(**tensors).items()}
    return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}


def _unb64(value):
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_unb64(item) for item in value]
    return value


@contextlib.contextmanager
def rest_server(models: dict):
    """A local HTTP server answering TF Serving's REST predict URLs
    `/v1/models/{name}[/versions/1]:predict` for `models` = {name: loaded SavedModel} with
    `rest_predict`; yields its URL. A failing signature call gives HTTP 400 and TF Serving's
    `{"error": message}` body, an unknown model 404."""
    routes = {
        f"/v1/models/{name}{version}:predict": loaded
        for name, loaded in models.items()
        for version in ("", "/versions/1")
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path not in routes:
                code, answer = 404, {"error": f"Servable not found for request: {self.path}"}
            else:
                try:
                    code, answer = 200, rest_predict(routes[self.path], body)
                except tf.errors.InvalidArgumentError as error:
                    code, answer = 400, {"error": error.message}
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join()


class KerasReference:
    """Every signature's outputs computed in process by a set model (`model.backbone`,
    `model.head`, `model` itself on image sets), with the graph's resizing."""

    def __init__(self, model: keras.Model, size):
        self.model, self.size = model, tuple(size)
        self.dim, self.feature_shape = model.head.dim, model.head.feature_shape
        self.frame_inputs = frame_inputs_model(model.backbone, self.feature_shape)

    def resize(self, images: np.ndarray) -> np.ndarray:
        x = images.astype("float32")
        if x.shape[-3:-1] == self.size:
            return x
        flat = x.reshape(-1, *x.shape[-3:])
        flat = tf.image.resize(flat, self.size, method="bilinear", antialias=True).numpy()
        return flat.reshape(*x.shape[:-3], *self.size, 3)

    def frame_features(self, images: np.ndarray) -> np.ndarray:
        """`(N, F)`: raw frame embeddings, then the flattened frame features."""
        out = self.frame_inputs(self.resize(images), training=False)
        parts = [out["frame_embeddings"]] + ([out["frame_features"]] if self.feature_shape else [])
        parts = [keras.ops.convert_to_numpy(part).reshape(len(images), -1) for part in parts]
        return np.concatenate(parts, axis=-1)

    def sets(self, images: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = self.model({"images": self.resize(images), "mask": mask}, training=False)
        return {key: keras.ops.convert_to_numpy(out[key]) for key in ("embedding", "weights")}

    def embed(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Each image as a one-frame set, and its frame features."""
        ones = np.ones((len(images), 1), bool)
        embedding = self.sets(images[:, None], ones)["embedding"]
        return {"embedding": embedding, "frame_features": self.frame_features(images)}

    def aggregate(self, frames: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        inputs = {"frame_embeddings": frames[..., : self.dim], "mask": mask}
        if self.feature_shape:
            features = frames[..., self.dim :].reshape(*frames.shape[:2], *self.feature_shape)
            inputs["frame_features"] = features
        out = self.model.head(inputs, training=False)
        return {key: keras.ops.convert_to_numpy(out[key]) for key in ("embedding", "weights")}


def parse_saved_model_cli(text: str) -> dict:
    """`{signature: {"inputs name": (dtype, shape), ..., "method": ...}}` from `show --all`."""
    signatures = {}
    for block in re.split(r"\n(?=signature_def\[)", text.split("Concrete Functions:")[0]):
        name = re.match(r"signature_def\['(\w+)'\]", block)
        if name is None:
            continue
        entries = re.findall(
            r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)", block
        )
        signature = {f"{kind} {key}": (dtype, shape.strip()) for kind, key, dtype, shape in entries}
        signature["method"] = re.search(r"Method name is: ?(.*)", block).group(1).strip()
        signatures[name.group(1)] = signature
    return signatures


def documented_signatures(dim: int, frame_dim: int, embedding_dim: int | None = None) -> dict:
    """The signatures as docs/serving.md documents them: `saved_model_cli` dtypes and shapes
    for frame embeddings of `dim`, frame features of `frame_dim` and set embeddings of
    `embedding_dim` (default `dim`)."""
    out = f"(-1, {embedding_dim or dim})"
    embedded = {
        "outputs embedding": ("DT_FLOAT", out),
        "outputs frame_features": ("DT_FLOAT", f"(-1, {frame_dim})"),
    }
    pooled = {"outputs embedding": ("DT_FLOAT", out), "outputs weights": ("DT_FLOAT", "(-1, -1)")}
    mask = {"inputs mask": ("DT_BOOL", "(-1, -1)")}
    frames = {"inputs embeddings": ("DT_FLOAT", f"(-1, -1, {frame_dim})")}
    return {
        "serving_default": {"inputs images": ("DT_UINT8", "(-1, -1, -1, -1, 3)"), **mask, **pooled},
        "embed_images": {"inputs images": ("DT_UINT8", "(-1, -1, -1, 3)"), **embedded},
        "aggregate": {**frames, **mask, **pooled},
        "embed_encoded": {"inputs image_bytes": ("DT_STRING", "(-1)"), **embedded},
    }


def op_types(model_dir) -> tuple[set[str], set[str]]:
    """Op types of every node in the MetaGraphDef's graph and in every library function, and
    the library's function names (a node may call a function by name)."""
    saved = saved_model_pb2.SavedModel.FromString((Path(model_dir) / "saved_model.pb").read_bytes())
    ops, functions = set(), set()
    for meta_graph in saved.meta_graphs:
        ops |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            functions.add(function.signature.name)
            ops |= {node.op for node in function.node_def}
    return ops, functions


def nonstandard_ops(model_dir) -> set[str]:
    """Ops that are neither a `tf.raw_ops` kernel nor a library function (PyFuncs count)."""
    ops, functions = op_types(model_dir)
    standard = set(dir(tf.raw_ops)) - {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    return ops - functions - standard


class SetModelContract:
    """The serving contract of a set model's export, checked against the model in process:
    export `model` as `name` under `base`, then run the requests in a fresh TensorFlow-only
    process (eager and TF1 graph mode, warm-up replay) and `saved_model_cli` in the background.

    Requests: `sets` uint8 `(B, T, h, w, 3)` + `mask` through `serving_default`, their frames
    through `embed_images`, `images` `(N, H', W', 3)` (resized in the graph) through
    `embed_images`, the in-process frame features of `sets` through `aggregate`, and `jpegs`
    through `embed_encoded`.
    """

    def __init__(self, model, name, size, base, work, sets, mask, images, jpegs):
        from keras_faceset.export import ExportSpec, export_saved_model

        self.name, self.work, self.sets, self.mask = name, Path(work), sets, mask
        self.reference = ref = KerasReference(model, size)
        self.model_dir = export_saved_model(ExportSpec.from_model(model, name, size), base)
        flat = sets.reshape(-1, *sets.shape[2:])
        frames = ref.frame_features(flat).reshape(*mask.shape, -1) * mask[..., None]
        self.frame_dim = frames.shape[-1]
        jpegs = np.array(jpegs, object)
        self.calls = {
            "sets": ("serving_default", {"images": sets, "mask": mask}),
            "frames": ("embed_images", {"images": flat}),
            "images": ("embed_images", {"images": images}),
            "aggregate": ("aggregate", {"embeddings": frames, "mask": mask}),
            "jpeg": ("embed_encoded", {"image_bytes": jpegs}),
        }
        self.expected = {
            "sets": ref.sets(sets, mask),
            "frames": ref.embed(flat),
            "images": ref.embed(images),
            "aggregate": ref.aggregate(frames, mask),
            "jpeg": ref.embed(np.stack([decode(data) for data in jpegs])),
        }
        self.fresh = start_fresh_process(self.model_dir, self.calls, self.work)
        cli = [str(VENV_BIN / "saved_model_cli"), "show", "--dir", str(self.model_dir), "--all"]
        self.cli = start(cli, self.work / "saved_model_cli.txt")
        self._results = None

    @property
    def results(self) -> dict[str, np.ndarray]:
        if self._results is None:
            self._results = fresh_results(self.fresh, self.work)
        return self._results

    def close(self):
        for process in (self.fresh, self.cli):
            if process.poll() is None:
                process.kill()
                process.wait()

    def check_parity(self, atol: float) -> float:
        """Every output of both loaders equals the in-process model's; the largest difference."""
        assert "keras_faceset" not in set(self.results["modules"])
        worst = 0.0
        for loader in ("tf2", "v1"):
            for call, outputs in self.expected.items():
                for key, value in outputs.items():
                    got = self.results[f"{loader}|{call}|{key}"]
                    assert got.dtype == np.float32 and got.shape == value.shape, (call, key)
                    np.testing.assert_allclose(got, value, atol=atol, rtol=0, err_msg=call)
                    worst = max(worst, float(np.max(np.abs(got - value))))
        return worst

    def check_cached_gallery(self, atol: float) -> None:
        """`aggregate` on `embed_images`' frame features (a cached gallery) equals
        `serving_default` on the same frames, and the in-process image-set model."""
        loaded = tf.saved_model.load(str(self.model_dir))
        flat = self.sets.reshape(-1, *self.sets.shape[2:])
        frames = loaded.signatures["embed_images"](images=flat)["frame_features"].numpy()
        frames = frames.reshape(*self.mask.shape, -1) * self.mask[..., None]
        aggregated = loaded.signatures["aggregate"](embeddings=frames, mask=self.mask)
        served = loaded.signatures["serving_default"](images=self.sets, mask=self.mask)
        for key in ("embedding", "weights"):
            np.testing.assert_allclose(aggregated[key], served[key], atol=atol, rtol=0)
            np.testing.assert_allclose(aggregated[key], self.expected["sets"][key], atol=atol)

    def check_warmup(self) -> None:
        """One replayed warm-up record per signature, in order, with well-formed outputs."""
        from keras_faceset.export import SIGNATURES
        from keras_faceset.export.pipeline import PIPELINE_SIGNATURES

        results = self.results
        count = sum(key.endswith("|signature") for key in results if key.startswith("warmup|"))
        replayed = [str(results[f"warmup|{i}|signature"]) for i in range(count)]
        # a preset's export at its own size also has the photo signatures, warmed up after
        assert replayed in (list(SIGNATURES), [*SIGNATURES, *PIPELINE_SIGNATURES]), replayed
        assert all(str(results[f"warmup|{i}|model"]) == self.name for i in range(count))
        for i, signature in enumerate(SIGNATURES):
            assert str(results[f"warmup|{i}|model"]) == self.name
            embedding = results[f"warmup|{i}|embedding"]
            np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1.0, atol=1e-5)
            if signature in ("serving_default", "aggregate"):
                np.testing.assert_allclose(results[f"warmup|{i}|weights"].sum(-1), 1, atol=1e-5)
            else:
                assert results[f"warmup|{i}|frame_features"].shape == (1, self.frame_dim)

    def check_cli(self) -> None:
        """`saved_model_cli show --all` lists exactly the documented signatures."""
        assert self.cli.wait(timeout=600) == 0
        listed = parse_saved_model_cli((self.work / "saved_model_cli.txt").read_text())
        head = self.reference.model.head
        documented = documented_signatures(head.dim, self.frame_dim, head.output_dim)
        from keras_faceset.export.pipeline import PIPELINE_SIGNATURES

        for name, signature in documented.items():
            assert listed[name] == signature | {"method": "tensorflow/serving/predict"}, name
        extra = set(listed) - set(documented) - {"__saved_model_init_op"}
        assert extra in (set(), set(PIPELINE_SIGNATURES)), extra  # the photo signatures

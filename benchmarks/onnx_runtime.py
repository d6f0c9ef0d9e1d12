"""ONNX Runtime, the engine CPU deployers pick, against our own inference paths.

Rows, per backbone and batch size, timed in interleaved rounds in one process:

* ours folded float32 and folded ``mixed_bfloat16`` (`tf.function`), the paths `FaceEmbedder`
  runs, and the same functions frozen (variables turned into constants, so that oneDNN sees
  constant weights);
* ONNX Runtime float32 on the same network exported from our Keras model (``tf2onnx``) and,
  for InceptionResNetV1, exported from facenet-pytorch (``torch.onnx``);
* ONNX Runtime int8: static QDQ quantization of each float32 export (`quantize_static`,
  per-channel weights, activations calibrated on real LFW face chips);
* our own int8, `FaceEmbedder(precision="int8" | "int8-dynamic")`'s conversions
  (`convert_tflite`) of the folded float32 graph: TFLite full-integer post-training
  quantization (calibrated on the same chips) and dynamic-range quantization (int8 weights,
  activations quantized at run time), run by LiteRT's interpreter (XNNPack, 2 threads), with
  XNNPack's default and with its latest features (`experimental_default_delegate_latest_features`);
* the folded float32 graph converted to TFLite unquantized, run by the same interpreter;
* the eager peers (facenet-pytorch; dlib's own ``compute_face_descriptor``).

A 4096x4096 float32 matmul runs in the same rounds, by TensorFlow (oneDNN) and by ONNX Runtime
(MLAS): each row's ``gflop_per_s`` (FLOPs per image from the layer shapes, `benchmarks.flops`,
times its median images/s; int8 rows count the same operations) is also given as
``share_of_matmul_peak``, its share of the faster engine's matmul GFLOP/s (median over
rounds): how close a float32 row is to what this CPU's float32 arithmetic reaches.

After the timing, each row runs again alone in a fresh child process (batch 32, 3 calls) that
loads only what the row needs (TensorFlow and the Keras model for ours, only onnxruntime and
the .onnx file for ONNX Runtime, only LiteRT and the .tflite file for TFLite): its peak RSS
(VmHWM) is the row's ``peak_rss_mb``. File sizes of the exported models: ``model_file_mb``.

Our exports are of the pretrained presets' frame models (preprocessing included), so that
``--lfw`` can put each row's LFW View 2 accuracy beside its speed, on the same chips (those of
the chip cache). The facenet-pytorch export has random weights (its pretrained weights are a
download this benchmark does not make): its rows are for speed only.

    python -m benchmarks.onnx_runtime --chips CHIP_CACHE [--quick]   # speed
    python -m benchmarks.onnx_runtime --chips CHIP_CACHE --lfw       # accuracy per row
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.backbone import (
    SHARED,
    TORCH_THREADS,
    dlib_runner,
    facenet_pytorch_model,
    torch_runner,
)
from benchmarks.common import (
    MATMUL_SIZE,
    banner,
    interleaved,
    machine_info,
    matmul_runner,
    paired_ratio,
    peak_rss_mb,
    ratio_text,
    spread,
    table,
    write_result,
)
from benchmarks.precision import lfw_view2
from keras_faceset.files import atomic_path

PRESETS = {"facenet": "InceptionResNetV1", "dlib_resnet": "DlibResNet"}
ORT_THREADS = 2
TFLITE_THREADS = 2
RSS_BATCH = 32
OURS = {  # row name: the dtype of the folded model, and "frozen" for its frozen graph
    "ours folded float32": "float32",
    "ours folded mixed_bfloat16": "mixed_bfloat16",
    "ours folded float32, frozen graph": "float32 frozen",
    "ours folded mixed_bfloat16, frozen graph": "mixed_bfloat16 frozen",
}
TFLITE_INT8 = "ours int8 TFLite (XNNPack)"
TFLITE_INT8_LATEST = "ours int8 TFLite (XNNPack latest features)"
TFLITE_DYNAMIC = "ours int8-dynamic TFLite (XNNPack)"
TFLITE_DYNAMIC_LATEST = "ours int8-dynamic TFLite (XNNPack latest features)"
TFLITE_FLOAT32 = "ours float32 TFLite (XNNPack)"
TFLITE_FLOAT32_LATEST = "ours float32 TFLite (XNNPack latest features)"
ORT_FLOAT32 = "ONNX Runtime float32 (ours, tf2onnx)"
MATMULS = {
    f"matmul {MATMUL_SIZE}x{MATMUL_SIZE} float32 (TensorFlow)": "tf",
    f"matmul {MATMUL_SIZE}x{MATMUL_SIZE} float32 (ONNX Runtime)": "ort",
}
SIZES = {"facenet": 160, "dlib_resnet": 150}


def export_keras(fn, path: Path) -> Path:
    """`fn` (a `frame_function`) as ONNX through tf2onnx, once (kept at `path`)."""
    if not path.exists():
        import tf2onnx

        tmp = path.with_suffix(".tmp")
        tf2onnx.convert.from_function(
            fn, input_signature=fn.input_signature, opset=17, output_path=str(tmp)
        )
        os.replace(tmp, path)
    return path


def export_torch(model, path: Path) -> Path:
    """facenet-pytorch's InceptionResnetV1 as ONNX (TorchScript exporter), NCHW input."""
    if not path.exists():
        import torch

        x = torch.zeros(1, 3, 160, 160)
        tmp = path.with_suffix(".tmp")
        torch.onnx.export(
            model,
            (x,),
            str(tmp),
            dynamo=False,
            input_names=["chips"],
            output_names=["embeddings"],
            dynamic_axes={"chips": {0: "n"}, "embeddings": {0: "n"}},
            opset_version=17,
        )
        os.replace(tmp, path)
    return path


def quantize(float_path: Path, calibration: np.ndarray, path: Path) -> Path:
    """Static QDQ quantization of `float_path`: uint8 activations calibrated on `calibration`
    (MinMax), per-channel int8 weights. U8S8 is the pair ONNX Runtime's x86 kernels (VNNI) are
    fast at; int8 activations (S8S8) ran at 0.73x of float32 on a Xeon with AMX."""
    if not path.exists():
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Chips(CalibrationDataReader):
            def __init__(self, name: str):
                self.batches = iter(
                    [{name: calibration[i : i + 16]} for i in range(0, len(calibration), 16)]
                )

            def get_next(self):
                return next(self.batches, None)

        prepared = path.with_suffix(".prep.onnx")
        quant_pre_process(str(float_path), str(prepared))
        tmp = path.with_suffix(".tmp")
        quantize_static(
            str(prepared),
            str(tmp),
            Chips(input_name(float_path)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        prepared.unlink()
        os.replace(tmp, path)
    return path


def tflite_model(frame_model, precision: str, path: Path, chips: np.ndarray | None = None):
    """`FaceEmbedder(precision=...)`'s conversion (`convert_tflite`) of `frame_model` to a
    `precision` TFLite model ("int8" calibrated on `chips`), once (kept at `path`)."""
    from keras_faceset.models.quantize import convert_tflite

    if not path.exists():
        with atomic_path(path) as tmp:
            convert_tflite(frame_model, tmp, precision, chips)
    return path


def session(path: Path, threads: int = ORT_THREADS):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


class OrtFrameModel:
    """An ONNX Runtime session in `FaceEmbedder.frame_model`'s place (`predict_on_batch`)."""

    def __init__(self, path: Path):
        self.session = session(path)
        self.input = self.session.get_inputs()[0].name

    def predict_on_batch(self, chips: np.ndarray) -> dict:
        out = self.session.run(None, {self.input: np.asarray(chips, np.float32)})[0]
        return {"frame_embeddings": out}


def ort_runner(path: Path, x: np.ndarray):
    model = OrtFrameModel(path)
    return lambda: model.predict_on_batch(x)


def ort_matmul_runner(work: Path, size: int = MATMUL_SIZE):
    """`size x size` float32 matmul by ONNX Runtime (a one-node graph, `ORT_THREADS` threads)."""
    import onnx
    from onnx import TensorProto, helper

    path = work / f"matmul_{size}.onnx"
    if not path.exists():
        shape = [size, size]
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])],
            "matmul",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "ab"],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
        )
        with atomic_path(path) as tmp:
            onnx.save(helper.make_model(graph), str(tmp))
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    model = session(path)
    return lambda: model.run(None, {"a": a, "b": b})[0]


def tflite_runner(path: Path, x: np.ndarray, kind: str = "tflite"):
    model = TFLITE_KINDS[kind](path)
    return lambda: model.predict_on_batch(x)


def int8_frame_model(path: Path, latest_features: bool = False):
    """`FaceEmbedder(precision="int8" | "int8-dynamic")`'s `Int8FrameModel` on `TFLITE_THREADS`
    threads (it runs any TFLite model with float32 input and output, the float32 one too)."""
    from keras_faceset.models.quantize import Int8FrameModel

    return Int8FrameModel(path, threads=TFLITE_THREADS, latest_features=latest_features)


def latest_frame_model(path: Path):
    """`int8_frame_model` with XNNPack's latest features switched on."""
    return int8_frame_model(path, latest_features=True)


TFLITE_KINDS = {"tflite": int8_frame_model, "tflite_latest": latest_frame_model}


def tf_runner(fn, x: np.ndarray):
    import tensorflow as tf

    tensor = tf.constant(x)
    return lambda: fn(tensor).numpy()


def calibration_chips(embedder) -> np.ndarray:
    """`FaceEmbedder(precision="int8")`'s calibration images (`CALIBRATION_IMAGES` seeded LFW
    View 1 DevTrain images) cropped as the preset crops them."""
    from keras_faceset.embedder import calibration_images

    os.environ.setdefault("KERAS_FACESET_DATA", str(SHARED / "data" / "lfw"))
    return embedder.chips(calibration_images())


def models_for(preset: str, work: Path, chip_cache: str) -> dict:
    """{row name: ("tf", fn) | ("ort", path) | ("torch"|"dlib", None)} for one preset, and the
    embedder whose chips they share."""
    from keras_faceset.embedder import FaceEmbedder

    embedder = FaceEmbedder(preset, chip_cache=chip_cache)
    size = embedder.preset.input_size
    rows = {name: ("tf", ours_function(embedder.task, spec)) for name, spec in OURS.items()}
    exported = export_keras(rows["ours folded float32"][1], work / f"{preset}_keras.onnx")
    calibration = calibration_chips(embedder).astype(np.float32)
    rows[ORT_FLOAT32] = ("ort", exported)
    rows["ONNX Runtime int8 QDQ (ours, tf2onnx)"] = (
        "ort",
        quantize(exported, calibration, work / f"{preset}_keras_int8.onnx"),
    )
    folded = embedder.frame_model  # batch norm folded, float32
    int8 = tflite_model(folded, "int8", work / f"{preset}_int8.tflite", calibration)
    rows[TFLITE_INT8] = ("tflite", int8)
    rows[TFLITE_INT8_LATEST] = ("tflite_latest", int8)
    dynamic = tflite_model(folded, "int8-dynamic", work / f"{preset}_dynamic.tflite")
    rows[TFLITE_DYNAMIC] = ("tflite", dynamic)
    rows[TFLITE_DYNAMIC_LATEST] = ("tflite_latest", dynamic)
    float32 = tflite_model(folded, "float32", work / f"{preset}_float32.tflite")
    rows[TFLITE_FLOAT32] = ("tflite", float32)
    rows[TFLITE_FLOAT32_LATEST] = ("tflite_latest", float32)
    if preset == "facenet":
        torch_path = export_torch(facenet_pytorch_model(), work / "facenet_pytorch.onnx")
        standardised = ((calibration - 127.5) / 128.0).transpose(0, 3, 1, 2).copy()
        rows["ONNX Runtime float32 (facenet-pytorch export)"] = ("ort_nchw", torch_path)
        rows["ONNX Runtime int8 QDQ (facenet-pytorch export)"] = (
            "ort_nchw",
            quantize(torch_path, standardised, work / "facenet_pytorch_int8.onnx"),
        )
        rows["facenet-pytorch float32 eager"] = ("torch", None)
    else:
        rows["dlib compute_face_descriptor"] = ("dlib", None)
    from benchmarks.flops import model_flops

    flops = model_flops(folded)
    return {"embedder": embedder, "size": size, "rows": rows, "flops": flops}


def ours_function(task, spec: str):
    """The task's frame model folded (`fold_batch_norm`) as a `frame_function`; `spec` is an
    `OURS` value: the dtype, then "frozen" for the function's graph with its variables turned
    into constants (`convert_variables_to_constants_v2`), so that oneDNN sees constant weights."""
    from keras_faceset.models.fold import fold_batch_norm
    from keras_faceset.models.quantize import frame_function

    dtype, *frozen = spec.split()
    folded = fold_batch_norm(task.frame_model, dtype=None if dtype == "float32" else dtype)
    fn = frame_function(folded)
    if not frozen:
        return fn
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    constant = convert_variables_to_constants_v2(fn.get_concrete_function())
    return lambda chips: constant(chips)[0]  # the frozen function returns a list of outputs


def peak_rss(prepared: dict) -> dict:
    """{(preset, row): peak RSS in MiB} of each row run alone in a fresh child process."""
    peaks = {}
    for preset, entry in prepared.items():
        for name, (kind, model) in entry["rows"].items():
            spec = OURS[name] if kind == "tf" else str(model or "-")
            command = [sys.executable, "-m", "benchmarks.onnx_runtime", "--rss-child"]
            done = subprocess.run(
                [*command, kind, preset, spec], capture_output=True, text=True, check=True
            )
            peaks[preset, name] = json.loads(done.stdout.splitlines()[-1])["peak_rss_mb"]
            print(f"  {preset} {name}: peak RSS {peaks[preset, name]:.0f} MiB", flush=True)
    return peaks


def rss_child(kind: str, preset: str, spec: str) -> None:
    """One row alone (`peak_rss`'s child): load it, run `RSS_BATCH` chips 3 times, print its
    peak RSS as JSON."""
    if kind == "tf":
        from keras_faceset import zoo

        model = ours_function(zoo.load(preset, form="task"), spec)
    else:
        model = None if spec == "-" else Path(spec)
    torch_model = facenet_pytorch_model() if kind == "torch" else None
    run = runner(kind, model, RSS_BATCH, SIZES[preset], torch_model)
    for _ in range(3):
        run()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def runner(kind: str, model, batch: int, size: int, torch_model):
    x = np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3)).astype(np.float32)
    if kind == "tf":
        return tf_runner(model, x)
    if kind == "ort":
        return ort_runner(model, x)
    if kind in TFLITE_KINDS:
        return tflite_runner(model, x, kind)
    if kind == "ort_nchw":
        return ort_runner(model, ((x - 127.5) / 128.0).transpose(0, 3, 1, 2).copy())
    if kind == "torch":
        return torch_runner(torch_model, batch)
    return dlib_runner(batch)


def speed(prepared: dict, batches, repeats: int, work: Path) -> list[dict]:
    torch_model = facenet_pytorch_model()
    rows = []
    for preset, entry in prepared.items():
        for batch in batches:
            runners = {
                name: runner(kind, model, batch, entry["size"], torch_model)
                for name, (kind, model) in entry["rows"].items()
            }
            for name, engine in MATMULS.items():
                runners[name] = matmul_runner() if engine == "tf" else ort_matmul_runner(work)
            stats = interleaved(runners, repeats, items=batch)
            matmuls = {
                name: statistics.median(
                    2 * MATMUL_SIZE**3 / s / 1e9 for s in stats.pop(name)["seconds"]
                )
                for name in MATMULS
            }
            peak = max(matmuls.values())
            best_ort = max(
                (name for name in stats if name.startswith("ONNX Runtime")),
                key=lambda name: stats[name]["median_rate"],
            )
            for name, row in stats.items():
                rows.append(
                    {
                        "preset": preset,
                        "model": PRESETS[preset],
                        "row": name,
                        "batch": batch,
                        **row,
                        "vs_ort_float32": paired_ratio(row, stats[ORT_FLOAT32]),
                        "vs_best_ort": paired_ratio(row, stats[best_ort]),
                        "best_ort": best_ort,
                        "gflop_per_s": entry["flops"] * row["median_rate"] / 1e9,
                        "matmul_peak_gflop_per_s": peak,
                        "matmul_gflop_per_s": matmuls,
                        "share_of_matmul_peak": entry["flops"] * row["median_rate"] / 1e9 / peak,
                    }
                )
            print(f"  {preset} batch {batch} done", flush=True)
    return rows


def lfw_accuracy(prepared: dict, only=None) -> list[dict]:
    """LFW View 2 of every pretrained row (ours and our exports) on the chip cache's chips; with
    `only`, of the rows whose name contains one of its strings."""
    rows = []
    for preset, entry in prepared.items():
        embedder = entry["embedder"]
        frame_models = {"tf": TfFrameModel, "ort": OrtFrameModel, **TFLITE_KINDS}
        for name, (kind, model) in entry["rows"].items():
            if kind not in frame_models or (only and not any(o in name for o in only)):
                continue
            embedder.frame_model = frame_models[kind](model)
            rows.append({"preset": preset, "row": name, **lfw_view2(embedder)})
            print(f"  {preset} {name}: {100 * rows[-1]['accuracy']:.2f} %", flush=True)
    return rows


class TfFrameModel:
    """A `frame_function` in `FaceEmbedder.frame_model`'s place."""

    def __init__(self, fn):
        self.fn = fn

    def predict_on_batch(self, chips: np.ndarray) -> dict:
        import tensorflow as tf

        return {"frame_embeddings": self.fn(tf.constant(chips, tf.float32)).numpy()}


def main(chip_cache: str, work: Path, quick: bool, presets, only=None, batches=None) -> dict:
    from keras_faceset.embedder import CALIBRATION_IMAGES

    machine = machine_info(
        ort_threads=ORT_THREADS,
        torch_threads=TORCH_THREADS,
        tflite_threads=TFLITE_THREADS,
        **versions(),
    )
    banner("ONNX Runtime vs ours", machine)
    prepared = prepare(presets, work, chip_cache)
    if only:  # the rows asked for, and the float32 export every ratio is paired with
        for entry in prepared.values():
            entry["rows"] = {
                name: row
                for name, row in entry["rows"].items()
                if name == ORT_FLOAT32 or any(o in name for o in only)
            }
    batches = batches or ((8,) if quick else (8, 32))
    rows = speed(prepared, batches, 3 if quick else 5, work)
    peaks = peak_rss(prepared)
    for row in rows:
        row["peak_rss_mb"] = peaks[row["preset"], row["row"]]
    lines = [
        [
            r["model"],
            r["row"],
            r["batch"],
            spread(r),
            ratio_text(r["vs_ort_float32"]),
            ratio_text(r["vs_best_ort"]),
            f"{100 * r['share_of_matmul_peak']:.0f}%",
            f"{r['cores_busy']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        for r in rows
    ]
    headers = ["model", "path", "batch", "images/s median [min-max]", "vs ORT float32"]
    headers += ["vs best ORT", "of matmul peak", "cores busy", "peak RSS MiB"]
    print(table(headers, lines))
    for preset, entry in prepared.items():
        matmuls = {r["batch"]: r["matmul_gflop_per_s"] for r in rows if r["preset"] == preset}
        print(f"{preset}: {entry['flops'] / 1e9:.2f} GFLOP per image; matmul GFLOP/s {matmuls}")
    sizes = file_sizes(prepared)
    print("model files (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    path = write_result(
        "onnx_runtime" + rows_suffix(only),
        machine,
        rows=rows,
        model_file_mb=sizes,
        benchmark_peak_rss_mb=peak_rss_mb(),
        notes="images/s = batch / wall seconds per call, median [min-max] over interleaved "
        "rounds (each sample >= 1 s); vs_* = the other row's seconds / own seconds per round. "
        f"ONNX Runtime: CPUExecutionProvider, {ORT_THREADS} intra-op threads, all graph "
        "optimisations; int8 = quantize_static QDQ, per-channel int8 weights, uint8 "
        f"activations calibrated (MinMax) on {CALIBRATION_IMAGES} LFW DevTrain chips. "
        "TFLite int8: full-integer post-training quantization calibrated on the same chips, "
        f"LiteRT interpreter, XNNPack, {TFLITE_THREADS} threads; 'latest features': "
        "experimental_default_delegate_latest_features=True; dynamic-range: int8 weights, "
        "activations quantized at run time; float32 TFLite: the same graph unquantized. "
        "peak_rss_mb: the row alone "
        f"in a fresh process (VmHWM after {RSS_BATCH}-chip calls). Ours "
        "and our exports carry the pretrained weights and the preset's preprocessing; the "
        "facenet-pytorch export has random weights (speed only). Random pixels. "
        "share_of_matmul_peak: gflop_per_s (FLOPs per image x median images/s) over the median "
        f"GFLOP/s of a {MATMUL_SIZE}x{MATMUL_SIZE} float32 matmul timed in the same rounds by "
        "TensorFlow and by ONNX Runtime, whichever is faster (both in matmul_gflop_per_s).",
    )
    print(f"wrote {path}")
    return {"rows": rows}


def main_lfw(chip_cache: str, work: Path, presets, only=None) -> dict:
    machine = machine_info(
        ort_threads=ORT_THREADS, chip_cache=chip_cache, tflite_threads=TFLITE_THREADS, **versions()
    )
    banner("ONNX Runtime vs ours: LFW View 2 per row", machine)
    accuracy = lfw_accuracy(prepare(presets, work, chip_cache), only)
    lines = [
        [a["preset"], a["row"], f"{100 * a['accuracy']:.2f} +/- {100 * a['std']:.2f}"]
        for a in accuracy
    ]
    print(table(["preset", "path", "LFW View 2 %"], lines))
    name = "onnx_runtime_lfw" + rows_suffix(only)
    path = write_result(
        name,
        machine,
        rows=accuracy,
        notes="LFW View 2 (10-fold, cosine, no flip) of each pretrained row, the preset's crop "
        "read from the chip cache; seconds include reading the cache.",
    )
    print(f"wrote {path}")
    return {"rows": accuracy}


def rows_suffix(only) -> str:
    """The results file's suffix for `--rows`: "_" and each string in lower case, each run of
    other characters than letters and digits as one "_" ("TFLite (XNNPack)": "_tflite_xnnpack")."""
    return "".join("_" + re.sub(r"[^a-z0-9]+", "_", o.lower()).strip("_") for o in only or ())


def versions() -> dict:
    """The versions of the packages behind the ONNX Runtime and TFLite rows."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("onnxruntime", "onnx", "tf2onnx", "ai-edge-litert"):
        try:
            found[f"{package.replace('-', '_')}_version"] = version(package)
        except PackageNotFoundError:
            found[f"{package.replace('-', '_')}_version"] = None
    return found


def prepare(presets, work: Path, chip_cache: str) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    return {preset: models_for(preset, work, chip_cache) for preset in presets}


def file_sizes(prepared: dict) -> dict:
    """{file name: MiB} of the rows' model files (ONNX, TFLite)."""
    files = [m for e in prepared.values() for _, m in e["rows"].values() if isinstance(m, Path)]
    return {path.name: path.stat().st_size / 2**20 for path in files}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss-child"]:
        rss_child(*sys.argv[2:5])
        sys.exit()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chips", required=True, help="chip cache with the LFW crops")
    parser.add_argument("--work", default="onnx-models", help="folder for the ONNX files")
    parser.add_argument("--lfw", action="store_true", help="LFW View 2 per row instead of speed")
    parser.add_argument("--quick", action="store_true", help="batch 8 only, fewer rounds")
    parser.add_argument(
        "--rows",
        nargs="+",
        help="only the rows whose name has one of these (and ORT float32, the reference), "
        "written to onnx_runtime[_lfw]_<rows>.json",
    )
    parser.add_argument("--batches", nargs="+", type=int, help="batch sizes (default 8 32)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    if args.lfw:
        main_lfw(args.chips, Path(args.work), args.presets, args.rows)
    else:
        main(args.chips, Path(args.work), args.quick, args.presets, args.rows, args.batches)

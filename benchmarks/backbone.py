"""Backbone throughput (images/s): our InceptionResNetV1 vs facenet-pytorch's InceptionResnetV1,
our DlibResNet vs dlib's own `compute_face_descriptor`, plain and batch-norm-folded, with and
without XLA, folded in bfloat16, and a thread-setting probe (one child process per TF threading
setting)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

from benchmarks.common import (
    banner,
    cli,
    interleaved,
    machine_info,
    paired_ratio,
    ratio_text,
    spread,
    summary,
    table,
    timings,
    write_result,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KERAS_FACESET_SHARED", REPO.parent / "shared"))
DLIB_DAT = SHARED / "weights" / "dlib_face_recognition_resnet_model_v1.dat"
TORCH_THREADS = 2


def set_tf_threads(intra: int, inter: int) -> None:
    """TF thread pools (0 = TF's default, one thread per core); only before TF's first op."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def facenet_pytorch_model():
    """facenet-pytorch's InceptionResnetV1 (random weights, eval mode).

    Its package `__init__` imports MTCNN, which needs torchvision (not installed: PyPI's
    torchvision does not load beside the CPU torch wheel), so only the model module is loaded:
    a bare package object stands in for `facenet_pytorch` before the submodule import."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    if "facenet_pytorch" not in sys.modules:
        spec = importlib.util.find_spec("facenet_pytorch")
        if spec is None:
            raise ImportError("facenet-pytorch is not installed (pip install --no-deps ...)")
        package = types.ModuleType("facenet_pytorch")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["facenet_pytorch"] = package
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    torch.manual_seed(0)
    return InceptionResnetV1(pretrained=None, classify=False).eval()


def torch_runner(model, batch: int, threads: int = TORCH_THREADS, channels_last: bool = False):
    """facenet-pytorch eager under `torch.inference_mode()` with `threads` intra-op threads
    (set at every call: the rows share one process) on NCHW or channels-last tensors."""
    import torch

    x = torch.from_numpy(images(batch, 160, np.float32).transpose(0, 3, 1, 2).copy())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = x.to(memory_format=memory_format)

    def run():
        torch.set_num_threads(threads)
        model.to(memory_format=memory_format)
        with torch.inference_mode():
            return model(x).numpy()

    return run


def keras_runner(model, batch: int, size: int, path: str):
    """A no-argument call of `model` on one fixed batch by one of the inference paths:

    * `predict_on_batch`: Keras's own (NumPy in, NumPy out);
    * `tf.function`: `model(x, training=False)` traced once on a tf.Tensor;
    * `xla`: the same with `jit_compile=True`."""
    import tensorflow as tf

    x = images(batch, size, np.float32)
    if path == "predict_on_batch":
        return lambda: model.predict_on_batch(x)
    fn = tf.function(lambda t: model(t, training=False), jit_compile=path == "xla")
    tensor = tf.constant(x)
    return lambda: fn(tensor).numpy()


def images(batch: int, size: int, dtype) -> np.ndarray:
    """A seeded batch of random pixels 0..255 (speed does not depend on content)."""
    return np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3)).astype(dtype)


def dlib_runner(batch: int):
    import dlib

    model = dlib.face_recognition_model_v1(str(DLIB_DAT))
    chips = list(images(batch, 150, np.uint8))
    return lambda: np.asarray(model.compute_face_descriptor(chips))


BF16 = "mixed_bfloat16"


def build_models(with_dlib_weights: bool = True) -> dict:
    """Our backbones, plain, folded, and folded computing in bfloat16 (`BF16`).
    InceptionResNetV1 has random weights and no preprocessing layer (facenet-pytorch's model
    takes standardised images too); its batch norms get random moving statistics. DlibResNet
    gets the real dlib weights when the .dat is there (so the dlib rows also check parity)."""
    import keras

    from keras_faceset.models import DlibResNet, InceptionResNetV1
    from keras_faceset.models.fold import fold_batch_norm

    keras.utils.set_random_seed(0)
    irv1 = InceptionResNetV1(include_preprocessing=False)
    rng = np.random.default_rng(0)
    for layer in irv1.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 2.0, variance.shape),
                ]
            )
    if with_dlib_weights and DLIB_DAT.exists():
        from keras_faceset.models.convert import convert_dlib_dat

        dlib_model = convert_dlib_dat(DLIB_DAT)
    else:
        dlib_model = DlibResNet()
    return {
        "irv1": irv1,
        "irv1_folded": fold_batch_norm(irv1),
        "irv1_bf16": fold_batch_norm(irv1, dtype=BF16),
        "dlib": dlib_model,
        "dlib_folded": fold_batch_norm(dlib_model),
        "dlib_bf16": fold_batch_norm(dlib_model, dtype=BF16),
    }


def measure(run, batch: int, repeats: int) -> dict:
    seconds, cores = timings(run, repeats=repeats, warmup=2, min_seconds=1.0)
    return summary(seconds, items=batch, cores=cores)


IRV1_PEER = "facenet-pytorch, torch eager"
IRV1_PEER_1T = "facenet-pytorch, 1 thread, channels_last"
DLIB_PEER = "dlib compute_face_descriptor"
FOLDED_BF16 = f"ours folded {BF16}, tf.function"


def irv1_runners(models: dict, batch: int, torch_model) -> dict:
    """InceptionResNetV1 candidates at one batch size, the peer last."""
    return {
        "ours plain, predict_on_batch": keras_runner(
            models["irv1"], batch, 160, "predict_on_batch"
        ),
        PLAIN: keras_runner(models["irv1"], batch, 160, "tf.function"),
        "ours folded, tf.function": keras_runner(models["irv1_folded"], batch, 160, "tf.function"),
        "ours folded, XLA": keras_runner(models["irv1_folded"], batch, 160, "xla"),
        FOLDED_BF16: keras_runner(models["irv1_bf16"], batch, 160, "tf.function"),
        IRV1_PEER: torch_runner(torch_model, batch),
        IRV1_PEER_1T: torch_runner(torch_model, batch, threads=1, channels_last=True),
    }


def dlib_runners(models: dict, batch: int) -> dict:
    return {
        PLAIN: keras_runner(models["dlib"], batch, 150, "tf.function"),
        "ours folded, tf.function": keras_runner(models["dlib_folded"], batch, 150, "tf.function"),
        "ours folded, XLA": keras_runner(models["dlib_folded"], batch, 150, "xla"),
        FOLDED_BF16: keras_runner(models["dlib_bf16"], batch, 150, "tf.function"),
        DLIB_PEER: dlib_runner(batch),
    }


PLAIN = "ours plain, tf.function"


def compare(model: str, runners: dict, peers: dict, batch: int, repeats: int) -> list[dict]:
    """Rows of one interleaved comparison; `row["vs"][key]` is the paired speed ratio to the
    row `peers[key]` (> 1: faster than it)."""
    stats = interleaved(runners, repeats, items=batch)
    return [
        {
            "model": model,
            "row": name,
            "batch": batch,
            **row,
            "vs": {key: paired_ratio(row, stats[peer]) for key, peer in peers.items()},
        }
        for name, row in stats.items()
    ]


def dlib_parity(models: dict) -> float | None:
    """Max |ours - dlib| over 8 chips (real weights only), for the record."""
    if not DLIB_DAT.exists():
        return None
    ours = models["dlib_folded"].predict_on_batch(images(8, 150, np.float32))
    return float(np.abs(np.asarray(ours) - dlib_runner(8)()).max())


def thread_probe(batch: int, repeats: int, intra: int, inter: int) -> dict:
    """Child process at one TF threading setting: folded InceptionResNetV1, folded DlibResNet
    (tf.function) and dlib itself, interleaved."""
    set_tf_threads(intra, inter)
    models = build_models()
    stats = interleaved(
        {
            "irv1_folded": keras_runner(models["irv1_folded"], batch, 160, "tf.function"),
            "dlib_folded": keras_runner(models["dlib_folded"], batch, 150, "tf.function"),
            "dlib": dlib_runner(batch),
        },
        repeats,
        items=batch,
    )
    return {"intra_op": intra, "inter_op": inter, **stats}


def run_thread_probes(batch: int, repeats: int) -> list[dict]:
    """Each setting in two child processes, in the order A B C C B A (load drift evens out);
    the two children's samples are pooled."""
    settings = ((0, 0), (2, 1), (1, 1))
    samples: dict = {}
    for intra, inter in settings + settings[::-1]:
        command = [
            sys.executable,
            "-m",
            "benchmarks.backbone",
            "--probe",
            str(intra),
            str(inter),
            "--batch",
            str(batch),
            "--repeats",
            str(max(1, repeats // 2)),
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        for name, stats in json.loads(out.strip().splitlines()[-1]).items():
            if isinstance(stats, dict):
                samples.setdefault((intra, inter), {}).setdefault(name, []).extend(stats["seconds"])
    results = []
    for (intra, inter), by_name in samples.items():
        row = {"intra_op": intra, "inter_op": inter}
        for name, seconds in by_name.items():
            row[name] = {**summary(seconds, items=batch), "seconds": seconds}
        row["dlib_folded_vs_dlib"] = paired_ratio(row["dlib_folded"], row["dlib"])
        results.append(row)
    return results


def main(quick: bool = False, full: bool = False) -> dict:
    machine = machine_info(torch_threads=TORCH_THREADS, tf_threads="default (0 = per core)")
    banner("backbone throughput", machine)
    batches = (1, 32) if quick else (1, 8, 32, 128) if full else (1, 8, 32)
    repeats = 3 if quick else 5
    models = build_models()
    torch_model = facenet_pytorch_model()
    rows = []
    for batch in batches:
        rows += compare(
            "InceptionResNetV1",
            irv1_runners(models, batch, torch_model),
            {"peer": IRV1_PEER, "peer_1_thread": IRV1_PEER_1T, "plain": PLAIN},
            batch,
            repeats,
        )
        rows += compare(
            "DlibResNet",
            dlib_runners(models, batch),
            {"peer": DLIB_PEER, "peer_1_thread": DLIB_PEER, "plain": PLAIN},
            batch,
            repeats,
        )
        print(f"  batch {batch} done", flush=True)
    parity = dlib_parity(models)
    probes = run_thread_probes(32, repeats)

    lines = [
        [
            row["model"],
            row["row"],
            row["batch"],
            spread(row),
            ratio_text(row["vs"]["peer"]),
            ratio_text(row["vs"]["peer_1_thread"]),
            ratio_text(row["vs"]["plain"]),
            f"{row['cores_busy']:.1f}",
        ]
        for row in rows
    ]
    print(
        table(
            [
                "model",
                "path",
                "batch",
                "images/s median [min-max]",
                "vs peer",
                "vs 1-thread peer",
                "vs ours plain",
                "cores busy",
            ],
            lines,
        )
    )
    print(f"dlib parity (folded ours vs dlib, max abs over 8 chips): {parity}")
    probe_lines = [
        [
            p["intra_op"],
            p["inter_op"],
            spread(p["irv1_folded"]),
            spread(p["dlib_folded"]),
            spread(p["dlib"]),
            ratio_text(p["dlib_folded_vs_dlib"]),
        ]
        for p in probes
    ]
    print("TF threading at batch 32 (child processes, folded models, tf.function):")
    print(
        table(
            [
                "intra_op",
                "inter_op",
                "InceptionResNetV1 images/s",
                "DlibResNet images/s",
                "dlib images/s",
                "DlibResNet vs dlib",
            ],
            probe_lines,
        )
    )
    path = write_result(
        "backbone",
        machine,
        rows=rows,
        dlib_parity_max_abs=parity,
        thread_probes=probes,
        notes="images/s = batch / wall seconds per call, median and [min-max] "
        "over rounds; candidates of one model and batch are timed in "
        "interleaved rounds, each sample looping >= 1 s. vs[key] = other "
        "row's seconds / own seconds per round, median [min-max]: peer = "
        "facenet-pytorch with 2 torch threads (InceptionResNetV1) or "
        "dlib (DlibResNet); peer_1_thread = facenet-pytorch with 1 "
        "thread, channels_last (dlib again for DlibResNet); plain = ours "
        "unfolded by tf.function. cores busy = process CPU time / wall.",
    )
    print(f"wrote {path}")
    return {"rows": rows, "probes": probes}


if __name__ == "__main__":
    parser = cli()
    parser.add_argument("--probe", nargs=2, type=int, metavar=("INTRA", "INTER"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(thread_probe(args.batch, args.repeats, *args.probe)))
    else:
        main(quick=args.quick, full=args.full)

"""Serving: latency of the exported SavedModel (the graph TF Serving runs, loaded in-process
with `tf.saved_model.load`, so no network is timed) against the in-process Keras model doing
the same work, per request: one image (`embed_images`), a set of 16 frames
(`serving_default`), and client-side batches of 32 images. DlibResNet, random weights (speed
does not depend on them), batch norm folded into the convolutions on both sides, as the export
does by default."""

from __future__ import annotations

import statistics
import tempfile

import numpy as np

from benchmarks.backbone import images
from benchmarks.common import banner, cli, machine_info, table, timings, write_result

SET_SIZE = 16


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def runners(backbone, loaded) -> dict[str, tuple]:
    """{request: (saved_model_call, keras_call, items)} on fixed seeded inputs; `backbone` is
    the folded Keras backbone."""
    import keras
    import tensorflow as tf

    from keras_faceset.models import MeanSet

    single = tf.constant(images(1, 150, np.uint8))
    batch = tf.constant(images(32, 150, np.uint8))
    frames = tf.constant(images(SET_SIZE, 150, np.uint8)[None])
    mask = tf.ones((1, SET_SIZE), tf.bool)
    set_model = MeanSet.from_backbone(backbone)  # mean of normalised frames, as exported

    @tf.function
    def embed(x):
        return keras.ops.normalize(backbone(tf.cast(x, "float32"), training=False), axis=-1)

    @tf.function
    def embed_set(x, m):
        return set_model({"images": tf.cast(x, "float32"), "mask": m}, training=False)

    embed_sig = loaded.signatures["embed_images"]
    set_sig = loaded.signatures["serving_default"]
    return {
        "1 image (embed_images)": (
            lambda: embed_sig(images=single)["embedding"].numpy(),
            lambda: embed(single).numpy(),
            1,
        ),
        f"set of {SET_SIZE} frames (serving_default)": (
            lambda: set_sig(images=frames, mask=mask)["embedding"].numpy(),
            lambda: embed_set(frames, mask)["embedding"].numpy(),
            SET_SIZE,
        ),
        "batch of 32 images (embed_images)": (
            lambda: embed_sig(images=batch)["embedding"].numpy(),
            lambda: embed(batch).numpy(),
            32,
        ),
    }


def main(quick: bool = False, full: bool = False) -> dict:
    import tensorflow as tf

    from keras_faceset.export import ExportSpec, export_saved_model
    from keras_faceset.models import DlibResNet, fold_batch_norm

    machine = machine_info(saved_model_path="tf.saved_model.load, signatures called in-process")
    banner("serving", machine)
    requests = 15 if quick else 40
    backbone = DlibResNet()
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        spec = ExportSpec.from_model(backbone, "dlib_resnet")
        loaded = tf.saved_model.load(str(export_saved_model(spec, tmp, warmup_requests=False)))
        folded = fold_batch_norm(backbone)
        for name, (served, in_process, items) in runners(folded, loaded).items():
            samples = {}
            for _ in range(2):  # alternate the two, so load changes hit both
                for label, fn in (("saved_model", served), ("keras", in_process)):
                    seconds, _ = timings(fn, repeats=requests // 2, warmup=2)
                    samples.setdefault(label, []).extend(seconds)
            stats = {
                label: {
                    "p50_ms": 1e3 * statistics.median(s),
                    "p99_ms": 1e3 * percentile(s, 99),
                    "items_per_s": items / statistics.median(s),
                    "requests": len(s),
                }
                for label, s in samples.items()
            }
            stats["p50_ratio_saved_model_over_keras"] = (
                stats["saved_model"]["p50_ms"] / stats["keras"]["p50_ms"]
            )
            results[name] = stats
            rows.append(
                [
                    name,
                    stats["saved_model"]["p50_ms"],
                    stats["saved_model"]["p99_ms"],
                    stats["keras"]["p50_ms"],
                    stats["keras"]["p99_ms"],
                    stats["p50_ratio_saved_model_over_keras"],
                    stats["saved_model"]["items_per_s"],
                ]
            )
    print(
        table(
            [
                "request",
                "SavedModel p50 ms",
                "p99 ms",
                "in-process Keras p50 ms",
                "p99 ms",
                "p50 ratio",
                "SavedModel images/s",
            ],
            rows,
        )
    )
    write_result("serving", machine, results=results)
    return results


if __name__ == "__main__":
    main(**vars(cli().parse_args()))

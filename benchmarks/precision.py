"""bfloat16 inference: images/s of the folded backbones computing in float32, in
``mixed_bfloat16`` (float32 weights cast at each call) and in ``bfloat16`` (`fold_batch_norm`'s
`dtype`), interleaved in one process, with the paired ratio to float32 and the embeddings'
worst cosine to float32's.

``--lfw CHIP_CACHE`` instead runs LFW View 2 (``keras_faceset.eval.evaluate_lfw``, the preset's
crop from the chip cache) with the pretrained weights folded in float32 and in
``mixed_bfloat16``, so that the accuracy cost is measured on the same chips."""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.backbone import SHARED, build_models, images
from benchmarks.common import (
    banner,
    interleaved,
    machine_info,
    paired_ratio,
    ratio_text,
    spread,
    table,
    write_result,
)

DTYPES = ("float32", "mixed_bfloat16", "bfloat16")
MODELS = {"InceptionResNetV1": ("irv1", 160), "DlibResNet": ("dlib", 150)}
LFW_PRESETS = ("facenet", "dlib_resnet")


def fold(model, dtype: str):
    from keras_faceset.models.fold import fold_batch_norm

    return fold_batch_norm(model, dtype=None if dtype == "float32" else dtype)


def throughput(quick: bool, full: bool) -> dict:
    import tensorflow as tf

    machine = machine_info()
    banner("bfloat16 inference", machine)
    batches = (1, 32) if quick else (1, 8, 32, 128) if full else (1, 8, 32)
    repeats = 3 if quick else 5
    models = build_models()
    rows = []
    for name, (key, size) in MODELS.items():
        variants = {dtype: fold(models[key], dtype) for dtype in DTYPES}
        for batch in batches:
            x = tf.constant(images(batch, size, np.float32))
            runners, outputs = {}, {}
            for dtype, model in variants.items():
                fn = tf.function(lambda t, model=model: model(t, training=False))
                outputs[dtype] = fn(x).numpy()
                runners[dtype] = lambda fn=fn, x=x: fn(x).numpy()
            stats = interleaved(runners, repeats=repeats, items=batch)
            reference = outputs["float32"] / np.linalg.norm(
                outputs["float32"], axis=1, keepdims=True
            )
            for dtype, s in stats.items():
                unit = outputs[dtype] / np.linalg.norm(outputs[dtype], axis=1, keepdims=True)
                rows.append(
                    {
                        "model": name,
                        "dtype": dtype,
                        "batch": batch,
                        **s,
                        "vs_float32": paired_ratio(s, stats["float32"]),
                        "min_cosine_to_float32": float((unit * reference).sum(1).min()),
                    }
                )
            print(f"  {name} batch {batch} done", flush=True)
    lines = [
        [
            r["model"],
            r["dtype"],
            r["batch"],
            spread(r),
            ratio_text(r["vs_float32"]),
            f"{r['min_cosine_to_float32']:.6f}",
            f"{r['cores_busy']:.1f}",
        ]
        for r in rows
    ]
    print(
        table(
            [
                "model",
                "dtype",
                "batch",
                "images/s median [min-max]",
                "vs float32",
                "min cosine to float32",
                "cores busy",
            ],
            lines,
        )
    )
    path = write_result(
        "precision",
        machine,
        rows=rows,
        notes="Folded backbones (fold_batch_norm(model, dtype=...)), tf.function, random "
        "pixels; InceptionResNetV1 random weights with random BN statistics, DlibResNet "
        "dlib's weights. Interleaved rounds, each sample >= 1 s; vs_float32 = float32 "
        "seconds / own seconds per round, median [min-max]. min_cosine_to_float32 over "
        "the batch's embeddings.",
    )
    print(f"wrote {path}")
    return {"rows": rows}


def lfw_view2(embedder) -> dict:
    """LFW View 2 of `embedder` (its `frame_model` as set): accuracy, std over folds, AUC,
    detector fallbacks and wall seconds (reading the chip cache included)."""
    from keras_faceset.eval.lfw import evaluate_lfw

    start = time.perf_counter()
    summary, _ = evaluate_lfw(embedder, SHARED / "data" / "lfw", view="view2")
    result = summary.iloc[0]
    return {
        "accuracy": float(result["accuracy"]),
        "std": float(result["std"]),
        "auc": float(result["auc"]),
        "fallbacks": embedder.fallbacks,
        "seconds": time.perf_counter() - start,
    }


def lfw(chip_cache: str, presets=LFW_PRESETS) -> dict:
    from keras_faceset.embedder import FaceEmbedder

    machine = machine_info(chip_cache=chip_cache)
    banner("bfloat16 LFW View 2", machine)
    rows = []
    for preset in presets:
        embedder = FaceEmbedder(preset, chip_cache=chip_cache)
        backbone = embedder.task.backbone
        for dtype in ("float32", "mixed_bfloat16"):
            embedder.frame_model = fold(backbone, dtype)
            rows.append({"preset": preset, "dtype": dtype, **lfw_view2(embedder)})
            print(f"  {preset} {dtype}: {rows[-1]['accuracy']:.4f}", flush=True)
    lines = [
        [
            r["preset"],
            r["dtype"],
            f"{100 * r['accuracy']:.2f} +/- {100 * r['std']:.2f}",
            f"{r['auc']:.5f}",
            f"{r['seconds']:.0f}",
        ]
        for r in rows
    ]
    print(table(["preset", "dtype", "View 2 accuracy %", "AUC", "seconds"], lines))
    path = write_result(
        "precision_lfw",
        machine,
        rows=rows,
        notes="LFW View 2 (10-fold, cosine) of the preset's pretrained backbone folded with "
        "fold_batch_norm(model, dtype), the preset's crop read from the chip cache, "
        "no flip; seconds include reading the cache.",
    )
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--full", action="store_true", help="also batch 128")
    parser.add_argument("--lfw", metavar="CHIP_CACHE", help="LFW View 2 accuracy instead")
    parser.add_argument("--presets", nargs="+", default=list(LFW_PRESETS))
    args = parser.parse_args()
    if args.lfw:
        lfw(args.lfw, args.presets)
    else:
        throughput(args.quick, args.full)

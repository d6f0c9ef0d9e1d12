"""Alignment throughput vs embedding throughput: where the time of `FaceEmbedder` goes.

On the same LFW images (250 x 250, one size, so MTCNN runs them in batches as
`keras_faceset.align.align_faces` does), all in one process and in interleaved rounds:
JPEG decoding, MTCNN detection alone, detection + FaceNet's box crop, detection + dlib's
five-point warp (the two presets' `crop`), and the folded FaceNet and DlibResNet backbones on the
chips at batch 32. Ratios are paired per round (embedding seconds / alignment seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.backbone import SHARED, build_models
from benchmarks.common import (
    banner,
    cli,
    interleaved,
    machine_info,
    paired_ratio,
    ratio_text,
    spread,
    table,
    write_result,
)

LFW = Path(os.environ.get("KERAS_FACESET_LFW", SHARED / "data" / "lfw" / "lfw-deepfunneled"))
BATCH = 32


def lfw_paths(count: int) -> list[Path]:
    """The first `count` LFW images, one per person in name order (a fixed, varied sample)."""
    if not LFW.is_dir():
        raise FileNotFoundError(f"LFW images not found in {LFW} (set KERAS_FACESET_LFW)")
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    return [min(person.glob("*.jpg")) for person in people[:count]]


def embed_runner(model, chips: np.ndarray):
    """The folded backbone by a traced tf.function over `chips` in batches of `BATCH`."""
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False))
    batches = [
        tf.constant(chips[i : i + BATCH].astype(np.float32)) for i in range(0, len(chips), BATCH)
    ]
    return lambda: [fn(b).numpy() for b in batches]


def main(quick: bool = False, full: bool = False) -> dict:
    from keras_faceset import zoo
    from keras_faceset.align import MtcnnDetector, align_faces
    from keras_faceset.data.images import load_image

    machine = machine_info(batch=BATCH, mtcnn_batch="MtcnnDetector default (32)")
    banner("alignment vs embedding", machine)
    count, repeats = (32, 3) if quick else (64, 5)
    paths = lfw_paths(count)
    images = np.stack([load_image(p).numpy() for p in paths])
    detector = MtcnnDetector()
    facenet_crop, dlib_crop = zoo.get_preset("facenet").crop, zoo.get_preset("dlib_resnet").crop
    facenet_chips = align_faces(images, detector=detector, **facenet_crop).chips
    dlib_chips = align_faces(images, detector=detector, **dlib_crop).chips
    models = build_models()
    runners = {
        "decode JPEG (load_image)": lambda: [load_image(p).numpy() for p in paths],
        "MTCNN detection": lambda: detector.detect(list(images)),
        "MTCNN + box crop (facenet)": lambda: align_faces(
            images, detector=detector, **facenet_crop
        ),
        "MTCNN + five-point warp (dlib_resnet)": lambda: align_faces(
            images, detector=detector, **dlib_crop
        ),
        "embed facenet (folded, batch 32)": embed_runner(models["irv1_folded"], facenet_chips),
        "embed dlib_resnet (folded, batch 32)": embed_runner(models["dlib_folded"], dlib_chips),
    }
    stats = interleaved(runners, repeats=repeats, items=count, warmup=1, min_seconds=0.0)
    detect = stats["MTCNN detection"]
    pipelines = {
        "facenet": ("MTCNN + box crop (facenet)", "embed facenet (folded, batch 32)"),
        "dlib_resnet": (
            "MTCNN + five-point warp (dlib_resnet)",
            "embed dlib_resnet (folded, batch 32)",
        ),
    }
    rows = [{"stage": name, **s} for name, s in stats.items()]
    lines = [
        [name, spread(s), f"{1e3 * s['median_s'] / count:.1f}", f"{s['cores_busy']:.1f}"]
        for name, s in stats.items()
    ]
    print(table(["stage", "images/s median [min-max]", "ms/image", "cores busy"], lines))
    shares = []
    for preset, (align, embed) in pipelines.items():
        decode = stats["decode JPEG (load_image)"]["median_s"]
        total = decode + stats[align]["median_s"] + stats[embed]["median_s"]
        shares.append(
            {
                "preset": preset,
                "align_vs_embed_seconds": paired_ratio(stats[embed], stats[align]),
                "detection_vs_embed_seconds": paired_ratio(stats[embed], detect),
                "share_decode": decode / total,
                "share_align": stats[align]["median_s"] / total,
                "share_embed": stats[embed]["median_s"] / total,
                "end_to_end_images_per_s": count / total,
            }
        )
    share_lines = [
        [
            s["preset"],
            f"{100 * s['share_decode']:.0f}%",
            f"{100 * s['share_align']:.0f}%",
            f"{100 * s['share_embed']:.0f}%",
            ratio_text(s["align_vs_embed_seconds"]),
            f"{s['end_to_end_images_per_s']:.1f}",
        ]
        for s in shares
    ]
    print(
        table(
            [
                "preset",
                "decode",
                "detect + align",
                "embed",
                "align time / embed time (paired)",
                "end-to-end images/s",
            ],
            share_lines,
        )
    )
    path = write_result(
        "alignment",
        machine,
        images=count,
        rows=rows,
        pipelines=shares,
        notes="LFW deep-funneled 250x250 images, first image of the first N people; decoded "
        "once beforehand for the detection rows (arrays in, as align_faces takes them). "
        "Rounds interleave all stages; ratio = align seconds / embed seconds per round, "
        "median [min-max]. Backbones folded, random-weight InceptionResNetV1, dlib "
        "weights for DlibResNet (speed does not depend on weights). Shares use medians.",
    )
    print(f"wrote {path}")
    return {"rows": rows, "pipelines": shares}


if __name__ == "__main__":
    args = cli().parse_args()
    main(quick=args.quick, full=args.full)

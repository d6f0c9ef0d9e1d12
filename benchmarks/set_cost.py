"""Set cost: time of a NAN or QAN head per set of T frame embeddings (128-d; one set per call,
and 32 sets per call as a server batches them) as a share of the backbone time for the same T
frames (backbone at batch 32, per frame); and what the per-frame inputs of the shipped heads
cost: dlib descriptor + texture statistics (nan, nan1, qan) or + pooled last map, against the
descriptor alone."""

from __future__ import annotations

import numpy as np

from benchmarks.backbone import build_models, images, keras_runner
from benchmarks.common import banner, cli, interleaved, machine_info, table, write_result

DIM = 128
SET_SIZES = (1, 10, 100, 1000)
SETS_PER_CALL = (1, 32)
BACKBONE_BATCH = 32
FRAME_INPUTS = {
    "descriptor": None,
    "descriptor + pooled map": (256,),
    "descriptor + texture": (448,),
}


def heads() -> dict:
    """NAN (AttentionAggregation, 2 blocks) and QAN (QualityHead on the vectors ->
    QualityPooling), random weights; each maps (features (1, T, 128), mask (1, T)) -> (1, 128)."""
    from keras_faceset.layers import AttentionAggregation, QualityHead, QualityPooling

    rng = np.random.default_rng(0)
    nan = AttentionAggregation(num_blocks=2)
    quality, pooling = QualityHead(), QualityPooling()
    features = np.zeros((1, 4, DIM), np.float32)
    mask = np.ones((1, 4), bool)
    nan(features, mask=mask)
    pooling([features, quality(features, mask=mask)], mask=mask)
    for layer in (nan, quality):
        layer.set_weights([rng.normal(0, 0.1, w.shape) for w in layer.weights])

    def qan(features, mask):
        return pooling([features, quality(features, mask=mask)], mask=mask)

    return {
        "NAN (2 attention blocks)": lambda f, m: nan(f, mask=m),
        "QAN (QualityHead + QualityPooling)": qan,
    }


def head_runner(head, set_size: int, sets: int):
    """`sets` sets per call, by a tf.function traced once for this shape."""
    import tensorflow as tf

    rng = np.random.default_rng(set_size)
    features = tf.constant(rng.normal(size=(sets, set_size, DIM)).astype(np.float32))
    mask = tf.ones((sets, set_size), tf.bool)
    fn = tf.function(head)
    return lambda: fn(features, mask).numpy()


def frame_inputs_runner(backbone, feature_shape):
    """A call of `frame_inputs_model(backbone, feature_shape)` on one batch of 150x150 chips."""
    import tensorflow as tf

    from keras_faceset.models.task import frame_inputs_model

    model = frame_inputs_model(backbone, feature_shape)
    fn = tf.function(lambda t: model(t, training=False))
    tensor = tf.constant(images(BACKBONE_BATCH, 150, np.float32))
    return lambda: [value.numpy() for value in fn(tensor).values()]


def main(quick: bool = False, full: bool = False) -> dict:
    machine = machine_info(
        head_path=f"tf.function, {' or '.join(map(str, SETS_PER_CALL))} sets per call",
        backbone_path=f"folded, tf.function, batch {BACKBONE_BATCH}",
    )
    banner("set cost", machine)
    repeats = 3 if quick else 5
    models = build_models(with_dlib_weights=False)
    runners = {
        "InceptionResNetV1": keras_runner(
            models["irv1_folded"], BACKBONE_BATCH, 160, "tf.function"
        ),
        "DlibResNet": keras_runner(models["dlib_folded"], BACKBONE_BATCH, 150, "tf.function"),
    }
    for name, shape in FRAME_INPUTS.items():
        runners[f"frames|{name}"] = frame_inputs_runner(models["dlib"], shape)
    head_fns = heads()
    cases = [(size, sets) for sets in SETS_PER_CALL for size in SET_SIZES]
    for name, head in head_fns.items():
        for size, sets in cases:
            runners[f"{name}|{size}|{sets}"] = head_runner(head, size, sets)
    stats = interleaved(runners, repeats, min_seconds=0.5)
    per_frame = {
        name: stats[name]["median_s"] / BACKBONE_BATCH
        for name in ("InceptionResNetV1", "DlibResNet")
    }
    rows, lines = [], []
    for name in head_fns:
        for size, sets in cases:
            call = stats[f"{name}|{size}|{sets}"]
            head = {key: call[key] / sets for key in ("median_s", "min_s", "max_s")}
            row = {"head": name, "set_size": size, "sets_per_call": sets, **head}
            for backbone, seconds in per_frame.items():
                row[f"percent_of_{backbone}"] = 100 * head["median_s"] / (size * seconds)
            rows.append(row)
            lines.append(
                [
                    name,
                    size,
                    sets,
                    f"{1e3 * head['median_s']:.3f}",
                    f"{1e3 * head['min_s']:.3f}-{1e3 * head['max_s']:.3f}",
                    f"{row['percent_of_InceptionResNetV1']:.3f}%",
                    f"{row['percent_of_DlibResNet']:.3f}%",
                ]
            )
    print(
        "backbone ms per frame (batch 32): "
        + ", ".join(f"{name} {1e3 * s:.2f}" for name, s in per_frame.items())
    )
    frames = {name: stats[f"frames|{name}"]["median_s"] for name in FRAME_INPUTS}
    for name, seconds in frames.items():
        print(
            f"dlib frame inputs, {name}: {1e3 * seconds / BACKBONE_BATCH:.2f} ms per frame, "
            f"{seconds / frames['descriptor']:.3f}x the descriptor alone"
        )
    print(
        table(
            [
                "head",
                "set size",
                "sets per call",
                "ms per set (median)",
                "[min-max]",
                "% of InceptionResNetV1 frames",
                "% of DlibResNet frames",
            ],
            lines,
        )
    )
    path = write_result(
        "set_cost",
        machine,
        rows=rows,
        backbone_seconds_per_frame=per_frame,
        backbones={name: stats[name] for name in per_frame},
        frame_inputs={name: stats[f"frames|{name}"] for name in FRAME_INPUTS},
        notes="head cost % = head seconds per set / (set size x backbone seconds per frame); "
        "backbone per-frame time from batch-32 calls of the folded model; heads and "
        "backbones timed in interleaved rounds in one process; each sample loops "
        ">= 0.5 s.",
    )
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    main(**vars(cli().parse_args()))

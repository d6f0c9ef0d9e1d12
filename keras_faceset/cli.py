"""The `keras-faceset` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from keras_faceset import __version__


def _list(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    table = zoo.list_models()
    columns = ["name", "task", "backbone", "licence", "lfw_accuracy"]
    print(table[[*columns, "lfw_sets_degraded_tar@far=1e-2"]].to_string(index=False))


def _info(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    card = zoo.info(args.model)
    print(card.pop("card") or "(no model card)")
    source = card.pop("source")
    for key, value in [*card.items(), *((f"source.{k}", v) for k, v in source.items())]:
        print(f"{key}: {value}")


def _download(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    names = list(zoo.PRESETS) if args.all else [args.model]
    if not names[0]:
        raise ValueError("give a model name or --all")
    for name in names:
        print(f"{name}: {zoo.download(name, cache_dir=args.cache_dir)}")


def _embedder(args: argparse.Namespace):
    from keras_faceset.embedder import FaceEmbedder

    if args.quiet:
        from keras_faceset.progress import set_enabled

        set_enabled(False)
    return FaceEmbedder(
        args.model,
        align=args.align,
        chip_cache=args.chip_cache,
        flip=args.flip,
        precision=args.precision,
    )


def _verify(args: argparse.Namespace) -> None:
    from keras_faceset.data.inputs import frame_label, input_sets, set_inputs
    from keras_faceset.embedder import cosine_distance

    embedder = _embedder(args)
    print(f"model: {args.model} ({embedder.description})")
    if not embedder.takes_sets:
        first, second = embedder.embed([args.a, args.b])
    else:  # each side is a set: a folder of frames, a video (or one image)
        (_, frames_a), (_, frames_b) = input_sets([args.a, args.b], args.max_frames)
        embeddings, weights = embedder.embed_sets([set_inputs(frames_a), set_inputs(frames_b)])
        for side, frames, frame_weights in zip("AB", (frames_a, frames_b), weights, strict=True):
            named = [
                (Path(frame_label(f)).name, w) for f, w in zip(frames, frame_weights, strict=True)
            ]
            print(f"set {side} weights: " + ", ".join(f"{n} {w:.3f}" for n, w in named))
        first, second = embeddings
    distance = float(cosine_distance(first, second))
    measured = embedder.preset.thresholds
    far = args.far
    if far is None:  # 1e-3, or the strictest FAR measured for the preset (1e-2 for set models)
        far = "1e-3" if "1e-03" in measured or not measured else min(measured, key=float)
        far = far.replace("e-0", "e-")
    threshold = args.threshold
    rule = f"threshold {threshold} (given)"
    if threshold is None:
        threshold = measured.get(f"{float(far):.0e}")
        rule = f"FAR {far} (threshold {threshold:.4f})" if threshold is not None else ""
    print(f"cosine distance: {distance:.4f}")
    if threshold is None:
        print(f"decision: none (no threshold measured for FAR {far}; give --threshold)")
    else:
        verdict = "same person" if distance <= threshold else "different people"
        print(f"decision at {rule}: {verdict}")
    if embedder.fallbacks:
        print(f"note: no face found in {embedder.fallbacks} image(s); used the central crop")


def _embed(args: argparse.Namespace) -> None:
    output = Path(args.output)
    if output.suffix not in (".npz", ".parquet"):
        raise ValueError(f"output must end in .npz or .parquet, got {output.name}")
    if output.suffix == ".parquet":
        _parquet_engine()
    import numpy as np

    from keras_faceset.data.inputs import frame_label, input_sets, set_inputs

    embedder = _embedder(args)
    sets = input_sets(args.inputs, args.max_frames)
    if not embedder.takes_sets:  # one embedding per image (or video frame)
        sets = [(frame_label(frame), [frame]) for _, frames in sets for frame in frames]
    names = [name for name, _ in sets]
    embeddings, weights = embedder.embed_sets([set_inputs(frames) for _, frames in sets])
    output.parent.mkdir(parents=True, exist_ok=True)
    if not embedder.takes_sets:
        columns = {"path": names}
    else:
        columns = {
            "set": names,
            "frames": [[frame_label(f) for f in frames] for _, frames in sets],
            "weights": [w.astype(np.float32) for w in weights],
        }
    if output.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame({**columns, "embedding": list(embeddings)}).to_parquet(output, index=False)
    elif not embedder.takes_sets:
        np.savez(output, embeddings=embeddings, paths=np.array(names))
    else:
        width = max(len(w) for w in weights)
        np.savez(
            output,
            embeddings=embeddings,
            sets=np.array(names),
            frames=np.array([f + [""] * (width - len(f)) for f in columns["frames"]]),
            weights=np.array([np.pad(w, (0, width - len(w))) for w in weights], np.float32),
            lengths=np.array([len(w) for w in weights]),
        )
    kind = "images" if not embedder.takes_sets else "sets"
    print(f"{len(names)} {kind}, embeddings of dimension {embeddings.shape[1]} -> {output}")
    if embedder.fallbacks:
        print(f"note: no face found in {embedder.fallbacks} image(s); used the central crop")


def _parquet_engine() -> None:
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise ImportError("writing .parquet needs pyarrow (pip install pyarrow); or use -o out.npz")


def _evaluate(args: argparse.Namespace) -> None:
    if (args.protocol == "folder") != (args.root is not None):
        raise ValueError("give ROOT for `evaluate MODEL folder ROOT` (and only for folder)")
    import time

    import pandas as pd

    from keras_faceset.eval.report import save_report

    embedder = _embedder(args)
    start = time.perf_counter()
    if args.protocol == "lfw":
        from keras_faceset.eval import evaluate_lfw

        summary, scores = evaluate_lfw(
            embedder, args.data, view=args.view, pairs_per_fold=args.pairs_per_fold
        )
        protocols = [
            f"lfw_{args.view}"
            + (f"_first{args.pairs_per_fold}perfold" if args.pairs_per_fold else "")
        ]
    elif args.protocol == "sets":
        from keras_faceset.eval.sets import evaluate_lfw_sets

        variants = ("clean", "degraded") if args.variant == "both" else (args.variant,)
        summary, scores = evaluate_lfw_sets(
            embedder, args.data, variants, args.protocol_dir, _frame_cache(args, embedder)
        )
        protocols = list(summary["protocol"])
    else:
        from keras_faceset.eval.folder import evaluate_folder

        summary, scores = evaluate_folder(
            embedder, args.root, args.max_pairs, args.seed, args.max_frames
        )
        protocols = [
            f"folder_{Path(args.root).resolve().name}"
            + (f"_max{args.max_pairs}_seed{args.seed}" if args.max_pairs else "")
        ]
    summary.insert(1, "alignment", embedder.description)
    summary["fallbacks"] = embedder.fallbacks
    summary["seconds"] = round(time.perf_counter() - start, 1)
    with pd.option_context("display.width", 200, "display.max_colwidth", 90):
        print(summary.set_index("protocol").T.to_string())
    for protocol, (_, row) in zip(protocols, summary.iterrows(), strict=True):
        sets = args.protocol == "sets"  # a sub-folder per variant
        split = row["protocol"] if sets else scores["split"].iloc[-1]
        out = Path(args.out) / protocol if sets else Path(args.out)
        files = save_report(row.to_frame().T, scores[scores["split"] == split], out)
        print(f"wrote {', '.join(str(p) for p in files.values())}")
        if args.record:
            _record(args, embedder, protocol, row)
    if args.calibrate:
        _print_calibration(args, embedder, scores)


def _frame_cache(args: argparse.Namespace, embedder):
    """The LFW-sets frame cache file in --frame-cache: one per `FaceEmbedder.frame_key`."""
    import hashlib

    if args.frame_cache is None:
        return None
    digest = hashlib.sha256(embedder.frame_key.encode()).hexdigest()[:12]
    return Path(args.frame_cache) / f"lfw_sets_{embedder.frame_key.split()[0]}_{digest}.npz"


def _record(args: argparse.Namespace, embedder, protocol: str, row) -> None:
    from keras_faceset.eval.results import record_result

    record_result(
        args.record,
        {
            "model": embedder.preset.head.results_model,
            "protocol": protocol,
            "alignment": args.align + ("+flip" if args.flip else ""),
            "accuracy": row["accuracy"],
            "std": row["std"],
            "auc": row["auc"],
            "tar@far=1e-2": row["tar@far=0.01"],
            "tar@far=1e-3": row["tar@far=0.001"],
            "pairs": row["pairs"],
            "command": "keras-faceset " + " ".join(sys.argv[1:]),
        },
    )
    print(f"recorded {protocol} in {args.record}")


def _print_calibration(args: argparse.Namespace, embedder, scores) -> None:
    """Distance thresholds at the measurable FARs of all the evaluated pairs, pooled, as the
    preset entry to paste into keras_faceset/zoo/presets.py."""
    from keras_faceset.eval.verification import CALIBRATION_FARS, calibrate, measurable_fars

    same = scores["same"].to_numpy(bool)
    different = int((~same).sum())
    fars = measurable_fars(different)
    splits = " + ".join(dict.fromkeys(scores["split"]))
    print(f"calibration on {splits}: {len(same)} pairs, {different} impostor")
    for far in sorted(set(CALIBRATION_FARS) - set(fars), reverse=True):
        print(f"  FAR {far:.0e}: not measurable ({different} impostor pairs < {round(1 / far):,})")
    if not fars:
        return
    thresholds = calibrate(1.0 - scores["score"].to_numpy(), same, fars)
    entry = ", ".join(f'"{far}": {value:.4f}' for far, value in thresholds.items())
    print(f"preset {args.model} (keras_faceset/zoo/presets.py):")
    print(f"    thresholds={{{entry}}},")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-faceset", description=__doc__)
    parser.add_argument("--version", action="version", version=f"keras-faceset {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="presets with licence and measured accuracy").set_defaults(
        run=_list
    )
    info = commands.add_parser("info", help="a preset's model card")
    info.add_argument("model")
    info.set_defaults(run=_info)

    download = commands.add_parser("download", help="fetch and convert weights into the cache")
    download.add_argument("model", nargs="?", default="")
    download.add_argument("--all", action="store_true", help="every preset")
    download.add_argument("--cache-dir", default=None)
    download.set_defaults(run=_download)

    def add_model_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("model", help="a preset name (see `keras-faceset list`)")
        command.add_argument(
            "--align",
            choices=("preset", "center"),
            default="preset",
            help="preset: detect with MTCNN and crop as the weights expect; center: fixed "
            "central crop, no detection",
        )
        command.add_argument("--chip-cache", default=None, help="folder caching aligned chips")
        command.add_argument(
            "--flip", action="store_true", help="add the mirrored chip's embedding (test-time)"
        )
        command.add_argument(
            "--precision",
            choices=("float32", "bfloat16"),
            default="float32",
            help="bfloat16: batch norm folded, bfloat16 compute (~1.9x faster at batch 32 on "
            "CPUs with AVX512_BF16, LFW accuracy unchanged)",
        )
        command.add_argument(
            "--max-frames", type=int, default=16, help="frames sampled evenly from a video"
        )
        command.add_argument(
            "-q", "--quiet", action="store_true", help="no progress bars (none when not a TTY)"
        )

    verify = commands.add_parser(
        "verify",
        help="are two face images (or, for set models, two sets: folders or videos) the same "
        "person?",
    )
    add_model_options(verify)
    verify.add_argument("a")
    verify.add_argument("b")
    verify.add_argument(
        "--far",
        default=None,
        help="false accept rate of the preset's threshold (default 1e-3, or the strictest "
        "measured: 1e-2 for set models)",
    )
    verify.add_argument("--threshold", type=float, default=None, help="cosine distance")
    verify.set_defaults(run=_verify)

    embed = commands.add_parser(
        "embed",
        help="embed images (image models) or sets (set models) into an .npz or .parquet",
        description="Image models: one embedding per image (folders expanded, videos sampled). "
        "Set models: one embedding per input (a folder of frames, a video or one image) with "
        "per-frame weights. .npz keys: embeddings, paths (image models) or embeddings, sets, "
        "frames, weights (padded with '' and 0), lengths (set models).",
    )
    add_model_options(embed)
    embed.add_argument("inputs", nargs="+", help="image files, folders of images, videos")
    embed.add_argument("-o", "--output", required=True, help="out.npz or out.parquet")
    embed.set_defaults(run=_embed)

    evaluate = commands.add_parser(
        "evaluate",
        help="verification accuracy, ROC, TAR@FAR on LFW, LFW-sets or a labelled folder",
        description="lfw: LFW View 2 (or View 1) image pairs. sets: LFW-sets set pairs "
        "(docs/lfw_sets.md), clean and degraded. folder ROOT: every genuine and impostor pair "
        "(or --max-pairs of each) of ROOT/<identity>/<image> or ROOT/<identity>/<set or video>. "
        "Image models embed a set as the mean of its frames, set models an image as a set of one.",
    )
    add_model_options(evaluate)
    evaluate.add_argument("protocol", choices=("lfw", "sets", "folder"))
    evaluate.add_argument("root", nargs="?", default=None, help="labelled folder (folder only)")
    evaluate.add_argument("--data", default=None, help="LFW folder (default $KERAS_FACESET_DATA)")
    evaluate.add_argument("--view", choices=("view2", "view1"), default="view2", help="lfw")
    evaluate.add_argument("--pairs-per-fold", type=int, default=None, help="lfw: quick subset")
    evaluate.add_argument(
        "--variant", choices=("clean", "degraded", "both"), default="both", help="sets"
    )
    evaluate.add_argument(
        "--protocol-dir", default=None, help="sets: folder of lfw_sets_*.jsonl (zoo/protocols)"
    )
    evaluate.add_argument(
        "--frame-cache", default=None, help="sets: folder caching the frame embeddings"
    )
    evaluate.add_argument("--max-pairs", type=int, default=None, help="folder: pairs per class")
    evaluate.add_argument("--seed", type=int, default=0, help="folder: seed of --max-pairs")
    evaluate.add_argument("--out", default="faceset-eval", help="folder for CSV, JSON and ROC")
    evaluate.add_argument("--record", default=None, help="results CSV to add the row(s) to")
    evaluate.add_argument(
        "--calibrate",
        action="store_true",
        help="print distance thresholds at the measurable FARs of the pairs (pooled), as the "
        "preset's thresholds entry",
    )
    evaluate.set_defaults(run=_evaluate)

    from keras_faceset.export.cli import add_export_command

    add_export_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, OSError, ImportError) as error:
        print(f"keras-faceset {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

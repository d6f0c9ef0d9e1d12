"""The `keras-faceset` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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

    return FaceEmbedder(args.model, align=args.align, chip_cache=args.chip_cache, flip=args.flip)


def _verify(args: argparse.Namespace) -> None:
    from keras_faceset.embedder import cosine_distance, image_paths

    embedder = _embedder(args)
    print(f"model: {args.model} ({embedder.description})")
    if embedder.set_model is None:
        first, second = embedder.embed([args.a, args.b])
    else:  # each side is a set: a folder of frames (or one image)
        sides = {"A": image_paths([args.a]), "B": image_paths([args.b])}
        results = {side: embedder.embed_set(frames) for side, frames in sides.items()}
        for side, (_, weights) in results.items():
            pairs = zip(sides[side], weights, strict=True)
            print(f"set {side} weights: " + ", ".join(f"{p.name} {w:.3f}" for p, w in pairs))
        first, second = results["A"][0], results["B"][0]
    distance = float(cosine_distance(first, second))
    threshold, far = args.threshold, f"{float(args.far):.0e}"
    if threshold is None:
        threshold = embedder.preset.thresholds.get(far)
    print(f"cosine distance: {distance:.4f}")
    if threshold is None:
        print(f"decision: none (no threshold measured for FAR {args.far}; give --threshold)")
    else:
        verdict = "same person" if distance <= threshold else "different people"
        print(f"decision at FAR {args.far} (threshold {threshold:.4f}): {verdict}")
    if embedder.fallbacks:
        print(f"note: no face found in {embedder.fallbacks} image(s); used the central crop")


def _embed(args: argparse.Namespace) -> None:
    import numpy as np

    from keras_faceset.embedder import image_paths

    paths = image_paths(args.inputs)
    embedder = _embedder(args)
    embeddings = embedder.embed(paths)
    np.savez(args.output, embeddings=embeddings, paths=np.array([str(p) for p in paths]))
    print(f"{len(paths)} embeddings of dimension {embeddings.shape[1]} -> {args.output}")


def _evaluate(args: argparse.Namespace) -> None:
    import time

    from keras_faceset.eval import evaluate_lfw
    from keras_faceset.eval.report import save_report

    embedder = _embedder(args)
    start = time.perf_counter()
    summary, scores = evaluate_lfw(
        embedder, args.data, view=args.view, pairs_per_fold=args.pairs_per_fold
    )
    summary.insert(1, "alignment", embedder.description)
    summary["fallbacks"] = embedder.fallbacks
    summary["seconds"] = round(time.perf_counter() - start, 1)
    print(summary.T.to_string(header=False))
    files = save_report(summary, scores, args.out)
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    if args.record:
        from keras_faceset.eval.results import record_result

        row = summary.iloc[0]
        record_result(
            args.record,
            {
                "model": args.model,
                "protocol": f"lfw_{args.view}"
                + (f"_first{args.pairs_per_fold}perfold" if args.pairs_per_fold else ""),
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
        print(f"recorded in {args.record}")


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

    verify = commands.add_parser(
        "verify", help="are two face images (or two sets, for nan/qan: folders) the same person?"
    )
    add_model_options(verify)
    verify.add_argument("a")
    verify.add_argument("b")
    verify.add_argument("--far", default="1e-3", help="false accept rate of the threshold")
    verify.add_argument("--threshold", type=float, default=None, help="cosine distance")
    verify.set_defaults(run=_verify)

    embed = commands.add_parser("embed", help="embed images and folders into an .npz")
    add_model_options(embed)
    embed.add_argument("inputs", nargs="+", help="image files or folders of images")
    embed.add_argument("-o", "--output", required=True)
    embed.set_defaults(run=_embed)

    evaluate = commands.add_parser("evaluate", help="LFW verification accuracy, ROC, TAR@FAR")
    add_model_options(evaluate)
    evaluate.add_argument("protocol", choices=("lfw",))
    evaluate.add_argument("--data", default=None, help="LFW folder (default $KERAS_FACESET_DATA)")
    evaluate.add_argument("--view", choices=("view2", "view1"), default="view2")
    evaluate.add_argument("--pairs-per-fold", type=int, default=None, help="quick subset")
    evaluate.add_argument("--out", default="faceset-eval", help="folder for CSV, JSON and ROC")
    evaluate.add_argument("--record", default=None, help="results CSV to add the row to")
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

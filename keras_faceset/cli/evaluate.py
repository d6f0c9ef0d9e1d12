"""`evaluate`: verification accuracy, ROC and TAR@FAR on LFW, LFW-sets or a labelled folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from keras_faceset.cli.common import (
    add_model_options,
    make_embedder,
)


def register(add_command) -> None:
    """Add the command through `add_command(name, **kwargs) -> parser`."""
    evaluate = add_command(
        "evaluate",
        help="verification accuracy, ROC, TAR@FAR on LFW, LFW-sets or a labelled folder",
        description="lfw: LFW View 2 (or View 1) image pairs. sets: LFW-sets set pairs "
        "(docs/lfw_sets.md), clean and degraded. folder ROOT: every genuine and impostor pair "
        "(or --max-pairs of each) of ROOT/<identity>/<image> or ROOT/<identity>/<set or video>; "
        "TAR@FAR only at FARs its impostor pairs can measure (at least 1/FAR of them). "
        "Image models embed a set as the mean of its frames, set models an image as a set of "
        "one. Prints the summary (thresholds as cosine distances); --out writes the files.",
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
        "--protocol-dir", default=None, help="sets: folder of lfw_sets_*.jsonl (default: shipped)"
    )
    evaluate.add_argument(
        "--frame-cache", default=None, help="sets: folder caching the frame embeddings"
    )
    evaluate.add_argument("--max-pairs", type=int, default=None, help="folder: pairs per class")
    evaluate.add_argument("--seed", type=int, default=0, help="folder: seed of --max-pairs")
    evaluate.add_argument(
        "--out",
        default=None,
        help="folder to write summary CSV/JSON, per-pair scores and ROC into (default: none)",
    )
    evaluate.add_argument("--record", default=None, help="results CSV to add the row(s) to")
    evaluate.add_argument(
        "--calibrate",
        action="store_true",
        help="print distance thresholds at the measurable FARs of the pairs (pooled), as the "
        "preset's thresholds entry",
    )
    evaluate.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if (args.protocol == "folder") != (args.root is not None):
        raise ValueError("give ROOT for `evaluate MODEL folder ROOT` (and only for folder)")
    import time

    import pandas as pd

    embedder = make_embedder(args)
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
    if args.model_file:
        summary.insert(1, "model_file", args.model_file)
    summary = _distance_threshold(summary)
    summary["fallbacks"] = embedder.fallbacks
    summary["seconds"] = round(time.perf_counter() - start, 1)
    with pd.option_context("display.width", 200, "display.max_colwidth", 90):
        print(_displayed(summary).set_index("protocol").T.to_string())
    for protocol, (_, row) in zip(protocols, summary.iterrows(), strict=True):
        if args.out is not None:
            _save_report(args, protocol, row, scores)
        if args.record:
            _record(args, embedder, protocol, row)
    if args.calibrate:
        _print_calibration(args, embedder, scores)


def _distance_threshold(summary):
    """The summary's best threshold (a cosine similarity) as the cosine distance that verify,
    --calibrate and the presets use: column ``distance_threshold``."""
    if not (summary["metric"] == "cosine").all():
        raise ValueError("expected cosine-similarity scores")
    at = summary.columns.get_loc("threshold")
    distance = 1.0 - summary.pop("threshold")
    summary.insert(at, "distance_threshold", distance)
    return summary


def _displayed(summary):
    """The summary to print: a TAR@FAR its impostor pairs cannot measure (NaN, with an
    ``impostor`` count) reads ``n/a (375 impostor pairs < 1,000)``."""
    shown = summary.astype(object)
    if "impostor" not in summary:
        return shown
    for column in [c for c in summary if c.startswith("tar@far=")]:
        far = float(column.split("=")[1])
        for i, value in summary[column].items():
            if np.isnan(value):
                impostor = int(summary.at[i, "impostor"])
                shown.at[i, column] = f"n/a ({impostor:,} impostor pairs < {round(1 / far):,})"
    return shown


def _save_report(args: argparse.Namespace, protocol: str, row, scores) -> None:
    """summary.csv, summary.json, scores.csv and (with matplotlib) the ROC and histogram PNGs of
    one protocol in --out (LFW-sets: a sub-folder per variant)."""
    import importlib.util

    from keras_faceset.eval.report import save_report

    sets = args.protocol == "sets"
    split = row["protocol"] if sets else scores["split"].iloc[-1]
    out = Path(args.out) / protocol if sets else Path(args.out)
    plots = importlib.util.find_spec("matplotlib") is not None
    files = save_report(row.to_frame().T, scores[scores["split"] == split], out, roc_png=plots)
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    if not plots:
        print("note: no ROC and histogram plots without matplotlib (pip install matplotlib)")


def _frame_cache(args: argparse.Namespace, embedder):
    """The LFW-sets frame cache file in --frame-cache: one per `FaceEmbedder.frame_key` (which
    names a --model file's content: its backbone may have been fine-tuned)."""
    import hashlib

    if args.frame_cache is None:
        return None
    digest = hashlib.sha256(embedder.frame_key.encode()).hexdigest()[:12]
    return Path(args.frame_cache) / f"lfw_sets_{embedder.frame_key.split()[0]}_{digest}.npz"


def _record(args: argparse.Namespace, embedder, protocol: str, row) -> None:
    from keras_faceset.eval.results import record_result

    model = Path(args.model_file).stem if args.model_file else embedder.preset.head.results_model
    record_result(
        args.record,
        {
            "model": model,
            "protocol": protocol,
            "alignment": _alignment_key(args, embedder),
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


def _alignment_key(args: argparse.Namespace, embedder) -> str:
    """The row's alignment: preset crop, ``+flip``, ``+bfloat16`` / ``+int8`` /
    ``+int8-dynamic``; an int8 model calibrated on the user's own faces adds ``@`` and 12 hex
    digits of their sha256, so its row never replaces the LFW-calibrated one."""
    key = args.align + ("+flip" if args.flip else "")
    if args.precision != "float32":
        key += f"+{args.precision}"
    calibration = embedder.int8_calibration or {}
    if "sha256" in calibration:
        key += f"@{calibration['sha256'][:12]}"
    return key


def _print_calibration(args: argparse.Namespace, embedder, scores) -> None:
    """Distance thresholds at the measurable FARs of all the evaluated pairs, pooled: the
    preset entry to paste into keras_faceset/zoo/presets.py, or for a --model file the
    --threshold to verify with."""
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
    if args.model_file:
        for far, value in thresholds.items():
            command = f"verify {args.model} --model {args.model_file} --threshold {value:.4f}"
            print(f"  FAR {far}: {command}")
        return
    entry = ", ".join(f'"{far}": {value:.4f}' for far, value in thresholds.items())
    print(f"preset {args.model} (keras_faceset/zoo/presets.py):")
    print(f"    thresholds={{{entry}}},")

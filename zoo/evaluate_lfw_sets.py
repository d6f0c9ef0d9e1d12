"""Evaluate set pooling and the set presets' heads on LFW-sets (clean and degraded) with dlib.

Every distinct frame of both protocols is embedded once by dlib's ResNet (128-d descriptor,
256-d pooled last map and 448 texture statistics, cached as an .npz under --cache;
`keras_faceset.eval.protocol_cache`). A frame is the 250x250 LFW image with its protocol
degradation applied, warped to dlib's 150x150 chip by the five-point transform MTCNN found on
the *clean* image (a tracker gives the box; quality varies). Heads are the presets' heads
(`keras_faceset.zoo.PRESETS[name].head`) with their weights from --weights; rows are named by
the head's `results_model`.

    python zoo/evaluate_lfw_sets.py --data ../shared/data/lfw --record keras_faceset/zoo/results.csv
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import pandas as pd

from keras_faceset.data import LFW
from keras_faceset.eval.pair_reports import head_report
from keras_faceset.eval.protocol_cache import (
    add_cache_options,
    lfw_sets_embeddings,
)
from keras_faceset.eval.results import record_result
from keras_faceset.eval.sets import POOLINGS, pool_sets, set_verification
from keras_faceset.zoo import build_head, get_preset
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS

HEADS = ("nan1", "nan", "qan", "seqface")
METRICS = ("accuracy", "std", "auc", "tar@far=0.01", "tar@far=0.001")


def load_heads(names: tuple[str, ...], weights_dir: Path, overrides: dict | None = None) -> dict:
    """Preset name -> its head with the weights `weights_dir / head.weights` (`build_head`,
    kwargs `overrides`), for the presets whose weights file exists."""
    heads = {}
    for name in names:
        path = weights_dir / get_preset(name).head.weights
        if path.is_file():
            heads[name] = build_head(name, path, **(overrides or {}))
    return heads


def evaluate(variants: dict, heads: dict) -> tuple[pd.DataFrame, dict]:
    """Rows of metrics per (method, variant) and the weight/severity Spearman per head on the
    degraded variant (both keyed by the head's `results_model`)."""
    rows, spearman = [], {}
    for variant, v in variants.items():
        reports = {
            f"{pooling}_dlib": set_verification(
                pool_sets(v["embedding"], v["rows_a"], pooling),
                pool_sets(v["embedding"], v["rows_b"], pooling),
                v["same"],
                v["fold"],
            )
            for pooling in POOLINGS
        }
        for name, head in heads.items():
            model = get_preset(name).head.results_model
            reports[model] = head_report(head, v, spearman=variant == "degraded")
            if variant == "degraded":
                spearman[model] = reports[model].pop("spearman")
        for model, report in reports.items():
            rows.append({"model": model, "protocol": f"lfw_sets_{variant}", **report})
    return pd.DataFrame(rows), spearman


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument(
        "--weights", default=SHIPPED_WEIGHTS, help="folder of the head weights (default: shipped)"
    )
    parser.add_argument("--record", default=None, help="results CSV to record rows in")
    parser.add_argument(
        "--heads", default=",".join(HEADS), help="set presets whose heads to evaluate"
    )
    parser.add_argument(
        "--head-kwargs",
        default=None,
        help="head options as JSON, overriding each preset's head kwargs (as for training)",
    )
    args = parser.parse_args(argv)
    overrides = None if args.head_kwargs is None else json.loads(args.head_kwargs)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    variants = lfw_sets_embeddings(LFW(args.data), cache, args.chips)
    heads = load_heads(tuple(args.heads.split(",")), Path(args.weights), overrides)
    table, spearman = evaluate(variants, heads)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table[["model", "protocol", *METRICS]].round(4).to_string(index=False))
    for name, rho in spearman.items():
        print(f"Spearman(relative weight, severity) on lfw_sets_degraded, {name}: {rho:.3f}")
    if args.record:
        command = "python zoo/evaluate_lfw_sets.py " + shlex.join(sys.argv[1:])
        for row in table.to_dict("records"):
            variant = row["protocol"].removeprefix("lfw_sets_")
            record_result(
                args.record,
                {
                    "model": row["model"],
                    "protocol": row["protocol"],
                    "alignment": "five_point",
                    "accuracy": row["accuracy"],
                    "std": row["std"],
                    "auc": row["auc"],
                    "tar@far=1e-2": row["tar@far=0.01"],
                    "tar@far=1e-3": row["tar@far=0.001"],
                    "pairs": len(variants[variant]["pairs"]),
                    "command": command,
                },
            )


if __name__ == "__main__":
    main()

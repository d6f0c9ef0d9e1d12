"""Set heads against mean pooling on faces and corruptions they never saw in training.

Variants (`keras_faceset.eval.set_generalization`): LFW DevTest people's sets undegraded, with
each of the six degradation families alone (and at a harder severity, ``lfw_<family>_hard``),
with two families on the same frame, with each of three families outside training on the hard
variants' frames (``lfw_unseen_<family>``: motion blur, haze, speckle), and Extended Yale B sets
(3 near-frontal + 3 extreme-light images, or 6 random); --variants PATTERNS measures only some
of them. Every head is compared with mean pooling of the same unit frame embeddings on the same
pairs: accuracy and TAR@FAR=1e-2, with a paired bootstrap 95 % interval of the difference (1,000
resamplings of the set pairs, seed 0). With --record, the head's and mean pooling's figures of
each variant are recorded. With --record-as MODEL (one head, e.g. trained without a family by
`zoo/train_set_heads.py --leave-out`), the head's rows are recorded under MODEL, so that they
never replace the shipped head's, and mean pooling's rows (the same pairs) are left as they are.
--head-kwargs JSON overrides the presets' head options (e.g. '{"temperature": 1}', the
weighting the heads were trained with); recording such a head needs --record-as. --oracle
adds the residual oracle on the LFW variants (`residual_oracle_weights`: inverse-variance
weights from each frame's true distance to its person's clean centre, which needs the
identity; rows ``residual_oracle_dlib``): what weighting the frames could gain at best.

    python zoo/set_generalization.py --data ../shared/data/lfw \\
        --yale ../shared/data/extended_yaleb_dev --record keras_faceset/zoo/results.csv
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import sys
from pathlib import Path

import pandas as pd

from keras_faceset.data import LFW
from keras_faceset.eval.protocol_cache import add_cache_options
from keras_faceset.eval.results import record_result
from keras_faceset.eval.set_generalization import (
    FAMILIES,
    METRICS,
    RESAMPLES,
    UNSEEN,
    compare,
    lfw_variants,
    residual_oracle_weights,
    yale_variants,
)
from keras_faceset.zoo import build_head, get_preset
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS

HEADS = ("nan1", "nan", "qan")
PROTOCOL = "set_generalization_{}"
ORACLE = "residual_oracle"
ORACLE_MODEL = "residual_oracle_dlib"


def load_heads(names, weights_dir: Path, overrides: dict | None = None) -> dict:
    """Preset name -> its head with the weights `weights_dir / head.weights` (`build_head`,
    kwargs `overrides`)."""
    return {
        name: build_head(name, weights_dir / get_preset(name).head.weights, **(overrides or {}))
        for name in names
    }


def select_variants(variants: dict, patterns: list[str], parser) -> dict:
    """The `variants` whose names match one of the shell `patterns` (in protocol order)."""
    for pattern in patterns:
        if not fnmatch.filter(variants, pattern):
            parser.error(f"--variants {pattern!r} matches none of {', '.join(variants)}")
    return {
        name: v for name, v in variants.items() if any(fnmatch.fnmatch(name, p) for p in patterns)
    }


def preset_thresholds(name: str) -> tuple[float, float]:
    """The FAR 1e-2 cosine-distance thresholds of set preset `name` and of ``mean``."""
    return tuple(get_preset(n).thresholds["1e-02"] for n in (name, "mean"))


def result_row(model: str, variant: str, report: dict, pairs: int, command: str) -> dict:
    alignment = "preset" if variant.startswith("yale") else "five_point"
    return {
        "model": model,
        "protocol": PROTOCOL.format(variant),
        "alignment": alignment,
        "accuracy": report["accuracy"],
        "std": report["std"],
        "auc": report["auc"],
        "tar@far=1e-2": report["tar@far=0.01"],
        "tar@far=1e-3": report["tar@far=0.001"],
        "pairs": pairs,
        "command": command,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument("--yale", required=True, help="Extended Yale B folder")
    parser.add_argument(
        "--heads",
        default=",".join(HEADS),
        help="set presets to compare ('' for none, with --oracle)",
    )
    parser.add_argument("--weights", default=SHIPPED_WEIGHTS, help="folder of the head weights")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--record", default=None, help="results CSV to record rows in")
    parser.add_argument(
        "--record-as",
        default=None,
        metavar="MODEL",
        help="with --record and one head: record its rows under MODEL, not the preset's",
    )
    parser.add_argument(
        "--head-kwargs",
        default=None,
        metavar="JSON",
        help="head options overriding each preset's head kwargs, e.g. '{\"temperature\": 1}'",
    )
    parser.add_argument(
        "--variants",
        default="*",
        metavar="PATTERNS",
        help="comma-separated variant names or shell patterns to measure, e.g. 'lfw_*_hard'",
    )
    parser.add_argument(
        "--thresholds",
        action="store_true",
        help="also print the FAR and TAR that each preset's FAR 1e-2 threshold (and the mean "
        "preset's) gives on each variant (for the shipped weights, whose thresholds they are)",
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="also the residual oracle (inverse-variance weights from each frame's true "
        "residual to its person's clean centre) on the LFW variants: a bound, not a method",
    )
    parser.add_argument("--out", default=None, help="CSV of the comparison table")
    args = parser.parse_args(argv)
    names = [name for name in args.heads.split(",") if name]
    if args.record_as and not (args.record and len(names) == 1):
        parser.error(
            f"--record-as names one head's rows: give it with --record and one --heads, "
            f"not {args.heads!r}"
        )
    overrides = None if args.head_kwargs is None else json.loads(args.head_kwargs)
    if overrides and args.record and not args.record_as:
        parser.error(
            "--head-kwargs changes the heads from their presets: record their rows under a "
            "name of their own with --record-as"
        )
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    variants = lfw_variants(LFW(args.data), cache, args.chips)
    yale, counts = yale_variants(args.yale, cache, args.chips)
    clean = variants.get("lfw_clean")
    variants.update(yale)
    variants = select_variants(variants, args.variants.split(","), parser)
    print(
        f"Yale B: {counts['images']} images, centre-crop fallback for {counts['fallbacks']}",
        flush=True,
    )
    heads = load_heads(names, Path(args.weights), overrides)
    if args.oracle:
        heads[ORACLE] = None
    command = "python zoo/set_generalization.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    rows, recorded = [], set()
    for name, head in heads.items():
        oracle = name == ORACLE
        model = ORACLE_MODEL if oracle else args.record_as or get_preset(name).head.results_model
        thresholds = preset_thresholds(name) if args.thresholds and not oracle else None
        for variant, v in variants.items():
            if oracle and "path" not in v:
                continue  # Yale B: no clean images to measure a residual against
            aggregator = residual_oracle_weights(v, clean) if oracle else head
            result = compare(aggregator, v, args.resamples, 0, thresholds)
            report, mean_report = result.pop("report"), result.pop("mean_report")
            rows.append({"head": name, "variant": variant, **result})
            line = ", ".join(
                f"{m} {result[m]:.4f} (mean {result[f'mean_{m}']:.4f}, diff "
                f"{result[f'diff_{m}']:+.4f} [{result[f'low_{m}']:+.4f}, "
                f"{result[f'high_{m}']:+.4f}])"
                for m in METRICS
            )
            print(f"{name} {variant}: {line}", flush=True)
            if thresholds:
                print(
                    f"{name} {variant}: at the FAR 1e-2 thresholds {thresholds[0]:.4f} "
                    f"(mean {thresholds[1]:.4f}): FAR {result['far@threshold']:.3f} "
                    f"(mean {result['mean_far@threshold']:.3f}), TAR "
                    f"{result['tar@threshold']:.3f} (mean {result['mean_tar@threshold']:.3f})",
                    flush=True,
                )
            if args.record:
                record_result(
                    args.record, result_row(model, variant, report, v["same"].size, command)
                )
                if not (args.record_as or oracle) and variant not in recorded:
                    record_result(
                        args.record,
                        result_row("mean_dlib", variant, mean_report, v["same"].size, command),
                    )
                    recorded.add(variant)
    table = pd.DataFrame(rows)
    groups = {
        "single family": [f"lfw_{family}" for family in FAMILIES],
        "hard single family": [f"lfw_{family}_hard" for family in FAMILIES],
        "unseen family": [f"lfw_unseen_{family}" for family in UNSEEN],
    }
    for label, single in groups.items():
        for name, part in table[table["variant"].isin(single)].groupby("head"):
            row = part.loc[part[f"diff_{METRICS[1]}"].idxmin()]
            print(f"{name}: worst {label} {row['variant']}, diff {row[f'diff_{METRICS[1]}']:+.4f}")
    if args.out:
        table.to_csv(args.out, index=False, float_format="%.6g")


if __name__ == "__main__":
    main()

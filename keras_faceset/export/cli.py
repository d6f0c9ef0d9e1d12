"""`keras-faceset export MODEL BASE_DIR`: registered on the main parser by `add_export_command`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_export_command(subparsers) -> argparse.ArgumentParser:
    """Add `export MODEL BASE_DIR [--model PATH] [--version N] [--name NAME] [--float16]
    [--precision float32|bfloat16] [--xla] [--no-fold] [--no-warmup]` to the
    `add_subparsers()` object of the main parser; its handler is set as `run`."""
    parser = subparsers.add_parser(
        "export",
        help="write a TF Serving SavedModel to BASE_DIR/NAME/VERSION",
        description="Export a zoo preset or a .keras model as a versioned SavedModel with "
        "serving_default, embed_images, aggregate and embed_encoded signatures.",
    )
    parser.add_argument("model", help="a zoo preset name (see `list`) or a .keras file")
    parser.add_argument("base_dir", help="model base directory (TF Serving's --model_base_path)")
    parser.add_argument(
        "--model",
        dest="model_file",
        metavar="PATH",
        default=None,
        help="a .keras file (e.g. a fine-tuned set model) exported under the preset MODEL's "
        "name and input size",
    )
    parser.add_argument("--version", type=int, default=None, help="default: the next free one")
    parser.add_argument("--name", default=None, help="served model name (default: MODEL's)")
    parser.add_argument("--float16", action="store_true", help="mixed precision (GPU serving)")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16: the folded graph computes in bfloat16 (CPUs with AVX512_BF16 or AMX; "
        "about 1.9x images/s, LFW unchanged); default: %(default)s",
    )
    parser.add_argument("--xla", action="store_true", help="jit-compile with XLA")
    parser.add_argument(
        "--no-fold",
        action="store_true",
        help="keep batch norm as separate ops (default: folded into the convolutions)",
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip assets.extra warm-up requests"
    )
    parser.set_defaults(run=run_export)
    return parser


def run_export(args: argparse.Namespace) -> None:
    from keras_faceset.export import ExportSpec, configure_gpu, export_saved_model

    configure_gpu()
    if args.model_file is not None:
        if args.model.endswith(".keras"):
            raise ValueError(
                f"with --model, MODEL names the zoo preset the file was fine-tuned from "
                f"(its name and input size), got the file {args.model}."
            )
        spec = ExportSpec.from_file(args.model_file, preset=args.model, name=args.name)
    elif Path(args.model).suffix == ".keras":
        spec = ExportSpec.from_file(args.model, name=args.name)
    else:
        spec = ExportSpec.from_preset(args.model)
        if args.name:
            spec = dataclasses.replace(spec, name=args.name)
    target = export_saved_model(
        spec,
        args.base_dir,
        version=args.version,
        float16=args.float16,
        xla=args.xla,
        fold=not args.no_fold,
        precision=args.precision,
        warmup_requests=not args.no_warmup,
    )
    print(target)

"""`keras-faceset export MODEL BASE_DIR`: registered on the main parser by `add_export_command`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

TFLITE_PRECISIONS = ("int8", "int8-dynamic")
"""`keras_faceset.models.quantize.TFLITE_PRECISIONS`, written out: parsing loads no Keras."""


def add_export_command(subparsers) -> argparse.ArgumentParser:
    """Add `export MODEL BASE_DIR [--model PATH] [--version N] [--name NAME] [--float16]
    [--precision float32|bfloat16|int8|int8-dynamic] [--calibration DIR] [--xla] [--no-fold]
    [--no-warmup]` to the `add_subparsers()` object of the main parser; its handler is set
    as `run`."""
    parser = subparsers.add_parser(
        "export",
        help="write a TF Serving SavedModel to BASE_DIR/NAME/VERSION (int8: a LiteRT model)",
        description="Export a zoo preset or a .keras model as a versioned SavedModel with "
        "serving_default, embed_images, aggregate and embed_encoded signatures; with "
        "--precision int8 or int8-dynamic, an image preset's TFLite model "
        "BASE_DIR/NAME.PRECISION.tflite and its manifest NAME.PRECISION.json, for LiteRT (TF "
        "Serving cannot run TFLite models).",
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
        choices=("float32", "bfloat16", *TFLITE_PRECISIONS),
        default="float32",
        help="bfloat16: the folded graph computes in bfloat16 (CPUs with AVX512_BF16 or AMX; "
        "about 1.9x images/s, LFW unchanged); int8, int8-dynamic: the .tflite model of that "
        "--precision elsewhere, for LiteRT, not TF Serving (docs/serving.md); default: "
        "%(default)s",
    )
    parser.add_argument(
        "--calibration",
        metavar="DIR",
        default=None,
        help="with --precision int8: calibrate on the face photos in DIR (searched "
        "recursively; up to 256 sampled, at least 32 must show a face) instead of LFW's",
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

    if args.calibration is not None and args.precision != "int8":
        raise ValueError(
            "--calibration is for --precision int8 (it sets its activation ranges); "
            f"--precision {args.precision} needs none: drop it or ask for int8"
        )
    if args.precision in TFLITE_PRECISIONS:
        print(_export_int8(args))
        return
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


SAVED_MODEL_ONLY = {
    "model_file": "--model",
    "version": "--version",
    "float16": "--float16",
    "xla": "--xla",
    "no_fold": "--no-fold",
    "no_warmup": "--no-warmup",
}
"""Options of the SavedModel export that a TFLite (int8, int8-dynamic) export has no use for."""


def _export_int8(args: argparse.Namespace) -> Path:
    from keras_faceset.export import export_int8

    given = [option for dest, option in SAVED_MODEL_ONLY.items() if getattr(args, dest)]
    if given or Path(args.model).suffix == ".keras":
        what = ", ".join(given) if given else f"a .keras MODEL ({args.model})"
        raise ValueError(
            f"--precision {args.precision} writes a preset's .tflite model (LiteRT), which takes "
            f"none of {what}: those are for SavedModels; export a fine-tuned or .keras model "
            "with --precision float32 or bfloat16"
        )
    return export_int8(
        args.model,
        args.base_dir,
        name=args.name,
        calibration=args.calibration,
        precision=args.precision,
    )

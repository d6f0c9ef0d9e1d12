"""The `keras-faceset` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_faceset import __version__


def _list(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    table = zoo.list_models()[["name", "task", "backbone", "input_size", "licence", "lfw_accuracy"]]
    print(table.to_string(index=False))


def _info(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    card = zoo.info(args.model)
    print(card.pop("card") or "(no model card)")
    for key, value in card.items():
        print(f"{key}: {value}")


def _download(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    names = list(zoo.PRESETS) if args.all else [args.model]
    if not names[0]:
        raise ValueError("give a model name or --all")
    for name in names:
        print(f"{name}: {zoo.download(name, cache_dir=args.cache_dir)}")


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"keras-faceset {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

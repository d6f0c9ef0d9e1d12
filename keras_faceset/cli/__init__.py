"""The `keras-faceset` command line: one module per command (`export` lives in the export
package); `DESCRIPTION` is what `keras-faceset --help` says."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_faceset import __version__
from keras_faceset.cli import detect, embed, evaluate, gallery, presets, train, verify
from keras_faceset.cli.common import add_verbose
from keras_faceset.cli.logs import quiet_tensorflow

DESCRIPTION = """Face recognition on images and sets of images with the keras-faceset zoo.

Exit codes: 0 done (`verify`: same person); 1 an error (`verify`: different people); 2 `verify`
made no decision (an error, no face found, no threshold) or `verify --pairs` skipped a pair.
TensorFlow's C++ log lines are off unless `--verbose`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-faceset", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"keras-faceset {__version__}")
    add_verbose(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, **kwargs) -> argparse.ArgumentParser:
        command = commands.add_parser(name, **kwargs)
        add_verbose(command, default=argparse.SUPPRESS)  # also after the command
        return command

    for module in (presets, verify, embed, evaluate, gallery, detect, train):
        module.register(add_command)

    from keras_faceset.export.cli import add_export_command

    add_verbose(add_export_command(commands), default=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`build_parser`'s arguments. argparse leaves verify's optional A B empty when an option
    comes between them and MODEL (`verify nan --model f.keras A B`): they are taken from what
    it leaves over."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "run", None) is verify.run:
        while extra and not extra[0].startswith("-") and args.b is None:
            setattr(args, "a" if args.a is None else "b", extra.pop(0))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.verbose:
            quiet_tensorflow()
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, OSError, ImportError) as error:
        print(f"keras-faceset {args.command}: error: {error}", file=sys.stderr)
        return 2 if args.command == "verify" else 1

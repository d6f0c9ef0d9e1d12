"""The tf.distribute strategies a training entry point offers, by name, and their
command-line options. No TensorFlow here: the CLI declares them without loading it;
`keras_faceset.models.distribute.make_strategy` builds them."""

from __future__ import annotations

import argparse

STRATEGIES = ("default", "mirrored", "multi_worker")


def add_strategy_option(parser: argparse.ArgumentParser) -> None:
    """`--strategy default|mirrored|multi_worker` and `--cpu-replicas` on a training script."""
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy: one device, all GPUs (or --cpu-replicas CPU devices), "
        "or the workers of TF_CONFIG (default: %(default)s)",
    )
    parser.add_argument(
        "--cpu-replicas",
        type=int,
        default=2,
        help="logical CPU devices of --strategy mirrored without a GPU (default: %(default)s)",
    )

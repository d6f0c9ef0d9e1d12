"""`list`, `info` and `download`: the zoo's presets."""

from __future__ import annotations

import argparse


def register(add_command) -> None:
    """Add the commands through `add_command(name, **kwargs) -> parser`."""
    add_command("list", help="presets with licence and measured accuracy").set_defaults(
        run=list_presets
    )
    info = add_command("info", help="a preset's model card")
    info.add_argument("model")
    info.set_defaults(run=show_info)

    download = add_command("download", help="fetch and convert weights into the cache")
    download.add_argument("model", nargs="?", default="")
    download.add_argument("--all", action="store_true", help="every preset")
    download.add_argument("--cache-dir", default=None)
    download.set_defaults(run=download_weights)


def list_presets(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    table = zoo.list_models()
    columns = ["name", "task", "backbone", "licence", "lfw_accuracy"]
    print(table[[*columns, "lfw_sets_degraded_tar@far=1e-2"]].to_string(index=False))


def show_info(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    card = zoo.info(args.model)
    print(card.pop("card") or "(no model card)")
    source = card.pop("source")
    for key, value in [*card.items(), *((f"source.{k}", v) for k, v in source.items())]:
        print(f"{key}: {value}")


def download_weights(args: argparse.Namespace) -> None:
    from keras_faceset import zoo

    names = list(zoo.PRESETS) if args.all else [args.model]
    if not names[0]:
        raise ValueError("give a model name or --all")
    for name in names:
        print(f"{name}: {zoo.download(name, cache_dir=args.cache_dir)}")

"""The model zoo: `zoo.list()`, `zoo.info(name)`, `zoo.load(name)`, `zoo.download(name)`,
`zoo.results()` (every measured figure)."""

from keras_faceset.zoo.presets import PRESETS, Preset, Source
from keras_faceset.zoo.registry import (
    build_head,
    download,
    get_preset,
    info,
    list_models,
    load,
    results,
)

list = list_models  # noqa: A001  (zoo.list(), as in timm's list_models)

__all__ = [
    "PRESETS",
    "Preset",
    "Source",
    "build_head",
    "download",
    "get_preset",
    "info",
    "list",
    "list_models",
    "load",
    "results",
]

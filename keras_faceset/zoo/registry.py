"""The model zoo: `list_models()`, `info(name)`, `load(name)` and `download(name)`."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import warnings
from pathlib import Path

import pandas as pd

from keras_faceset.zoo import cache
from keras_faceset.zoo.presets import PRESETS, Preset

REPO_ZOO = Path(__file__).resolve().parents[2] / "zoo"
"""Model cards and measured results, in a source checkout."""

_NOTICES_SHOWN: set[str] = set()


def get_preset(name: str) -> Preset:
    """The preset called `name`; a ValueError lists close matches for an unknown name."""
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} Available: {', '.join(sorted(PRESETS))}.")


def list_models() -> pd.DataFrame:
    """One row per preset, with its measured LFW View 2 accuracy from `zoo/results.csv`."""
    rows = [
        {
            "name": p.name,
            "task": p.task,
            "backbone": p.backbone,
            "input_size": p.input_size,
            "embedding_dim": p.embedding_dim,
            "licence": p.licence,
            "source": p.source.url,
            "sha256": p.source.sha256,
            "lfw_accuracy": _best_lfw_accuracy(p.name),
        }
        for p in PRESETS.values()
    ]
    return pd.DataFrame(rows)


def info(name: str) -> dict:
    """The preset as a dict, with its model card (`zoo/<name>.md`) under "card" when present."""
    preset = get_preset(name)
    card = REPO_ZOO / f"{name}.md"
    return dataclasses.asdict(preset) | {"card": card.read_text() if card.is_file() else None}


def load(
    name: str,
    weights: str | os.PathLike | None = "pretrained",
    cache_dir: str | os.PathLike | None = None,
):
    """Build preset `name` with its weights.

    Args:
        weights: "pretrained" (resolve and convert the published weights, cached), None (random
            initialisation, for training from scratch), or a path: a converted `.weights.h5`
            file or the original source file (checked against the preset's sha256).
        cache_dir: where converted weights are cached (default `$KERAS_FACESET_HOME`).
    """
    preset = get_preset(name)
    if weights is None:
        return _call(preset.builder)()
    _licence_notice(preset)
    if weights == "pretrained":
        return _load_pretrained(preset, cache.home_dir(cache_dir))
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.name.endswith(".weights.h5"):
        model = _call(preset.builder)()
        model.load_weights(path)
        return model
    cache.verify_sha256(path, preset.source.sha256, preset.source.filename)
    return _call(preset.converter)(path)


def download(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch and convert preset `name` into the cache (for images and offline machines)."""
    preset = get_preset(name)
    _load_pretrained(preset, cache.home_dir(cache_dir))
    return _cached_weights(preset, cache.home_dir(cache_dir))


def _cached_weights(preset: Preset, home: Path) -> Path:
    return home / preset.name / f"{preset.name}.weights.h5"


def _load_pretrained(preset: Preset, home: Path):
    target = _cached_weights(preset, home)
    model = _from_cache(preset, target)
    if model is not None:
        return model
    with cache.file_lock(target.with_name(".lock")):
        model = _from_cache(preset, target)  # another process may have converted meanwhile
        if model is not None:
            return model
        model = _call(preset.converter)(cache.find_source(preset.source))
        with cache.atomic_path(target, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
            digest = cache.sha256_file(tmp)
            with cache.atomic_path(_digest_file(target)) as tmp_digest:
                tmp_digest.write_text(digest + "\n")
    return model


def _from_cache(preset: Preset, target: Path):
    """The model with cached weights, or None when there are none or they are corrupt."""
    digest_file = _digest_file(target)
    if not (target.is_file() and digest_file.is_file()):
        return None
    try:
        cache.verify_sha256(target, digest_file.read_text().strip(), f"{preset.name} weights")
    except ValueError as error:
        warnings.warn(f"{error} Converting again from the source.", stacklevel=3)
        return None
    model = _call(preset.builder)()
    model.load_weights(target)
    return model


def _digest_file(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _call(spec: str):
    module, attribute = spec.split(":")
    return getattr(importlib.import_module(module), attribute)


def _licence_notice(preset: Preset) -> None:
    if preset.non_commercial and preset.name not in _NOTICES_SHOWN:
        _NOTICES_SHOWN.add(preset.name)
        warnings.warn(f"{preset.name} weights: {preset.licence}.", UserWarning, stacklevel=3)


def _best_lfw_accuracy(name: str) -> float:
    results = REPO_ZOO / "results.csv"
    if not results.is_file():
        return float("nan")
    table = pd.read_csv(results)
    rows = table[(table["model"] == name) & (table["protocol"] == "lfw_view2")]
    return float(rows["accuracy"].max()) if len(rows) else float("nan")

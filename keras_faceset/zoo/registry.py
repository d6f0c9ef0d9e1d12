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

PACKAGE_ZOO = Path(__file__).resolve().parent
"""The zoo's package data: `results.csv`, `cards/<name>.md`, `protocols/` and `weights/`."""
RESULTS_CSV = PACKAGE_ZOO / "results.csv"
CARDS = PACKAGE_ZOO / "cards"
PROTOCOLS = PACKAGE_ZOO / "protocols"
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"
"""Trained set heads, package data."""
FORMS = ("model", "task", "backbone", "head")

_NOTICES_SHOWN: set[str] = set()


def get_preset(name: str) -> Preset:
    """The preset called `name`; a ValueError lists close matches for an unknown name."""
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.7)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} Available: {', '.join(sorted(PRESETS))}.")


def results() -> pd.DataFrame:
    """Every measured figure of the zoo (`results.csv`): one row per (model, protocol,
    alignment), with the command that measured it. Set presets' rows are under
    `preset.head.results_model`."""
    return pd.read_csv(RESULTS_CSV)


def list_models() -> pd.DataFrame:
    """One row per preset, with its best measured figures from `results()`: LFW View 2
    accuracy (image models) and TAR at FAR 1e-2 on degraded LFW-sets (set models)."""
    table = results()
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
            "lfw_accuracy": _best_result(table, p, "lfw_view2", "accuracy"),
            "lfw_sets_degraded_tar@far=1e-2": _best_result(
                table, p, "lfw_sets_degraded", "tar@far=1e-2"
            ),
        }
        for p in PRESETS.values()
    ]
    return pd.DataFrame(rows)


def info(name: str) -> dict:
    """The preset as a dict, with its model card (markdown, `cards/<name>.md` of the package)
    under "card"."""
    preset = get_preset(name)
    card = CARDS / f"{name}.md"
    return dataclasses.asdict(preset) | {"card": card.read_text(encoding="utf-8")}


def load(
    name: str,
    weights: str | os.PathLike | None = "pretrained",
    cache_dir: str | os.PathLike | None = None,
    form: str = "model",
    trainable_backbone: bool = False,
):
    """Build preset `name` with its weights.

    Args:
        weights: "pretrained" (resolve and convert the published weights, cached), None (random
            initialisation, for training from scratch), or a path: a converted `.weights.h5`
            file or the original source file (checked against the preset's sha256). For a set
            model (nan, qan) a path is the head's `.weights.h5`.
        cache_dir: where converted weights are cached (default `$KERAS_FACESET_HOME`).
        form: "model" (the default: the image backbone of an image preset, the task of a set
            preset), "task" (image sets `(B, T, H, W, 3)` + mask -> set embedding and frame
            weights: backbone + head; an image preset's head is `MeanHead`), "backbone"
            (images `(N, H, W, 3)` -> frame embeddings) or "head" (precomputed frame
            embeddings `(B, T, D)` + mask -> set embedding and weights).
        trainable_backbone: for a task, whether `fit` also trains the backbone. False (the
            default) freezes it (`task.backbone.trainable = False`; its batch norm then runs in
            inference mode), so fine-tuning trains the head only, as the shipped heads were
            trained; True fine-tunes end to end (use a small learning rate).
    """
    preset = get_preset(name)
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    if form == "model":
        form = "task" if preset.is_set_model else "backbone"
    head_weights = weights if preset.is_set_model else None
    if form == "head":
        return _load_head(preset, head_weights)
    backbone_weights = weights
    if preset.is_set_model:
        backbone_weights = None if weights is None else "pretrained"
    backbone = _load_backbone(get_preset(preset.backbone_preset), backbone_weights, cache_dir)
    if form == "backbone":
        return backbone
    from keras_faceset.models import set_embedding_model

    backbone.trainable = trainable_backbone
    return set_embedding_model(backbone, _load_head(preset, head_weights))


def _load_backbone(preset: Preset, weights, cache_dir):
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
        remedy = (
            f"Give a .weights.h5 file saved from {preset.name} (model.save_weights), its "
            f"source file {preset.source.filename}, or weights='pretrained'."
        )
        _load_weights_file(model, path, preset.name, remedy)
        return model
    cache.verify_sha256(path, preset.source.sha256, preset.source.filename)
    return _call(preset.converter)(path)


def build_head(name: str, weights: str | os.PathLike | None = None, **overrides):
    """The head of preset `name`: ``builder(**{**kwargs, **overrides})`` of its `Preset.head`,
    with random weights, or those of the `.weights.h5` file `weights`.

    ``build_head("nan")`` is the architecture of ``zoo.load("nan", weights=None, form="head")``,
    ``build_head("nan1", feature_shape=256)`` a NAN-1 head reading 256-d frame features and
    ``build_head("dlib_resnet")`` an image preset's `MeanHead`.
    """
    spec = get_preset(name).head
    head = _call(spec.builder)(**{**spec.kwargs, **overrides})
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        remedy = f"Give a .weights.h5 file saved from a {name} head (head.save_weights)."
        _load_weights_file(head, path, f"the {name} head", remedy)
    return head


def _load_head(preset: Preset, weights):
    """The preset's head; `weights`: "pretrained" (the shipped file, if it has one), None or a
    path."""
    if weights == "pretrained":
        spec = preset.head
        if spec.weights is None:
            return build_head(preset.name)
        weights = SHIPPED_WEIGHTS / spec.weights
        cache.verify_sha256(weights, spec.sha256, f"{preset.name} head weights")
    return build_head(preset.name, weights)


def download(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch and convert preset `name` into the cache (for images and offline machines)."""
    preset = get_preset(name)
    preset = get_preset(preset.backbone_preset)  # a set head ships inside the package
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
    try:
        _load_weights_file(model, target, preset.name, "Converting again from the source.")
    except ValueError as error:  # e.g. written for the architecture of another version
        warnings.warn(str(error), stacklevel=3)
        return None
    return model


def _load_weights_file(model, path: Path, what: str, remedy: str) -> None:
    """`model.load_weights(path)`; Keras's errors for a file of another architecture or one that
    is not HDF5 (which name neither file nor model) become a ValueError naming both and
    `remedy`. The caller drops the model: nothing half-loaded is used."""
    try:
        model.load_weights(path)
    except (OSError, ValueError) as error:
        reason = " ".join(" ".join(str(error).split("\n\n")[:2]).split())
        message = f"cannot load {path} as the weights of {what} ({reason}). {remedy}"
        raise ValueError(message) from error


def _digest_file(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _call(spec: str):
    module, attribute = spec.split(":")
    return getattr(importlib.import_module(module), attribute)


def _licence_notice(preset: Preset) -> None:
    if preset.non_commercial and preset.name not in _NOTICES_SHOWN:
        _NOTICES_SHOWN.add(preset.name)
        warnings.warn(f"{preset.name} weights: {preset.licence}.", UserWarning, stacklevel=3)


def _best_result(table: pd.DataFrame, preset: Preset, protocol: str, column: str) -> float:
    """The best `column` measured for `preset` on `protocol` in `table` (NaN if none)."""
    model = preset.head.results_model if preset.head else preset.name
    rows = table[(table["model"] == model) & (table["protocol"] == protocol)]
    return float(rows[column].max()) if len(rows) else float("nan")

"""What the zoo reads ships in the wheel (package data, not repository paths); every preset has
a model card written for users that agrees with the measured figures of `results.csv`."""

import fnmatch
import re
from pathlib import Path

import pytest

import keras_faceset
from keras_faceset import zoo
from keras_faceset.eval.sets import lfw_sets_protocol_dir
from keras_faceset.zoo.registry import CARDS, RESULTS_CSV, SHIPPED_WEIGHTS
from tests.conftest import REPO

FORBIDDEN = {
    "machine path": r"(?<![\w.])/(work|home|root|tmp|mnt|scratch|Users)/",
    "scratch folder": r"scratch/",
    "the shared data folder": r"\.\./shared",
    "session": r"(?i)\bsessions?\b",
    "issue": r"(?i)\bissues?\b|#\d+",
    "commit": r"(?i)\bcommit\b|\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b",
    "machine": r"(?i)\bthis (machine|venv)\b",
    "internal model id": r"\b\w+_dlib\b",
}


def package_data_globs() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-data"]["keras_faceset"]


def is_package_data(path: Path) -> bool:
    relative = path.resolve().relative_to(Path(keras_faceset.__file__).resolve().parent)
    return any(fnmatch.fnmatch(relative.as_posix(), glob) for glob in package_data_globs())


def test_results_protocols_and_head_weights_are_package_data():
    protocols = sorted(lfw_sets_protocol_dir().glob("lfw_sets_*.jsonl"))
    assert [p.name for p in protocols] == ["lfw_sets_clean.jsonl", "lfw_sets_degraded.jsonl"]
    weights = [
        SHIPPED_WEIGHTS / p.head.weights for p in zoo.PRESETS.values() if p.head and p.head.weights
    ]
    assert len(weights) == 4
    for path in [RESULTS_CSV, *protocols, *weights]:
        assert path.is_file() and is_package_data(path), path


@pytest.mark.parametrize("name", sorted(zoo.PRESETS))
def test_the_card_exists_and_is_package_data(name):
    card = zoo.info(name)["card"]
    assert re.match(rf"# {name}\b", card), card[:80]  # titled by the preset's name
    assert is_package_data(CARDS / f"{name}.md")


@pytest.mark.parametrize("name", sorted(zoo.PRESETS))
def test_the_card_has_no_machine_paths_or_internal_wording(name):
    card = zoo.info(name)["card"]
    found = {
        what: match.group(0)
        for what, pattern in FORBIDDEN.items()
        if (match := re.search(pattern, card))
    }
    assert not found, f"{name}'s card has {found}"


@pytest.mark.parametrize("name", sorted(zoo.PRESETS))
def test_the_card_shows_the_recorded_figures(name):
    """View 2 accuracy (percent, 2 decimals) and LFW-sets TARs (4 decimals: steps of 0.0025)."""
    preset = zoo.get_preset(name)
    model = preset.head.results_model if preset.task == "set-embedding" else name
    results = zoo.results()
    rows = results[results["model"] == model]
    figures = [f"{100 * acc:.2f}" for acc in rows.query("protocol == 'lfw_view2'")["accuracy"]]
    sets = rows[rows["protocol"].str.startswith("lfw_sets_")][["tar@far=1e-2", "tar@far=1e-3"]]
    figures += [f"{tar:.4f}" for tar in sets.to_numpy().ravel()]
    assert figures, f"no recorded figures for {name}"
    card = zoo.info(name)["card"]
    assert [f for f in figures if f not in card] == []


def test_the_patterns_catch_what_cards_used_to_say():
    said = [
        "--cache /work/scratch/sets",
        "`nan2_dlib.weights.h5`",
        "script variants of this session",
        "Against the issue's targets",
        "Previous weights, commit 9523b7f",
        "on this machine (TF 2.21, CPU)",
        "`../shared/bin/fetch-facenet-h5` extracts it",
    ]
    for text in said:
        assert any(re.search(pattern, text) for pattern in FORBIDDEN.values()), text
    allowed = "trained from scratch, sha256 " + "5553" * 16
    assert not any(re.search(pattern, allowed) for pattern in FORBIDDEN.values())

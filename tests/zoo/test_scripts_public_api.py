"""The research scripts under zoo/ are clients of the public API, read with `ast`: no `sys.path`
tricks, no imports between scripts, no private names of keras_faceset, no machine paths (nor
defaults guessed from the folders next to the checkout)."""

import ast
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "zoo").rglob("*.py"))
SCRIPT_NAMES = {path.stem for path in SCRIPTS}
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|home|tmp|root|Users|mnt)/")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def problems(source: str) -> list[str]:
    """What in `source` breaks the rules, one line each."""
    tree = ast.parse(source)
    found = []
    package_names = set()  # names bound to keras_faceset modules or objects
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in SCRIPT_NAMES:
                    found.append(f"line {node.lineno}: imports the script {alias.name}")
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"line {node.lineno}: imports private {alias.name}")
                if top == "keras_faceset":
                    package_names.add(alias.asname or top)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            top = module.split(".")[0]
            if node.level or top in SCRIPT_NAMES:
                found.append(f"line {node.lineno}: imports from the script {module or '.'}")
            if top == "keras_faceset" or top in SCRIPT_NAMES:
                if any(_private(part) for part in module.split(".")):
                    found.append(f"line {node.lineno}: imports from private {module}")
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"line {node.lineno}: imports private {module}.{alias.name}")
                    package_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MACHINE_PATH.search(node.value):
                found.append(f"line {node.lineno}: machine path in {node.value[:60]!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            # `REPO.parent / "shared"`: a default guessed from this checkout's neighbours
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and str(side.value).split("/")[0] == "shared":
                    found.append(f"line {node.lineno}: path into a neighbouring shared folder")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "sys" and node.attr == "path":
                found.append(f"line {node.lineno}: uses sys.path")
            elif node.value.id in package_names and _private(node.attr):
                found.append(f"line {node.lineno}: uses private {node.value.id}.{node.attr}")
    found += [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(source.splitlines(), 1)
        if "noqa: E402" in line
    ]
    return found


def test_every_script_is_found():
    names = {path.relative_to(REPO).as_posix() for path in SCRIPTS}
    assert {"zoo/train_set_heads.py", "zoo/figures/plot_set_weights.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_script_uses_the_public_api_only(path):
    assert problems(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source, what",
    [
        ("import sys\nsys.path.insert(0, 'zoo')\n", "sys.path"),
        ("from train_set_heads import sample_sets\n", "the script train_set_heads"),
        ("import evaluate_lfw_sets\n", "the script evaluate_lfw_sets"),
        ("from keras_faceset.eval.lfw import _load_cache\n", "private keras_faceset.eval.lfw"),
        ("from keras_faceset.data import lfw_sets\nlfw_sets._relative(1, 2, 3)\n", "private"),
        ("import keras_faceset.zoo._x\n", "private keras_faceset.zoo._x"),
        ("p.add_argument('--data', default='/work/shared/data/lfw')\n", "machine path"),
        ("CACHE = '/tmp/sets'\n", "machine path"),
        ("DAT = REPO.parent / 'shared' / 'weights'\n", "neighbouring shared folder"),
        ("'''python zoo/x.py --chips /home/me/chips'''\n", "machine path"),
        ("from keras_faceset import zoo  # noqa: E402\n", "noqa: E402"),
    ],
)
def test_the_check_finds_each_kind_of_problem(source, what):
    found = problems(source)
    assert len(found) >= 1 and any(what in problem for problem in found), found


def test_the_check_accepts_public_imports_and_relative_paths():
    source = (
        "from keras_faceset.models import MeanHead, pad_sets\n"
        "from keras_faceset.zoo import get_preset\n"
        "'''python zoo/x.py --data ../shared/data/lfw --out $OUT/figures'''\n"
        "print(get_preset('nan').head.__class__)\n"
    )
    assert problems(source) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_script_help_runs_from_another_folder(path, tmp_path):
    result = subprocess.run(
        [sys.executable, str(path), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")

"""docs/reliability.md and the tests agree: every cited test exists, every reliability test is
cited, and a case is "not yet" exactly when its tests are expected to fail."""

import ast
import re

from tests.conftest import REPO

DOCS = (REPO / "docs" / "reliability.md").read_text()
CITED = re.findall(r"`([\w/]+\.py)::(\w+)`", DOCS)


def _tests(path):
    """{test name: whether it is marked xfail}."""
    tree = ast.parse((REPO / "tests" / path).read_text())
    return {
        node.name: "xfail" in " ".join(ast.unparse(d) for d in node.decorator_list).lower()
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_cited_test_exists():
    for path, name in CITED:
        assert name in _tests(path), f"{path}::{name}"


def test_every_reliability_test_is_in_the_table():
    cited = {name for path, name in CITED if path.startswith("reliability/")}
    for module in (REPO / "tests" / "reliability").glob("test_*.py"):
        if module.name == "test_catalogue.py":
            continue
        for name in _tests(f"reliability/{module.name}"):
            assert name in cited, f"{module.name}::{name} is not in docs/reliability.md"


def test_not_yet_rows_are_the_xfail_tests():
    for row in DOCS.splitlines():
        if not row.startswith("|") or "::" not in row:
            continue
        tests = re.findall(r"`(reliability/[\w/]+\.py)::(\w+)`", row)
        xfail = {_tests(path)[name] for path, name in tests}
        assert xfail <= {"| not yet |" in row}, row

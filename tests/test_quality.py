"""The quality gates run with the tests: ruff check, ruff format --check, mypy --strict on src/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "src", "tests", "bench"],
        ["ruff", "format", "--check", "src", "tests", "bench"],
        ["mypy", "--strict", "src"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_quality_gate_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def hidden_tests(tree: ast.Module) -> list[str]:
    """Test functions pytest never collects: defined inside a function that is not a test
    (a helper whose body a ``def test_…`` was indented into by mistake)."""
    hidden = []
    for node in tree.body:
        holders = node.body if isinstance(node, ast.ClassDef) else [node]
        for holder in holders:
            if isinstance(holder, FUNCTIONS) and not holder.name.startswith("test_"):
                hidden += [
                    f"{inner.name} (line {inner.lineno}, inside {holder.name})"
                    for inner in ast.walk(holder)
                    if inner is not holder
                    and isinstance(inner, FUNCTIONS)
                    and inner.name.startswith("test_")
                ]
    return hidden


def test_no_test_is_hidden_inside_a_helper_where_pytest_cannot_find_it() -> None:
    """One was: an FTP test indented under test_workers.py's TFTP helper, never run."""
    found = {
        str(path.relative_to(ROOT)): hidden
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if (hidden := hidden_tests(ast.parse(path.read_text())))
    }
    assert found == {}


def test_the_hidden_test_check_finds_one_indented_under_a_helper() -> None:
    source = "def helper():\n    return 1\n\n    def test_never_run():\n        assert False\n"
    assert hidden_tests(ast.parse(source)) == ["test_never_run (line 4, inside helper)"]

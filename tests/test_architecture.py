"""The layers of docs/architecture.md hold: imports point one way, the core stays pure."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fleetkey"

# package -> fleetkey packages it may import (besides errors, clock and itself)
ALLOWED = {
    "core": set(),
    "authority": {"core"},
    "store": {"core"},
    "serve": {"core", "store"},
    "ops": {"core", "authority", "store", "simulate"},
    "api": {"core", "authority", "store", "ops"},
    "ui": {"core", "authority", "store", "ops"},
    "emulate": {"core"},
    "simulate": {"core"},
    "cli": {"core", "authority", "store", "serve", "ops", "api", "ui", "emulate", "simulate"},
}


def test_importing_core_loads_no_framework() -> None:
    code = (
        "import sys, fleetkey.core.codec, fleetkey.core.rules, fleetkey.core.issuing, "
        "fleetkey.core.features\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlalchemy', 'starlette', 'click', 'rich', 'fastapi', 'alembic'})\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fleetkey."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("fleetkey."))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    allowed = ALLOWED[package] | {package, "errors", "clock"}
    for path in sorted((SRC / package).rglob("*.py")):
        wrong = imported_packages(path) - allowed
        assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)}"


def test_errors_module_imports_nothing_from_fleetkey() -> None:
    assert imported_packages(SRC / "errors.py") == set()


def test_only_the_system_clock_reads_the_calendar_time() -> None:
    readers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"\b(datetime\.now|datetime\.utcnow|date\.today)\(", path.read_text("utf-8"))
    )
    assert readers == ["clock.py"]


def test_only_signing_and_the_key_file_codec_touch_cryptography_hazmat() -> None:
    """Signatures (``core/signing.py``) and private keys at rest (``core/keyfile.py``): nothing
    else holds a primitive."""
    users = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "cryptography.hazmat" in path.read_text(encoding="utf-8")
    )
    assert users == ["core/keyfile.py", "core/signing.py"]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


ADAPTERS = ("http", "tftp", "ftp")  # serve/<protocol>/: framing around serve.fetching


def serve_modules_imported(path: Path) -> set[str]:
    """The ``fleetkey.serve.<module>`` names ``path`` imports (``http`` for serve.http.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["fleetkey", "serve"] and len(parts) > 2:
                found.add(parts[2])
    return found


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if (SRC / "serve" / a).is_dir()])
def test_a_protocol_adapter_imports_no_other_adapter(adapter: str) -> None:
    others = set(ADAPTERS) - {adapter}
    for path in sorted((SRC / "serve" / adapter).rglob("*.py")):
        wrong = serve_modules_imported(path) & others
        assert not wrong, f"{path.relative_to(SRC)} imports the {sorted(wrong)} adapter"


@pytest.mark.parametrize(
    "module",
    [
        "fetching",
        "recorder",
        "content",
        "tree",
        "layout",
        "addresses",
        "view",
        "uploads",
        "metrics",
    ],
)
def test_the_protocol_neutral_core_of_serving_imports_no_adapter(module: str) -> None:
    wrong = serve_modules_imported(SRC / "serve" / f"{module}.py") & set(ADAPTERS)
    assert not wrong, f"serve/{module}.py imports the {sorted(wrong)} adapter"


TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    "path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS))
)
def test_tests_import_helper_modules_never_a_conftest_or_another_test_module(path: Path) -> None:
    """What several test modules share is in tests/helpers.py, tests/serving.py, tests/pg.py or
    tests/tmpfs.py; a conftest holds fixtures, reached by pytest, not by import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            last = name.rsplit(".", 1)[-1]
            shared = last == "conftest" or last.startswith("test_")
            assert not (name.startswith("tests.") and shared), (
                f"{path.relative_to(TESTS)} imports {name}"
            )

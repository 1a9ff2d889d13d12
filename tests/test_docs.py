"""Every command has --help and a section in docs/cli.md; the README opens with two commands."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fleetkey.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, loading lazily loaded commands (cli/lazy.py) as it goes."""
    found: list[tuple[str, ...]] = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, f"{' '.join((*prefix, name))} is listed but does not load"
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
    return found


ALL = commands(cli)


def test_there_are_commands() -> None:
    assert ("issue", "batch") in ALL
    assert ("keys", "import-public") in ALL


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_command_is_documented(path: tuple[str, ...]) -> None:
    assert re.search(rf"^#+ `fleetkey {' '.join(path)}\b", CLI_DOC, re.MULTILINE), (
        f"docs/cli.md has no section for fleetkey {' '.join(path)}"
    )


@pytest.mark.parametrize(
    "path", [p for p in ALL if p[0] not in {"keys", "issue"} or len(p) > 1], ids=" ".join
)
def test_documented_options_exist(path: tuple[str, ...]) -> None:
    section = re.search(
        rf"^#+ `fleetkey {' '.join(path)}\b.*?(?=^#+ `fleetkey |\Z)",
        CLI_DOC,
        re.MULTILINE | re.DOTALL,
    )
    assert section is not None
    help_text = CliRunner().invoke(cli, [*path, "--help"]).output
    for option in set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", section.group(0))):
        assert option in help_text, f"docs/cli.md names {option} for {' '.join(path)}"


def test_readme_opens_with_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.DOTALL)
    assert first_block is not None
    lines = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pytest" in lines[1]
    assert "fleetkey" in lines[0]

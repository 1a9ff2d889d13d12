"""Commands are loaded when they run (cli/lazy.py): what starting ``fleetkey`` imports.

Timings depend on the machine (bench/startup.py measures them); what each start imports does
not, so that is what is asserted, in a fresh interpreter each time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fleetkey.cli.main import COMMANDS, cli

from tests.helpers import Fleetkey

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvloop", "cryptography", "rich")
PROBE = """
import json, sys
from fleetkey.cli.main import cli
try:
    cli(args=sys.argv[1:], prog_name="fleetkey")
except SystemExit:
    pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
print("LOADED " + json.dumps(loaded), file=sys.stderr)
"""


def loaded_by(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """The heavy top-level packages ``fleetkey ARGS`` imported, run in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(HEAVY))), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("LOADED "))
    loaded: list[str] = json.loads(line.removeprefix("LOADED "))
    return loaded


class TestLazyCommands:
    @pytest.mark.parametrize("name", sorted(COMMANDS))
    def test_each_entry_loads_the_command_of_its_name_with_its_summary(self, name: str) -> None:
        command = COMMANDS[name].load(name)
        assert command.name == name
        first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
        assert COMMANDS[name].summary == first_paragraph, (
            f"update the summary of {name!r} in cli/main.py: the command's help now starts "
            f"{first_paragraph!r}"
        )

    def test_the_root_help_lists_every_command_with_its_summary(self) -> None:
        result = Fleetkey()("--help")
        for name in COMMANDS:
            assert f"  {name} " in result.stdout
        assert "The tamper-evident audit trail." in result.stdout

    def test_a_command_the_table_does_not_name_is_a_usage_error(self) -> None:
        result = Fleetkey()("frobnicate", code=2)
        assert "No such command 'frobnicate'" in result.stderr
        assert "hint:" not in result.stderr

    @pytest.mark.parametrize("name", ["ui", "dashboard", "web"])
    def test_a_name_for_the_dashboard_says_where_it_is_served(self, name: str) -> None:
        result = Fleetkey()(name, code=2)
        assert f"No such command '{name}'." in result.stderr
        assert "hint: the dashboard is /ui/ on the HTTP listener of `fleetkey serve`" in (
            result.stderr
        )

    def test_the_group_lists_the_same_commands_loaded_or_not(self) -> None:
        context = click.Context(cli)
        before = cli.list_commands(context)
        for name in before:
            cli.get_command(context, name)
        assert cli.list_commands(context) == before == sorted(COMMANDS)


class TestStartup:
    @pytest.mark.parametrize("flag", ["--version", "--help"])
    def test_version_and_help_load_no_framework(self, flag: str) -> None:
        assert loaded_by(flag) == []

    def test_a_group_help_loads_only_its_own_module(self) -> None:
        loaded = loaded_by("sites", "--help")
        assert not {"alembic", "fastapi", "starlette", "uvloop"} & set(loaded)

    @pytest.mark.parametrize("command", [("sites", "list"), ("phones", "list")])
    def test_a_read_command_loads_no_server_api_migrations_or_cryptography(
        self, initialized: Path, command: tuple[str, ...]
    ) -> None:
        environment = {**os.environ, "FLEETKEY_DATA": str(initialized)}
        loaded = loaded_by(*command, "--json", env=environment)
        assert "sqlalchemy" in loaded
        assert not {"alembic", "fastapi", "starlette", "uvloop", "cryptography"} & set(loaded)

"""Commands loaded when they run: click's documented lazy group ("Lazily Loading
Subcommands", click's docs on complex applications), with one addition.

Importing every command up front cost ``fleetkey --version`` 1.2 s (the admin API's FastAPI, the
store's SQLAlchemy and Alembic, the server, the emulator). A group built from
:class:`LazyCommand` entries imports a command's module only when that command is asked for.
click's own lazy group still imports every module for the group's ``--help`` (it asks each
command for its one-line help); here each entry carries that line, so ``fleetkey --help``
loads none of them. ``tests/unit/cli/test_startup.py`` checks that each line is the one the
command's docstring gives and that every entry loads the command of its name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a command lives (``module:attribute``) and its one-line help for the group's list."""

    target: str
    summary: str

    def load(self, name: str) -> click.Command:
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover  # a wrong table entry
            raise TypeError(f"{self.target} is not a click command (for {name!r})")
        return command


class LazyGroup(click.Group):
    """A group whose ``lazy`` commands are imported on first use."""

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, LazyCommand] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            self.add_command(entry.load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, as click writes it, from the summaries: nothing is imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            # a stand-in with the summary as its help is shortened as click shortens any
            shown = self.commands.get(name) or click.Command(name, help=self.lazy[name].summary)
            if not shown.hidden:
                rows.append((name, shown.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

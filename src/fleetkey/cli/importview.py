"""How a phone import is shown: the diff as a table (a row per changed column, old → new), the
counts as one line; ``--json`` is :meth:`ImportResult.to_json`."""

from __future__ import annotations

from typing import Final

from rich.markup import escape
from rich.table import Table

from fleetkey.store.phone_import import Change, ImportResult, PhoneDiff

TABLE_PHONES: Final = 100  # phones the table lists; --json lists every one
STYLE: Final = {Change.ADDED: "green", Change.CHANGED: "yellow", Change.REMOVED: "red"}


def counts(result: ImportResult) -> str:
    """``2 added, 1 changed, 97 unchanged, 0 removed``."""
    return ", ".join(
        [
            f"{result.count(Change.ADDED)} added",
            f"{result.count(Change.CHANGED)} changed",
            f"{result.unchanged} unchanged",
            f"{result.count(Change.REMOVED)} removed",
        ]
    )


def diff_table(result: ImportResult) -> Table | None:
    """The first ``TABLE_PHONES`` phones the import adds, changes or removes; None: none."""
    if not result.diff:
        return None
    table = Table(title="phones import: what changes", title_justify="left")
    table.add_column("change")
    table.add_column("mac", no_wrap=True, min_width=12)
    table.add_column("column")
    table.add_column("old")
    table.add_column("new")
    for entry in result.diff[:TABLE_PHONES]:
        for index, (column, old, new) in enumerate(_cells(entry)):
            first = index == 0
            table.add_row(
                f"[{STYLE[entry.change]}]{entry.change.value}[/]" if first else "",
                entry.mac if first else "",
                column,
                old,
                new,
            )
    return table


def more_line(result: ImportResult) -> str | None:
    left = len(result.diff) - TABLE_PHONES
    return f"… and {left} more phones (--json lists every one)" if left > 0 else None


def _cells(entry: PhoneDiff) -> list[tuple[str, str, str]]:
    """(column, old, new) for each column; text from the file or the store, never markup."""
    return [
        (change.column, escape(change.old or ""), escape(change.new or ""))
        for change in entry.columns
    ] or [("", "", "")]

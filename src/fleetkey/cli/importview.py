"""How a phone import is shown: the diff as a table (a row per changed column, old → new), the
counts as one line; ``--json`` is :meth:`ImportResult.to_json`."""

from __future__ import annotations

from typing import Final

from rich.console import Console
from rich.text import Text

from fleetkey.cli.tables import Cell, Column, Kind, Output, print_rows
from fleetkey.store.phone_import import ImportResult, PhoneDiff, RowChange

TABLE_PHONES: Final = 100  # phones the table lists; --json lists every one
STYLE: Final = {RowChange.ADDED: "green", RowChange.CHANGED: "yellow", RowChange.REMOVED: "red"}


def counts(result: ImportResult) -> str:
    """``2 added, 1 changed, 97 unchanged, 0 removed``."""
    return ", ".join(
        [
            f"{result.count(RowChange.ADDED)} added",
            f"{result.count(RowChange.CHANGED)} changed",
            f"{result.unchanged} unchanged",
            f"{result.count(RowChange.REMOVED)} removed",
        ]
    )


DIFF_COLUMNS: Final = (
    Column("change", Kind.ID),
    Column("mac", Kind.ID),
    Column("column", Kind.ID),
    Column("old"),  # contacts and firmware from the store and the file: they wrap, never cut
    Column("new"),
)


def print_diff(console: Console, result: ImportResult) -> bool:
    """The first ``TABLE_PHONES`` phones the import adds, changes or removes, as a table
    (cli/tables.py: MACs whole, values wrapped); False when nothing changes."""
    if not result.diff:
        return False
    rows: list[list[Cell]] = []
    for entry in result.diff[:TABLE_PHONES]:
        for index, (column, old, new) in enumerate(_cells(entry)):
            first = index == 0
            change = Text(entry.change.value, style=STYLE[entry.change]) if first else ""
            rows.append([change, entry.mac if first else "", column, old, new])
    print_rows(console, DIFF_COLUMNS, rows, Output.TABLE, title="phones import: what changes")
    return True


def more_line(result: ImportResult) -> str | None:
    left = len(result.diff) - TABLE_PHONES
    return f"… and {left} more phones (--json lists every one)" if left > 0 else None


def _cells(entry: PhoneDiff) -> list[tuple[str, str, str]]:
    """(column, old, new) for each column (text, never markup: print_rows shows it as such)."""
    return [(change.column, change.old or "", change.new or "") for change in entry.columns] or [
        ("", "", "")
    ]

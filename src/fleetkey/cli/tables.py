"""Tables for people, CSV for spreadsheets, one page at a time: how every list command prints.

Tables never cut an identifier. Every column says what it holds (:class:`Kind`): an ``ID``
(MAC, serial, id, time, digest) or a ``NUMBER`` is printed whole on one line; ``WORDS`` wrap
between words, each word whole; ``TEXT`` wraps, and only a word longer than the column's floor
is folded onto the next line, never cut with an ellipsis. When the columns do not fit the
terminal, the least useful ones (the highest ``drop``) are left out first and a line under the
table names them; a table that still does not fit is printed wider than the terminal rather
than cut. ``--wide`` prints every column at its full width, ``--csv`` every column as CSV. A
list printed one page at a time ends with a line saying how many rows are left and how to see
them (:class:`More`).
"""

from __future__ import annotations

import csv
import enum
import io
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetkey.core.naming import FORMULA_STARTS

F = TypeVar("F", bound=Callable[..., Any])

TEXT_FLOOR: Final = 16  # a text column is made no narrower (unless all its text is shorter)
# a contact column: sip:127.10.2.43:5060 and noc-ny@example.com whole; longer ones break after @
CONTACT_FLOOR: Final = 24
PAGE: Final = 50  # rows a list prints by default in a table
_FORMULA: Final = (*FORMULA_STARTS, "\t", "\r")  # and a tab or CR a spreadsheet may strip
_RULES: Final = 3  # a column's padding (one each side) and the rule after it
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # newline and tab pass

Cell = str | Text


class Kind(enum.Enum):
    ID = "id"  # MACs, serials, ids, times, digests: whole, on one line
    NUMBER = "number"  # whole, on one line, right-aligned
    WORDS = "words"  # wraps between words, each word whole (feature names, states)
    TEXT = "text"  # wraps; a word longer than TEXT_FLOOR may fold onto the next line


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: Kind = Kind.TEXT
    drop: int = 0  # 0: always shown; when the table is too wide the highest goes first
    floor: int = TEXT_FLOOR  # text: the least width, so words up to this long never fold
    marks: str = "/@;"  # text: where a word longer than the column may break (after these)


class Output(enum.Enum):
    TABLE = "table"
    WIDE = "wide"
    CSV = "csv"
    JSON = "json"


def table_options(function: F) -> F:
    """``--wide`` and ``--csv`` for a command that prints a table (it has ``--json`` too)."""
    function = click.option(
        "--csv", "as_csv", is_flag=True, help="Print every column as CSV (a header line first)."
    )(function)
    return click.option(
        "--wide",
        is_flag=True,
        help="Print every column at full width (lines may be longer than the terminal).",
    )(function)


def output(*, as_json: bool, wide: bool = False, as_csv: bool = False) -> Output:
    """The one output format asked for; more than one is a usage error."""
    chosen = [name for name, on in (("--json", as_json), ("--csv", as_csv), ("--wide", wide)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} do not go together: choose one")
    if as_json:
        return Output.JSON
    if as_csv:
        return Output.CSV
    return Output.WIDE if wide else Output.TABLE


def print_rows(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    how: Output,
    *,
    title: str | None = None,
) -> None:
    """Print ``rows`` as a table fitted to ``console`` (or at full width, or as CSV)."""
    if how is Output.CSV:
        click.echo(csv_text(columns, rows), nl=False)
        return
    width = console.width
    shown, widths, hidden = _layout(columns, rows, None if how is Output.WIDE else width)
    table = Table(title=title, title_justify="left")
    for index, column_width in zip(shown, widths, strict=True):
        column = columns[index]
        table.add_column(
            column.header,
            justify="right" if column.kind is Kind.NUMBER else "left",
            no_wrap=column.kind in (Kind.ID, Kind.NUMBER),
            overflow="fold",
            width=column_width,
        )
    texts = {i: w for i, w in zip(shown, widths, strict=True) if columns[i].kind is Kind.TEXT}
    for row in rows:
        table.add_row(
            *(
                _rich(_break_at_marks(row[i], texts[i], columns[i].marks) if i in texts else row[i])
                for i in shown
            )
        )
    needed = sum(widths) + _RULES * len(widths) + 1
    if needed > width:  # wider than the terminal: print it so, never cut (the terminal wraps)
        console.width = needed
    try:
        console.print(table)
    finally:
        console.width = width
    for line in left_out_lines(hidden, width):
        console.print(line, markup=False, style="dim", soft_wrap=True)


def left_out_lines(hidden: Sequence[str], width: int) -> list[str]:
    """The note under a table that left columns out, in lines of at most ``width``: one when
    it fits, else the headers and ``left out`` (wrapped between headers) and then ``at N
    columns: --wide shows every column)`` on a line of its own, so no word is left alone on a
    line (rich wrapped the one line and left ``column)`` there)."""
    if not hidden:
        return []
    tail = f"at {width} columns: --wide shows every column)"
    head = f"({', '.join(hidden)} left out"
    if len(head) + 1 + len(tail) <= width:
        return [f"{head} {tail}"]
    glued = head.replace("left out", "left\xa0out")  # never apart (textwrap keeps \xa0)
    lines = textwrap.wrap(glued, width, break_long_words=False, break_on_hyphens=False)
    return [*(line.replace("\xa0", " ") for line in lines), tail]


def _layout(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int | None
) -> tuple[list[int], list[int], list[str]]:
    """The columns to show, the width of each, and the headers left out to fit ``width``
    (None: no limit, every column at its full width).

    Text columns give way first, the widest a character at a time, down to their least width
    (:func:`_least`); when that is not enough the column with the highest ``drop`` goes, and
    the widths are worked out again.
    """
    full = [_full(column, rows, i) for i, column in enumerate(columns)]
    least = [_least(column, rows, i, full[i]) for i, column in enumerate(columns)]
    shown = list(range(len(columns)))
    hidden: list[str] = []
    while True:
        widths = [full[i] for i in shown]
        if width is None:
            return shown, widths, hidden
        excess = sum(widths) + _RULES * len(shown) + 1 - width
        while excess > 0:
            giving = [n for n, i in enumerate(shown) if widths[n] > least[i]]
            if not giving:
                break
            widest = max(giving, key=lambda n: widths[n])
            widths[widest] -= 1
            excess -= 1
        droppable = [i for i in shown if columns[i].drop > 0]
        if excess <= 0 or not droppable:
            order = [c.header for c in columns]
            return shown, widths, sorted(hidden, key=order.index)
        victim = max(droppable, key=lambda i: (columns[i].drop, i))
        shown.remove(victim)
        hidden.append(columns[victim].header)


def _break_at_marks(cell: Cell, width: int, marks: str = "/@;") -> Cell:
    """A word longer than ``width`` broken after one of ``marks`` where it can be (a path's
    ``/``, a contact's ``@`` or ``;``), so that it folds between its parts (``/100000000003/``
    then ``000000000000-license.cfg``), not inside a file name; only a part still longer folds."""
    if not isinstance(cell, str) or len(cell) <= width:
        return cell
    return "\n".join(
        " ".join(
            _pack(word, width, marks) if len(word) > width else word for word in line.split(" ")
        )
        for line in cell.split("\n")
    )


def _pack(word: str, width: int, marks: str) -> str:
    lines = [""]
    for part in re.split(f"(?<=[{re.escape(marks)}])", word):
        if lines[-1] and cell_len(lines[-1]) + cell_len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _least(column: Column, rows: Sequence[Sequence[Cell]], index: int, full: int) -> int:
    """How narrow a column may be: an identifier or number not at all; words down to the
    longest word; text down to its floor (a longer word folds), or its full width if less."""
    if column.kind in (Kind.ID, Kind.NUMBER):
        return full
    words = [cell_len(word) for row in rows for word in _shown(row[index]).split()]
    longest = max([1, *words, *(cell_len(word) for word in column.header.split())])
    if column.kind is Kind.WORDS:
        return longest
    return min(full, max(column.floor, max(cell_len(w) for w in column.header.split())))


def _full(column: Column, rows: Sequence[Sequence[Cell]], index: int) -> int:
    lines = [line for row in rows for line in _shown(row[index]).splitlines()]
    return max([cell_len(column.header), *(cell_len(line) for line in lines)])


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _shown(cell: Cell) -> str:
    """The text a cell shows (what its width is measured on)."""
    return _rich(cell).plain


def _rich(cell: Cell) -> Text:
    """Stored text is text, never rich markup (a site named ``[/]`` must print as such), and
    control characters are shown escaped, never sent to the terminal."""
    if isinstance(cell, Text):
        return cell
    return Text(printable(cell))


def printable(text: str) -> str:
    r"""``text`` with control characters (C0, DEL, C1) as ``\xNN``: paths and User-Agents
    come from phones, and an escape sequence must not reach an operator's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def print_fields(console: Console, fields: Sequence[tuple[str, Cell]]) -> None:
    """One record as ``name  value`` lines: a borderless grid, so a value up to the width less
    the names (64 characters at 80 columns: a SHA-256) is never broken; longer text wraps."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for name, value in fields:
        grid.add_row(name, _rich(value))
    console.print(grid)


def csv_text(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> str:
    """RFC 4180 CSV; text a spreadsheet would run as a formula is quoted with a leading '."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([column.header for column in columns])
    for row in rows:
        writer.writerow(
            [_csv_cell(column, _plain(cell)) for column, cell in zip(columns, row, strict=True)]
        )
    return buffer.getvalue()


def _csv_cell(column: Column, text: str) -> str:
    if column.kind is not Kind.NUMBER and text.startswith(_FORMULA):
        return "'" + text
    return text


@dataclass(frozen=True, slots=True)
class More:
    """What a paged list says under its rows: how many are left and how to see them."""

    left: int  # rows after the page that match
    noun: str  # "phones", "older fetch records"
    next_page: str | None = None  # the option that shows the next page, e.g. "--after 0004f2000031"
    counted_up_to: int | None = None  # ``left`` was counted up to this: at it, "or more"

    def line(self) -> str | None:
        if self.left <= 0:
            return None
        ways = [f"next page: `{self.next_page}`"] if self.next_page else []
        ways.append("all: `--limit 0`")
        count = f"{self.left:,}" + (" or more" if self.left == self.counted_up_to else "")
        return f"… {count} more {self.noun}; {', '.join(ways)}"


def print_page_line(console: Console, err: Console, more: More, how: Output) -> None:
    """The page line: under a table; on stderr when stdout is JSON or CSV (scripts read it)."""
    line = more.line()
    if line is None:
        return
    if how in (Output.JSON, Output.CSV):
        err.print(f"note: {line.removeprefix('… ')}", markup=False, highlight=False)
    else:
        console.print(line, markup=False, highlight=False, soft_wrap=False)


def limit_option(*, scripts: int | None) -> Callable[[F], F]:
    """``--limit N`` for a paged list: 0 is all; by default a page in a table and ``scripts``
    rows (None: all) with ``--json`` or ``--csv``."""
    default = "all" if scripts is None else f"{scripts:,}"
    return click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help=f"At most N rows (0: all); default {PAGE} in a table, {default} with --json or --csv.",
    )


def limit_for(how: Output, limit: int | None, *, scripts: int | None) -> int | None:
    """The rows to read (None: all): ``--limit`` when given, else the default of ``how``."""
    if limit is not None:
        return limit or None
    return scripts if how in (Output.JSON, Output.CSV) else PAGE

"""``fleetkey fetches``: what phones fetched, filtered, paged, followed as servers write it;
``fetches replay``."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Final

import click

from fleetkey.cli import exporting, history
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import moment_text
from fleetkey.cli.tables import (
    Column,
    Kind,
    More,
    Output,
    csv_text,
    limit_for,
    limit_option,
    output,
    print_page_line,
    print_rows,
    printable,
    table_options,
)
from fleetkey.store import fetches as fetch_records
from fleetkey.store import held
from fleetkey.store.fetches import COUNT_CAP
from fleetkey.store.fetchfilter import FetchFilter
from fleetkey.store.records import FetchRecord, fetch_json

PATH_FLOOR: Final = 26  # /0004f2000001-license.cfg stays on one line
SCRIPT_ROWS: Final = 1000  # records --json and --csv print by default
FOLLOW_ROWS: Final = 10  # records --follow shows before the new ones
POLL_S: Final = 0.5  # how often --follow asks the store for new records
_STATUS = re.compile(r"([1-5])(\d\d|xx)", re.IGNORECASE)
_AGO = re.compile(r"(\d{1,6})([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}

COLUMNS: Final = (
    Column("at (UTC)", Kind.ID),
    Column("mac", Kind.ID),
    Column("method", Kind.ID, drop=5),
    Column("path", floor=PATH_FLOOR),
    Column("proto", Kind.ID, drop=4),
    Column("status", Kind.NUMBER),
    Column("bytes", Kind.NUMBER, drop=3),
    Column("digest", Kind.ID, drop=1),
    Column("ms", Kind.NUMBER, drop=2),
    Column("address", Kind.ID, drop=6),
    Column("user agent", drop=7),
    Column("identified by", Kind.ID, drop=8),  # how the server knew the phone
)


@click.group(invoke_without_command=True)
@click.option("--mac", help="Only this phone's fetches.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="CODE",
    help="Only answers with this status: 404, or a class like 4xx (repeatable: any of them).",
)
@click.option("--path", metavar="PATTERN", help="Only paths containing PATTERN (* : anything).")
@click.option(
    "--since",
    metavar="WHEN",
    help="From this moment on: an ISO date or date-time (UTC unless it says), or 30s, 15m, "
    "2h, 7d ago.",
)
@click.option("--until", metavar="WHEN", help="Before this moment (same forms as --since).")
@limit_option(scripts=SCRIPT_ROWS)
@click.option(
    "--follow",
    is_flag=True,
    help=f"Keep printing records as servers write them, after the newest {FOLLOW_ROWS} (or "
    "--limit); Ctrl-C stops. With --json, one object per line.",
)
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@pass_env
@click.pass_context
def fetches(
    ctx: click.Context,
    env: Env,
    mac: str | None,
    statuses: tuple[str, ...],
    path: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    follow: bool,
    wide: bool,
    as_csv: bool,
    as_json: bool,
) -> None:
    """What phones fetched: time, MAC, path, protocol, status, bytes, digest of what was served.

    A table shows the newest first; --json and --csv print the same records oldest first.
    `fetches replay FILE` writes fetch records a server could not write to the store.
    """
    if ctx.invoked_subcommand is not None:
        _no_list_options(ctx)
        return
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    now = env.clock.now()
    where = FetchFilter(
        mac=mac,
        since=_moment(since, now, "--since"),
        until=_moment(until, now, "--until"),
        statuses=tuple(_status(text) for text in statuses),
        path=path,
    )
    if follow:
        if how is Output.WIDE:
            raise click.UsageError(
                "--wide and --follow do not go together: followed lines are whole"
            )
        _follow(env, where, FOLLOW_ROWS if limit is None else limit, how)
        return
    with env.store().transaction() as session:
        found, left = fetch_records.newest(
            session, where, limit_for(how, limit, scripts=SCRIPT_ROWS)
        )
    more = More(left, "older fetch records", counted_up_to=COUNT_CAP)
    if how is Output.JSON:
        env.print_json([fetch_json(r) for r in reversed(found)])
    elif how is Output.CSV:
        click.echo(csv_text(COLUMNS, [_row(r, full=True) for r in reversed(found)]), nl=False)
    else:
        print_rows(env.out, COLUMNS, [_row(r, full=how is Output.WIDE) for r in found], how)
    print_page_line(env.out, env.err, more, how)


def _no_list_options(ctx: click.Context) -> None:
    """``fetches --mac X replay FILE``: the list's options select nothing a subcommand does, so
    they are refused rather than ignored (``replay`` has its own ``--json``)."""
    given = [
        param.opts[0]
        for param in ctx.command.params
        if param.name is not None
        and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        sub = ctx.invoked_subcommand
        raise click.UsageError(
            f"{', '.join(given)}: options of the `fetches` list, not of `fetches {sub}`; give "
            f"{sub}'s own options after it (fleetkey fetches {sub} --help)",
            ctx=ctx,
        )


def _row(record: FetchRecord, *, full: bool) -> list[str]:
    """A record's cells; ``full``: times with their zone, digests whole, bytes unformatted."""
    shared = "(shared address)" if record.identified_by == "ambiguous" else ""
    digest = record.digest or ""
    return [
        record.at.isoformat() if full else moment_text(record.at),
        record.mac or shared,
        record.method,
        record.path,
        record.protocol,
        str(record.status),
        str(record.bytes) if full else f"{record.bytes:,}",
        digest if full else digest[:12],
        f"{record.duration_ms:.1f}",
        record.remote_addr or "",
        record.user_agent or "",
        record.identified_by or "",
    ]


def _status(text: str) -> tuple[int, int]:
    """``404`` → (404, 404); ``4xx`` → (400, 499)."""
    match = _STATUS.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a status (100-599) or a class of them (1xx-5xx)",
            param_hint="'--status'",
        )
    if match.group(2).lower() == "xx":
        low = int(match.group(1)) * 100
        return low, low + 99
    code = int(match.group(0))
    return code, code


def _moment(text: str | None, now: datetime, flag: str) -> datetime | None:
    """An ISO date or date-time (UTC when it names no zone), or ``15m`` for 15 minutes ago."""
    if text is None:
        return None
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return now - timedelta(seconds=int(ago.group(1)) * _UNIT_S[ago.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is neither an ISO date or date-time (2026-05-01, 2026-05-01T02:00) nor a "
            "time ago (30s, 15m, 2h, 7d; 0s is now)",
            param_hint=f"'{flag}'",
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _follow(env: Env, where: FetchFilter, first: int, how: Output) -> None:
    """Print the newest ``first`` records, then each new one as servers write it, until SIGINT
    or SIGTERM (exit 0) or until stdout is closed."""
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    store = env.store()
    try:
        with store.transaction() as session:
            after = fetch_records.last_id(session)
            found, _ = fetch_records.newest(session, where, first) if first else ([], 0)
        if how is Output.CSV:
            click.echo(csv_text(COLUMNS, []), nl=False)
        for record in reversed(found):
            click.echo(_line(record, how))
        while not stopping.wait(POLL_S):
            with store.transaction() as session:
                found, after = fetch_records.written_after(session, where, after)
            for record in found:
                click.echo(_line(record, how))
    except BrokenPipeError:  # `| head`: the reader has had enough
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _line(record: FetchRecord, how: Output) -> str:
    """One followed record as one line: JSON, a CSV row, or columns for people."""
    if how is Output.JSON:
        return json.dumps(fetch_json(record), ensure_ascii=False)
    if how is Output.CSV:
        return csv_text(COLUMNS, [_row(record, full=True)]).split("\r\n", 1)[1].removesuffix("\r\n")
    return printable(
        f"{moment_text(record.at)}  {record.mac or '-':12}  {record.method:4}  "
        f"{record.status}  {record.bytes:>9,}  {record.duration_ms:>7.1f} ms  "
        f"{record.protocol:5}  {record.path}"
    )


@fetches.command("replay")
@click.argument(
    "path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_env
def replay_fetches(env: Env, path: Path, as_json: bool) -> None:
    """Write FILE's fetch records to the store: the fallback file a server left because the
    store refused them at its stop (<data>/fetches-unwritten.jsonl), or a spill file. In
    order, each once: running it again on the same file writes nothing twice."""
    done = held.replay(env.store().engine, path)
    if as_json:
        env.print_json({"file": str(path), "written": done.written, "already": done.already})
        return
    env.out.print(
        f"{path}: {done.written} fetch records written"
        + (f", {done.already} were already in the store" if done.already else "")
    )


@fetches.command("export")
@click.option("--since", required=True, metavar="WHEN", help="From this moment on (as above).")
@click.option("--until", required=True, metavar="WHEN", help="Before this moment.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(exporting.FORMATS),
    default="csv",
    show_default=True,
    help="CSV (RFC 4180, the columns of --csv), or Parquet (typed columns; needs --output and "
    "pyarrow: pip install 'fleetkey[parquet]').",
)
@click.option(
    "--output",
    "into",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE (replaced whole, never left half-written) instead of stdout.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON (--output).")
@pass_env
def export_fetches(
    env: Env, since: str, until: str, file_format: str, into: Path | None, as_json: bool
) -> None:
    """Write the raw fetch records from --since up to --until to a file, oldest first: keep
    them before the retention (`serve --fetch-retention`, `fetches prune`) removes them."""
    now = env.clock.now()
    start, end = _moment(since, now, "--since"), _moment(until, now, "--until")
    if start is None or end is None:  # pragma: no cover  # both options are required
        raise click.UsageError("give --since and --until")
    if start >= end:
        raise click.UsageError(f"--since {since} is not before --until {until}")
    if as_json and into is None:
        raise click.UsageError("--json prints the summary on stdout: give --output FILE")
    if file_format == "parquet":
        if into is None:
            raise click.UsageError("--format parquet writes a file: give --output FILE")
        exporting.pyarrow_modules()  # before anything is read or written
    store = env.store()
    with store.engine.connect() as connection:
        records = fetch_records.between(connection, start, end)
        if file_format == "parquet" and into is not None:
            written = exporting.write_parquet(into, records)
        elif into is None:
            written = exporting.write_csv(sys.stdout, records, COLUMNS, _full_row)
        else:
            partial = into.with_name(f".{into.name}.partial")
            with partial.open("w", encoding="utf-8", newline="") as handle:
                written = exporting.write_csv(handle, records, COLUMNS, _full_row)
            partial.replace(into)
    if as_json:
        env.print_json(
            {
                "written": written,
                "output": str(into),
                "format": file_format,
                "since": start.isoformat(),
                "until": end.isoformat(),
            }
        )
    elif into is not None:
        env.err.print(f"{written:,} fetch records written to {into}", markup=False)


def _full_row(record: FetchRecord) -> list[str]:
    return _row(record, full=True)


fetches.add_command(history.prune)
fetches.add_command(history.days)

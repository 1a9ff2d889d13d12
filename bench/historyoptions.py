"""bench/history.py's options, parsed and checked before anything is written.

A bad option is a usage error (exit 2, argparse's ``usage: … error: …``); a ``--data`` folder
whose kept store cannot be measured (its record unreadable, its database gone) is exit 1,
``error: …`` and a hint. Either way no folder, file or database is made.

Building, the options take their defaults; measuring a kept store again (``--data DIR`` holding
``bench-history.json``), the store is measured as it was built: a build option given then must
be the one it was built with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from fleetkey.store.retention import DEFAULT_RETENTION_DAYS

KEPT: Final = "bench-history.json"  # in a --data directory: how its store was built
PGDATA: Final = "postgres"  # in a --data directory on PostgreSQL without --db: the server's data
DATABASE: Final = "bench_history"  # the kept server's database
# the build's options, their defaults and the names bench-history.json keeps them under
BUILD: Final[dict[str, tuple[Any, str]]] = {
    "phones": (100_000, "phones"),
    "days": (365, "days"),
    "sites": (20, "sites"),
    "retention": (DEFAULT_RETENTION_DAYS, "retention"),
    "backend": ("sqlite", "backend"),
    "writer_records": (100_000, "writer records"),
}
AT_LEAST_ONE: Final = ("phones", "days", "sites", "writer_records")
URL_SCHEMES: Final = ("postgresql://", "postgresql+psycopg://")

BULK_HELP = (
    "write the days the retention has removed as their roll-ups and boot tallies only, and the "
    "kept days' raw records in bulk (bench/historybulk.py): the store the day-by-day mode "
    "leaves; day N < DAYS is measured only up to the retention"
)
DATA_HELP = (
    f"keep the store in DIR (on PostgreSQL, the server's data in DIR/{PGDATA}, or the database "
    f"--db names); a DIR that holds one ({KEPT}) is measured again instead, without building"
)
NO_BASELINE_HELP = "measuring a kept store again: without a fresh store's figures"
DB_HELP = "with --data on PostgreSQL: an empty database of your own to build the kept store in"


def make_parser(description: str) -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(description=description)
    found.add_argument("--phones", type=int)
    found.add_argument("--days", type=int)
    found.add_argument("--sites", type=int)
    found.add_argument("--retention", type=int)
    found.add_argument("--backend", choices=["sqlite", "postgresql"])
    found.add_argument("--writer-records", type=int)
    found.add_argument("--bulk", action="store_true", help=BULK_HELP)
    found.add_argument("--data", type=Path, metavar="DIR", help=DATA_HELP)
    found.add_argument("--db", metavar="URL", help=DB_HELP)
    found.add_argument("--no-baseline", action="store_true", help=NO_BASELINE_HELP)
    found.add_argument("--json", action="store_true")
    return found


def parse(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked; ``kept`` is the kept store's record (measuring it again) or None."""
    options = make_parser(description)
    args = options.parse_args(argv)
    args.kept = None
    if args.db is not None and not args.db.startswith(URL_SCHEMES):
        options.error(f"--db: not a PostgreSQL URL: {args.db!r} (postgresql://USER@HOST:PORT/DB)")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        options.error(f"--data {args.data}: not a folder")
    if args.data is not None and (args.data / KEPT).exists():
        args.kept = _kept(options, args)
        return args
    for name, (default, _) in BUILD.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    _check_build(options, args)
    return args


def _check_build(options: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in AT_LEAST_ONE:
        if getattr(args, name) < 1:
            options.error(f"--{name.replace('_', '-')} {getattr(args, name)}: at least 1")
    if args.retention < 0:
        options.error(f"--retention {args.retention}: 0 (keep every record) or a number of days")
    if args.bulk and args.days > 1 and args.retention == 1:
        options.error("--bulk takes the roll-ups of a day from a kept day: --retention 0 or >= 2")
    if args.no_baseline:
        options.error(f"--no-baseline: only measuring a kept store again (--data DIR with {KEPT})")
    if args.db is not None and not (args.data is not None and args.backend == "postgresql"):
        options.error("--db names the PostgreSQL store to keep: with --data --backend postgresql")
    if args.data is not None and args.data.exists() and any(args.data.iterdir()):
        options.error(
            f"--data {args.data}: holds files but no {KEPT}: give a new or a kept store's directory"
        )


def _kept(options: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The record of the store kept in --data, checked against the options given."""
    folder = args.data
    try:
        kept = json.loads((folder / KEPT).read_text())
        built = {name: kept[key] for name, (_, key) in BUILD.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(
            f"error: {folder / KEPT}: not the record of a store bench/history.py built ({exc})\n"
            "hint: give the --data folder of a store it built, or a new folder to build one"
        )
    for name, value in built.items():
        given = getattr(args, name)
        if given is not None and given != value:
            flag = f"--{name.replace('_', '-')}"
            options.error(
                f"{flag} {given}: the store kept in {folder} was built with {flag} {value}: "
                "measuring it again takes no other build; give a new --data to build another"
            )
    if args.bulk and kept.get("mode") != "bulk":
        options.error(f"--bulk: the store kept in {folder} was built day by day")
    if args.db is not None and args.db != kept.get("db"):
        options.error(f"--db: the store kept in {folder} is not in {args.db}")
    _present(folder, kept)
    return dict(kept)


def _present(folder: Path, kept: dict[str, Any]) -> None:
    """The kept store's database must still be there: measured empty, it would time nothing."""
    if kept["backend"] == "sqlite":
        where = folder / "data" / "fleetkey.db"
    elif kept.get("db"):
        return  # a database of the user's own: its server is theirs to run
    else:
        where = folder / PGDATA / "data" / "PG_VERSION"
    if not where.is_file():
        sys.exit(
            f"error: {folder}: its {kept['backend']} store is gone ({where} is missing)\n"
            "hint: give a new --data folder to build the store again"
        )

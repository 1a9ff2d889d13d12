"""The ``fleetkey`` entry point: the root group and its commands.

Each command's module is imported only when that command runs (cli/lazy.py): ``COMMANDS``
names where each lives and the line ``fleetkey --help`` shows for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from fleetkey.authority.datadir import DATA_ENV, DEFAULT_DATA, DataDir
from fleetkey.cli.context import Env, FleetkeyGroup
from fleetkey.cli.lazy import LazyCommand

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
COMMANDS: Final = {
    "alerts": LazyCommand(
        "fleetkey.cli.alerts:alerts",
        "Evaluate alerts now, record them (deduplicated), deliver new and resolved ones, list.",
    ),
    "audit": LazyCommand("fleetkey.cli.audit:audit", "The tamper-evident audit trail."),
    "capacity": LazyCommand(
        "fleetkey.cli.capacity:capacity",
        "Measure and list the provisioning server's capacity (for rollout planning).",
    ),
    "db": LazyCommand(
        "fleetkey.cli.records:db",
        "The database schema (Alembic migrations) and its consistency check.",
    ),
    "emulate": LazyCommand(
        "fleetkey.cli.emulate:emulate",
        "Emulate PHONES phones booting from SERVER, each on a loopback address of its own.",
    ),
    "features": LazyCommand(
        "fleetkey.cli.setup:features", "List the feature catalog: slot, name, description."
    ),
    "fetches": LazyCommand(
        "fleetkey.cli.fetches:fetches",
        "What phones fetched: time, MAC, path, protocol, status, bytes, digest of what was served.",
    ),
    "init": LazyCommand(
        "fleetkey.cli.setup:init", "Create the data directory and a first signing key."
    ),
    "inspect": LazyCommand(
        "fleetkey.cli.inspect:inspect",
        "Show what license files hold, feature by feature, and whether their signatures verify.",
    ),
    "issue": LazyCommand(
        "fleetkey.cli.issue:issue",
        "Sign phone and site licenses into the provisioning tree (or --out).",
    ),
    "keys": LazyCommand(
        "fleetkey.cli.keys:keys",
        "Signing keys and trusted public keys (rotation: one active, all trusted).",
    ),
    "licenses": LazyCommand(
        "fleetkey.cli.records:licenses",
        "License keys fleetkey issued or imported, and their state.",
    ),
    "phones": LazyCommand(
        "fleetkey.cli.inventory:phones",
        "Phones: MAC, site, model, credentials, where and when last seen.",
    ),
    "rollout": LazyCommand(
        "fleetkey.cli.rollout:rollout",
        "Plan and run staggered check-sync rollouts of a posted license.",
    ),
    "serve": LazyCommand(
        "fleetkey.cli.serve:serve",
        "Serve license files and the provisioning tree to phones, recording every fetch.",
    ),
    "simulate": LazyCommand(
        "fleetkey.cli.simulate:simulate",
        "Simulate a fleet by the device rules: lost feature-hours, storms, rollouts (what-if).",
    ),
    "sites": LazyCommand(
        "fleetkey.cli.inventory:sites",
        "Sites: a serial, a time zone and a maintenance window for reboots.",
    ),
    "token": LazyCommand(
        "fleetkey.cli.setup:token",
        "Make a new admin API bearer token; the previous one stops working.",
    ),
    "verify": LazyCommand(
        "fleetkey.cli.inspect:verify",
        "Exit 0 when every key verifies, matches the MAC and file name, is unexpired, and keeps "
        "the rules of issued files (reserved Options bits clear, Options bits exactly where the "
        "Duration terms are non-zero).",
    ),
}


@click.group(cls=FleetkeyGroup, context_settings=CONTEXT, lazy=COMMANDS)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_ENV,
    default=DEFAULT_DATA,
    show_default=True,
    show_envvar=True,
    help="The data directory: keys, catalog additions, provisioning tree.",
)
@click.option(
    "--db",
    "db_url",
    envvar="FLEETKEY_DB",
    show_envvar=True,
    metavar="URL",
    help="Database URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
    "(default: SQLite in the data directory).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="fleetkey")
@click.pass_context
def cli(ctx: click.Context, data: Path, db_url: str | None, debug: bool) -> None:
    """fleetkey: feature licenses for fleets of SIP desk phones."""
    env = Env(DataDir(data), debug=debug, db_url=db_url)
    ctx.obj = env
    ctx.call_on_close(env.close)


def main() -> None:
    cli(prog_name="fleetkey")

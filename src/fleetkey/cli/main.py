"""The ``fleetkey`` entry point: the root group and its commands."""

from __future__ import annotations

from pathlib import Path

import click

from fleetkey.authority.datadir import DATA_ENV, DEFAULT_DATA, DataDir
from fleetkey.cli.alerts import alerts
from fleetkey.cli.capacity import capacity
from fleetkey.cli.context import Env, FleetkeyGroup
from fleetkey.cli.emulate import emulate
from fleetkey.cli.inspect import inspect, verify
from fleetkey.cli.inventory import phones, sites
from fleetkey.cli.issue import issue
from fleetkey.cli.keys import keys
from fleetkey.cli.records import audit, db, fetches, licenses
from fleetkey.cli.rollout import rollout
from fleetkey.cli.serve import serve
from fleetkey.cli.setup import features, init, token

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=FleetkeyGroup, context_settings=CONTEXT)
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


for command in (
    init,
    features,
    keys,
    issue,
    inspect,
    verify,
    db,
    sites,
    phones,
    licenses,
    fetches,
    audit,
    serve,
    token,
    emulate,
    rollout,
    alerts,
    capacity,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="fleetkey")

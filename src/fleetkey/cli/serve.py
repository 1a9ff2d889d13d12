"""``fleetkey serve``: the provisioning server phones boot from (parse, run, render)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.keyring import passphrase_from_env
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.ftpoptions import ftp_options, ftp_settings
from fleetkey.cli.serveworkers import Announce, Pool, Pooled, done, serve_workers, workers_option
from fleetkey.core.tftp import OptionLimits
from fleetkey.errors import InputError
from fleetkey.serve.addresses import HOLD_S
from fleetkey.serve.fetching import UnknownPolicy
from fleetkey.serve.http.auth import AuthMode
from fleetkey.serve.http.connections import ConnectionLimits
from fleetkey.serve.http.phones import AdmissionLimits
from fleetkey.serve.http.server import tls_context
from fleetkey.serve.listen import parse_address
from fleetkey.serve.proxies import parse_networks
from fleetkey.serve.runner import Places, ServerRunner, ServeSettings, Totals
from fleetkey.serve.tftp.server import TftpSettings
from fleetkey.store import inventory
from fleetkey.store.pruner import start_pruning
from fleetkey.store.retention import DEFAULT_RETENTION_DAYS, PruneResult
from fleetkey.store.writer import CAPACITY
from fleetkey.ui.app import UiContext
from fleetkey.ui.app import install as install_dashboard
from fleetkey.ui.session import MAX_SESSION_S, MIN_SESSION_S, SESSION_S


@click.command()
@click.option(
    "--http",
    "http",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT|PORT",
    help="Where to serve HTTP (a bare number is a port on 127.0.0.1; port 0: any free "
    "port; 'off' for none).",
)
@click.option(
    "--https",
    "https",
    metavar="HOST:PORT|PORT",
    help="Where to serve HTTPS as well; needs --cert and --key.",
)
@click.option("--cert", type=click.Path(path_type=Path), help="PEM certificate (chain) for HTTPS.")
@click.option("--key", type=click.Path(path_type=Path), help="PEM private key for HTTPS.")
@click.option(
    "--auth",
    type=click.Choice([m.value for m in AuthMode]),
    default=AuthMode.OFF.value,
    show_default=True,
    help="Per-device HTTP authentication with the phones' provisioning logins.",
)
@click.option(
    "--unknown",
    type=click.Choice([p.value for p in UnknownPolicy]),
    default=UnknownPolicy.SERVE.value,
    show_default=True,
    help="What to do with a MAC the inventory does not know: serve, refuse (403), or register it.",
)
@click.option(
    "--register-site",
    metavar="SITE",
    help="Site (serial or name) that phones registered by --unknown register join when the "
    "path has no /<site-serial>/ prefix.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="Believe X-Forwarded-For from this proxy address or network (repeatable).",
)
@click.option(
    "--tftp",
    "tftp",
    is_flag=False,
    flag_value="127.0.0.1:6969",
    metavar="[HOST:PORT|PORT]",
    help="Serve TFTP as well (alone: 127.0.0.1:6969; port 69 needs CAP_NET_BIND_SERVICE).",
)
@click.option(
    "--tftp-uploads",
    is_flag=True,
    help="Accept TFTP WRQ of the files phones write (logs, overrides), as HTTP PUT does.",
)
@click.option(
    "--tftp-max-blksize",
    default=1468,
    show_default=True,
    type=click.IntRange(8, 65464),
    help="Largest TFTP blksize granted (1468 keeps a DATA packet in one Ethernet frame).",
)
@click.option(
    "--tftp-max-transfers",
    default=512,
    show_default=True,
    type=click.IntRange(1),
    help="TFTP transfers at once; beyond it phones get an error telling them to retry.",
)
@click.option(
    "--tftp-per-address",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="TFTP transfers at once from one address (a NAT may hide several phones behind one).",
)
@click.option(
    "--address-hold",
    default=HOLD_S,
    show_default=True,
    type=click.FloatRange(1),
    metavar="SECONDS",
    help="How long an address stands for the MAC it last named (phones without (SN:…) in "
    "their User-Agent, and TFTP, ask for shared files by address).",
)
@click.option(
    "--max-connections",
    default=0,
    type=click.IntRange(0),
    help="HTTP connections at once (0: from the open-file limit); at the cap, those that "
    "waited longest for a request are closed first.",
)
@click.option(
    "--max-connections-per-address",
    default=4096,
    show_default=True,
    type=click.IntRange(1),
    help="HTTP connections at once from one address (a NAT may hide a site behind one).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    metavar="SECONDS",
    help="A new connection's request headers must arrive within this (else 408, closed).",
)
@click.option(
    "--idle-timeout",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.1),
    metavar="SECONDS",
    help="A keep-alive connection with no request for this long is closed.",
)
@click.option(
    "--record-queue",
    default=CAPACITY,
    show_default=True,
    type=click.IntRange(100),
    help="Fetch records held in memory before phones are answered busy (from half of it, "
    "the heaviest addresses first).",
)
@click.option(
    "--max-in-flight",
    default=1024,
    show_default=True,
    type=click.IntRange(1),
    help="Answers in progress at once; beyond it phones get 503 + Retry-After.",
)
@click.option(
    "--max-downloads",
    default=32,
    show_default=True,
    type=click.IntRange(1),
    help="Large files (≥ 1 MiB, firmware) streaming at once; license fetches are "
    "never held up by them.",
)
@click.option(
    "--ui-session-seconds",
    default=SESSION_S,
    show_default=True,
    type=click.IntRange(MIN_SESSION_S, MAX_SESSION_S),
    help="How long a dashboard sign-in lasts (/ui/; a new admin token ends every session).",
)
@ftp_options
@workers_option
@click.option(
    "--fetch-retention",
    default=DEFAULT_RETENTION_DAYS,
    show_default=True,
    type=click.IntRange(0),
    metavar="DAYS",
    help="Keep raw fetch records this many days (0: for ever); older ones are rolled up per "
    "site and day, then removed, every hour (`fetches export` keeps them in a file).",
)
@pass_env
def serve(
    env: Env,
    /,
    http: str,
    https: str | None,
    cert: Path | None,
    key: Path | None,
    auth: str,
    unknown: str,
    register_site: str | None,
    trusted_proxies: tuple[str, ...],
    tftp: str | None,
    tftp_uploads: bool,
    tftp_max_blksize: int,
    tftp_max_transfers: int,
    tftp_per_address: int,
    address_hold: float,
    max_connections: int,
    max_connections_per_address: int,
    header_timeout: float,
    idle_timeout: float,
    record_queue: int,
    max_in_flight: int,
    max_downloads: int,
    ui_session_seconds: int,
    workers: int,
    fetch_retention: int,
    **ftp: Any,
) -> None:
    """Serve license files and the provisioning tree to phones, recording every fetch.

    Stops gracefully on SIGTERM or SIGINT: answers in flight finish, and every fetch record
    and phone sighting is written before the process exits.
    """
    tls = None
    https_at = None
    if https is not None:
        if cert is None or key is None:
            raise InputError("--https needs --cert and --key")
        tls = tls_context(cert, key)
        https_at = parse_address(https, 8443, field="https")
    elif (cert is not None or key is not None) and not ftp["ftps"]:
        raise InputError("--cert and --key go with --https HOST:PORT or --ftps")
    if ftp["ftps"] and tls is None and cert is not None and key is not None:
        tls_context(cert, key)  # said now, in the words HTTPS uses, if they do not fit
    ftp_at, ftp_settings_ = ftp_settings(cert=cert, key=key, **ftp)
    http_at = parse_address(http, 8080, field="http") if http != "off" else None
    tftp_at = parse_address(tftp, 6969, field="tftp") if tftp is not None else None
    if http_at is None and https_at is None and tftp_at is None and ftp_at is None:
        raise InputError("nothing to serve: give --http, --https, --tftp or --ftp")
    store = env.store()
    if register_site is not None:
        with store.transaction() as session:
            register_site = inventory.site_serial(session, register_site)
    settings = ServeSettings(
        http=http_at,
        https=https_at,
        tls=tls,
        tftp=tftp_at,
        tftp_settings=TftpSettings(
            limits=OptionLimits(max_blksize=tftp_max_blksize),
            max_transfers=tftp_max_transfers,
            per_client=tftp_per_address,
            uploads=tftp_uploads,
        ),
        ftp=ftp_at,
        ftp_settings=ftp_settings_,
        auth=AuthMode(auth),
        unknown=UnknownPolicy(unknown),
        register_site=register_site,
        trusted_proxies=parse_networks(trusted_proxies),
        admission=AdmissionLimits(max_in_flight=max_in_flight, max_downloads=max_downloads),
        connections=ConnectionLimits(
            header_s=header_timeout,
            idle_s=idle_timeout,
            per_address=max_connections_per_address,
            total=max_connections,
        ),
        address_hold_s=address_hold,
        record_queue=record_queue,
    )
    places = Places(
        tree=env.data.provisioning,
        uploads=env.data.root / "uploads",
        unwritten=env.data.root / "fetches-unwritten.jsonl",
        held=env.data.root / "fetches-held.jsonl",
    )

    def serving(
        settings: ServeSettings, announce: Announce, pooled: Pooled | None, retention: int
    ) -> Totals:
        """One server: this process's, or a worker's (``pooled``: its share of the metrics)."""
        runner = ServerRunner(store, places, env.clock, settings)
        share = pooled(runner) if pooled is not None else None
        app = create_app(
            ApiContext(
                env.data,
                store,
                env.clock,
                passphrase_from_env(),
                status=share.status(runner.status) if share is not None else runner.status,
                metrics=share.exposition if share is not None else runner.metrics(),
                health=share.health(runner.health) if share is not None else runner.health,
            )
        )
        install_dashboard(app, UiContext(env.data, store, env.clock, ui_session_seconds))
        runner.mount(app)
        if share is not None:
            runner.tick = share.publish

        # old fetch records rolled up and removed on a thread of their own (store/retention.py)
        def pruned(result: PruneResult) -> None:  # on the pruner's thread: one writer
            runner.pruned += result.deleted

        halt = start_pruning(store.engine, env.clock, retention, pruned)
        try:
            return runner.run(announce)
        finally:
            halt.set()  # a prune under way stops after its current batch

    where = f"(tree {places.tree}, database {store.safe_url}"
    if workers > 1:
        pool = Pool(workers, f"{where}, {workers} workers)", fetch_retention)
        serve_workers(store, settings, pool, serving)
        return
    totals = serving(settings, _announcer(settings, where + ")"), None, fetch_retention)
    click.echo(_summary(totals))
    if not totals.complete:
        raise click.exceptions.Exit(1)


def _announcer(settings: ServeSettings, where: str) -> Callable[[str, str, int], None]:
    """Prints each listener once ready, in the order asked for (HTTP, HTTPS, TFTP): listeners
    bind concurrently, and the first line printed is always the first listener."""
    order = [
        scheme
        for scheme, address in (
            ("http", settings.http),
            ("https", settings.https),
            ("tftp", settings.tftp),
            ("ftp", settings.ftp),  # explicit FTPS (AUTH TLS) is on the same port
        )
        if address is not None
    ]
    lines: dict[str, str] = {}
    printed = 0

    def announce(scheme: str, host: str, port: int) -> None:
        nonlocal printed
        lines[scheme] = f"fleetkey serving {scheme}://{host}:{port} {where}"
        while printed < len(order) and order[printed] in lines:
            click.echo(lines[order[printed]])
            printed += 1

    return announce


def _summary(totals: Totals) -> str:
    return f"stopped: {done(totals)}"

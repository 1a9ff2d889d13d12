"""``fleetkey serve``: the provisioning server phones boot from."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import click
import uvloop

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.keyring import passphrase_from_env
from fleetkey.cli.context import Env, pass_env
from fleetkey.clock import Clock
from fleetkey.core.naming import normalize_site_serial
from fleetkey.errors import InputError
from fleetkey.serve.cache import REFRESH_S, PostedLicenses
from fleetkey.serve.content import ContentResolver
from fleetkey.serve.http.asgi import AsgiMount
from fleetkey.serve.http.auth import AuthMode, DeviceAuth
from fleetkey.serve.http.forwarded import TrustedProxies, parse_networks
from fleetkey.serve.http.phones import Admission, PhoneService, Policies
from fleetkey.serve.http.server import parse_address, serve_http, tls_context
from fleetkey.serve.identity import Sightings, UnknownPolicy
from fleetkey.serve.metrics import Sources, exposition
from fleetkey.serve.tftp.packets import Limits as TftpLimits
from fleetkey.serve.tftp.server import TftpServer, TftpSettings, serve_tftp
from fleetkey.store.fetches import CAPACITY, FetchWriter
from fleetkey.store.store import Store

log = logging.getLogger(__name__)

API_BODY_BYTES = 1024 * 1024


def _status(
    service: PhoneService, writer: FetchWriter, posted: PostedLicenses, started: float
) -> dict[str, object]:
    return {
        "uptime_s": round(time.time() - started, 3),
        "requests": service.requests,
        "busy_answers": service.rejected,
        "fetch_records": {
            "written": writer.written,
            "waiting": writer.depth,
            "not_recorded": writer.dropped + service.unrecorded,
        },
        "serving": {
            "licenses": len(posted.view.licenses),
            "sites": len(posted.view.sites),
            "phones": len(posted.view.phone_sites),
        },
    }


GC_THRESHOLDS: Final = (10_000, 20, 100)  # young-generation passes 14x rarer than Python's default
# how long the record writer may keep the GIL while the event loop waits for it (Python's
# default is 5 ms): a batch's Python work runs in shorter slices, answers wait less
# (docs/serve.md: keep-alive p99 11-15 -> 8-10 ms, same throughput)
SWITCH_INTERVAL_S: Final = 0.0005


async def keep_fresh(
    posted: PostedLicenses, sightings: Sightings, store: Store, clock: Clock, stop: asyncio.Event
) -> None:
    """Every REFRESH_S, off the event loop: write sightings, then refresh the view."""
    loop = asyncio.get_running_loop()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_S)
        try:
            await loop.run_in_executor(None, sightings.flush, store, clock)
        except Exception:  # kept for the next flush
            log.exception("writing phone sightings failed; will retry")
        if stop.is_set():
            return
        try:
            await loop.run_in_executor(None, posted.refresh)
        except Exception:  # the store is unreachable for a moment: keep serving the last view
            log.exception("refreshing the posted licenses failed; serving the previous view")


@click.command()
@click.option(
    "--http",
    "http_address",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve HTTP (port 0: any free port; 'off' for none).",
)
@click.option(
    "--https",
    "https_address",
    metavar="HOST:PORT",
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
    metavar="SERIAL",
    help="Site that phones registered by --unknown register join when the path has no "
    "/<site-serial>/ prefix.",
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
    "tftp_address",
    is_flag=False,
    flag_value="127.0.0.1:6969",
    metavar="[HOST:PORT]",
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
@pass_env
def serve(
    env: Env,
    http_address: str,
    https_address: str | None,
    cert: Path | None,
    key: Path | None,
    auth: str,
    unknown: str,
    register_site: str | None,
    trusted_proxies: tuple[str, ...],
    tftp_address: str | None,
    tftp_uploads: bool,
    tftp_max_blksize: int,
    tftp_max_transfers: int,
    max_in_flight: int,
    max_downloads: int,
) -> None:
    """Serve license files and the provisioning tree to phones, recording every fetch.

    Stops gracefully on SIGTERM or SIGINT: answers in flight finish, and every fetch record
    and phone sighting is written before the process exits.
    """
    listeners: list[tuple[str, int, bool]] = []
    if http_address != "off":
        listeners.append((*parse_address(http_address, 8080), False))
    tls = None
    if https_address is not None:
        if cert is None or key is None:
            raise InputError("--https needs --cert and --key")
        tls = tls_context(cert, key)
        listeners.append((*parse_address(https_address, 8443), True))
    elif cert is not None or key is not None:
        raise InputError("--cert and --key go with --https HOST:PORT")
    tftp_at = parse_address(tftp_address, 6969) if tftp_address is not None else None
    if not listeners and tftp_at is None:
        raise InputError("nothing to serve: give --http, --https or --tftp")
    policy = UnknownPolicy(unknown)
    site = normalize_site_serial(register_site) if register_site else None
    if policy is UnknownPolicy.REGISTER and site is None:
        log.info("--unknown register without --register-site: only /<site>/ paths register")
    store = env.store()
    writer = FetchWriter(
        store.engine, capacity=CAPACITY, fallback=env.data.root / "fetches-unwritten.jsonl"
    ).start()
    posted = PostedLicenses(store)
    posted.refresh()
    if site is not None and not posted.is_site(site):
        writer.close()
        raise InputError(f"--register-site {site} is not a site (add it with `fleetkey sites add`)")
    sightings = Sightings(policy, site)
    device_auth = DeviceAuth(AuthMode(auth), posted.credentials)
    started = time.time()
    service = PhoneService(
        ContentResolver(store, env.data.provisioning, posted),
        writer,
        env.clock,
        queue_capacity=CAPACITY,
        uploads=env.data.root / "uploads",
        admission=Admission(max_in_flight=max_in_flight, max_downloads=max_downloads),
        policies=Policies(
            auth=device_auth,
            sightings=sightings,
            proxies=TrustedProxies(parse_networks(trusted_proxies)),
        ),
    )
    operator = AsgiMount(
        create_app(
            ApiContext(
                env.data,
                store,
                env.clock,
                passphrase_from_env(),
                status=lambda: _status(service, writer, posted, started),
                metrics=exposition(
                    Sources(
                        requests=lambda: dict(service.answers),
                        sent_bytes=lambda: service.bytes_sent,
                        received_bytes=lambda: service.bytes_received,
                        latency=service.latency,
                        rejected=lambda: service.rejected,
                        auth_failures=lambda: device_auth.failures,
                        queue_depth=lambda: writer.depth,
                        records_written=lambda: writer.written,
                        records_dropped=lambda: writer.dropped + service.unrecorded,
                        tftp=lambda: tftp.counters if tftp is not None else None,
                        registered=lambda: sightings.registered,
                        posted=lambda: len(posted.view.licenses),
                        recalled=lambda: service.repeats.recalled,
                        remembered=lambda: len(service.repeats),
                    )
                ),
            )
        ),
        prefixes=(b"/api/", b"/metrics"),
        body_limit=API_BODY_BYTES,
    )
    service.mount(operator)
    tftp = (
        TftpServer(
            service.resolver,
            writer,
            env.clock,
            sightings,
            env.data.root / "uploads",
            TftpSettings(
                limits=TftpLimits(max_blksize=tftp_max_blksize),
                max_transfers=tftp_max_transfers,
                uploads=tftp_uploads,
            ),
            tftp_at[0],
        )
        if tftp_at is not None
        else None
    )

    # listeners bind concurrently; their lines are printed in the order they were asked for
    # (HTTP, HTTPS, then TFTP), so the first line is always the first listener
    lines: list[str | None] = [None] * (len(listeners) + (tftp is not None))
    printed = 0

    def ready(scheme: str, slot: int) -> Callable[[str, int], None]:
        def announce(bound_host: str, bound_port: int) -> None:
            nonlocal printed
            lines[slot] = (
                f"fleetkey serving {scheme}://{bound_host}:{bound_port} "
                f"(tree {env.data.provisioning}, database {store.safe_url})"
            )
            while printed < len(lines) and lines[printed] is not None:
                click.echo(lines[printed])
                printed += 1

        return announce

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        refresher = loop.create_task(keep_fresh(posted, sightings, store, env.clock, stop))
        # what start-up built (modules, the app, the in-memory view) lives as long as the
        # server: keep it out of the collector's full passes, which a stream of fetch records
        # waiting for their batch otherwise triggers every few seconds (docs/serve.md)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        servers = [
            serve_http(
                service,
                host,
                port,
                stop=stop,
                ready=ready("https" if secure else "http", slot),
                tls=tls if secure else None,
            )
            for slot, (host, port, secure) in enumerate(listeners)
        ]
        if tftp is not None and tftp_at is not None:
            servers.append(
                serve_tftp(tftp, *tftp_at, stop=stop, ready=ready("tftp", len(listeners)))
            )
        await asyncio.gather(*servers)
        await refresher

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        uvloop.run(main())
    finally:
        sys.setswitchinterval(switch_interval)
        writer.close()
    unrecorded = service.unrecorded + (tftp.unrecorded if tftp is not None else 0)
    click.echo(
        f"stopped: {service.requests} requests answered ({service.rejected} busy), "
        + (f"{sum(tftp.counters.outcomes.values())} TFTP transfers, " if tftp else "")
        + f"{writer.written} fetch records written, "
        f"{writer.dropped + unrecorded} not recorded"
    )
    if writer.dropped or unrecorded:
        raise click.exceptions.Exit(1)

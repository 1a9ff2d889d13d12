"""``fleetkey serve``: the provisioning server phones boot from."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click
import uvloop

from fleetkey.cli.context import Env, pass_env
from fleetkey.serve.cache import REFRESH_S, PostedLicenses
from fleetkey.serve.content import ContentResolver
from fleetkey.serve.http.phones import Admission, PhoneService
from fleetkey.serve.http.server import parse_address, serve_http
from fleetkey.store.fetches import CAPACITY, FetchWriter

log = logging.getLogger(__name__)


async def keep_fresh(posted: PostedLicenses, stop: asyncio.Event) -> None:
    """Refresh the in-memory view every REFRESH_S, off the event loop, until stopped."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_S)
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
    help="Where to serve HTTP (port 0: any free port).",
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
def serve(env: Env, http_address: str, max_in_flight: int, max_downloads: int) -> None:
    """Serve license files and the provisioning tree to phones, recording every fetch.

    Stops gracefully on SIGTERM or SIGINT: answers in flight finish and every fetch record is
    written before the process exits.
    """
    host, port = parse_address(http_address, 8080)
    store = env.store()
    writer = FetchWriter(
        store.engine, capacity=CAPACITY, fallback=env.data.root / "fetches-unwritten.jsonl"
    ).start()
    posted = PostedLicenses(store)
    posted.refresh()
    service = PhoneService(
        ContentResolver(store, env.data.provisioning, posted),
        writer,
        env.clock,
        queue_capacity=CAPACITY,
        uploads=env.data.root / "uploads",
        admission=Admission(max_in_flight=max_in_flight, max_downloads=max_downloads),
    )

    def ready(bound_host: str, bound_port: int) -> None:
        click.echo(
            f"fleetkey serving http://{bound_host}:{bound_port} "
            f"(tree {env.data.provisioning}, database {store.safe_url})"
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        refresher = loop.create_task(keep_fresh(posted, stop))
        await serve_http(service, host, port, stop=stop, ready=ready)
        await refresher

    try:
        uvloop.run(main())
    finally:
        writer.close()
    click.echo(
        f"stopped: {service.requests} requests answered ({service.rejected} busy), "
        f"{writer.written} fetch records written, "
        f"{writer.dropped + service.unrecorded} not recorded"
    )
    if writer.dropped or service.unrecorded:
        raise click.exceptions.Exit(1)

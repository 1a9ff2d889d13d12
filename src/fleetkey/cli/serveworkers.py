"""``fleetkey serve --workers N|auto``: the option, and serving with a supervisor and N workers
(serve/workers.py forks them, serve/pool.py sums what they count)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from fleetkey.serve import observe
from fleetkey.serve.pool import PoolTotals, WorkerShare, read_totals, retire
from fleetkey.serve.runner import ServerRunner, ServeSettings, Totals
from fleetkey.serve.workers import (
    MAX_WORKERS,
    Sockets,
    Supervisor,
    bind_listeners,
    close_listeners,
)
from fleetkey.store.store import Store

Announce = Callable[[str, str, int], None]
Pooled = Callable[[ServerRunner], WorkerShare]
# one server: settings, announce, its share of the pool's metrics (None alone), retention days
Serving = Callable[[ServeSettings, Announce, Pooled | None, int], Totals]


class WorkerCount(click.ParamType[int, Any]):
    """``N`` (1 to MAX_WORKERS) or ``auto`` (one per core, ``os.cpu_count()``)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return min(os.cpu_count() or 1, MAX_WORKERS)
        if not text.lstrip("-").isdigit():
            self.fail(f"{value!r} is not a number of workers nor 'auto'", param, ctx)
        count = int(text)
        if not 1 <= count <= MAX_WORKERS:
            self.fail(
                f"{count} workers: give 1 to {MAX_WORKERS} (this machine has "
                f"{os.cpu_count() or 1} cores), or 'auto' for one per core",
                param,
                ctx,
            )
        return count


workers_option = click.option(
    "--workers",
    type=WorkerCount(),
    default="1",
    show_default=True,
    help="Serving processes on the same addresses ('auto': one per core), started, restarted "
    "and stopped by one supervisor. An IPv4 address's connections all go to one worker; on "
    "IPv6 listeners the kernel spreads them (per-address limits are then each worker's).",
)


@dataclass(frozen=True, slots=True)
class Pool:
    workers: int
    where: str  # what the announcement says after the address
    retention: int  # fetch retention days: pruned by the first worker alone


def serve_workers(store: Store, settings: ServeSettings, pool: Pool, serving: Serving) -> None:
    """Bind, start ``pool.workers`` workers, supervise until SIGTERM or SIGINT, print the
    totals (exit 1 when records were lost, as one server does)."""
    addresses = {
        "http": settings.http,
        "https": settings.https,
        "tftp": settings.tftp,
        "ftp": settings.ftp,
    }
    # behind a balancer (HTTP's X-Forwarded-For, FTP's PROXY header) connections come from its
    # few addresses: left to the kernel's hash, or one worker would take every phone's
    proxies = settings.trusted_proxies + settings.ftp_settings.proxy_from
    listeners = bind_listeners(addresses, pool.workers, proxies)
    shared = Path(tempfile.mkdtemp(prefix="fleetkey-workers-"))
    secret = os.urandom(32)
    try:
        store.engine.dispose()  # no connection of the supervisor's goes into a worker

        def work(index: int, sockets: Sockets, ready: Callable[[], None]) -> int:
            store.engine.dispose(close=False)  # the supervisor's pool is not this process's
            mine = dataclasses.replace(
                settings,
                listeners=sockets,
                auth_secret=secret,  # a nonce one worker gave is good at the others
            )
            waiting = set(sockets)

            def announce(scheme: str, host: str, port: int) -> None:
                waiting.discard(scheme)
                if not waiting:
                    ready()

            shares: list[WorkerShare] = []

            def pooled(runner: ServerRunner) -> WorkerShare:
                share = WorkerShare(
                    shared, index, observe.sources(runner), runner.totals,
                    workers=pool.workers,
                    observed=lambda: {
                        "health": observe.local_health(runner), "status": runner.status(),
                    },
                )  # fmt: skip
                shares.append(share)
                return share

            totals = serving(mine, announce, pooled, pool.retention if index == 0 else 0)
            shares[0].publish(totals)  # the last snapshot, with everything written
            return 0 if totals.complete else 1

        def started() -> None:
            for listener in listeners.values():
                host = f"[{listener.host}]" if ":" in listener.host else listener.host
                click.echo(
                    f"fleetkey serving {listener.scheme}://{host}:{listener.port} {pool.where}"
                )

        supervisor = Supervisor(
            pool.workers, listeners, work, lambda index, pid: retire(shared, index, pid)
        )
        supervisor.run(started)
        summed = read_totals(shared)
    finally:
        close_listeners(listeners)
        shutil.rmtree(shared, ignore_errors=True)
    click.echo(summary(summed))
    if not summed.totals.complete:
        raise click.exceptions.Exit(1)


def summary(pool: PoolTotals) -> str:
    """The line printed at the end: one server's, with the workers said first."""
    t = pool.totals
    killed = (
        f" ({pool.killed:,} ended early and restarted; {pool.lost:,} fetch records were waiting in "
        "their queues)"
        if pool.killed
        else ""
    )
    return f"stopped: {pool.workers:,} workers{killed}: {done(t)}"


def done(t: Totals) -> str:
    """What was done, as the line printed at the end says it (for people: 1,234)."""
    tftp = f"{t.tftp_transfers:,} TFTP transfers, " if t.tftp_transfers is not None else ""
    if t.ftp_transfers is not None:
        refused = f" ({t.ftp_refused:,} connections refused with 421)" if t.ftp_refused else ""
        tftp += f"{t.ftp_transfers:,} FTP transfers{refused}, "
    return (
        f"{t.requests:,} requests answered ({t.busy:,} busy), "
        f"{tftp}{t.written:,} fetch records written, {t.not_recorded:,} not recorded"
    )

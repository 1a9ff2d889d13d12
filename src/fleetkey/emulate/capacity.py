"""Measuring a provisioning server's capacity: boots at stepped rates until it strains.

Each step starts emulated boots at a fixed rate for a few seconds, open loop: a new boot starts
on time whether or not earlier ones finished, as phones do after a check-sync. The boots are
the emulator's (``emulate.booting``): each phone, from a loopback address of its own, follows
the master configuration the server gives it, over HTTP or FTP (one session per boot, logged
in with a shared login: the probe's phones are in no inventory). What the storm is decides
what a boot costs (``Storm``): after a license lapse the phones run the served firmware and
only read its header (each probe phone's flash holds what the calibration boot's does: over
FTP, the header already read, so it asks ``SIZE`` and ``MDTM`` only, as a phone that booted
before); after a firmware change every phone's flash starts empty and every boot downloads the
whole image. The two are measured apart, and the measurement says which it was. A 503 is
counted as a rejection, not retried. The step is healthy when the p95 latency and the rejected
share stay under their limits and the server keeps up (the requests answered in the step are at
least 90 % of those its boots asked for). The rate grows by ``factor`` per step; the capacity is the
request rate of the best healthy step. The load generator runs on one core: when the server is
faster than that, the result is a lower bound, and says so.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from fleetkey.clock import Clock, SystemClock
from fleetkey.core.device.boot import FileRequest
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.models import deal_models, default_firmware, parse_model_mix
from fleetkey.emulate.addresses import phone_address, probe_mac
from fleetkey.emulate.booting import BootAborted, Flash, run_boot
from fleetkey.emulate.connect import Connect, connector, send
from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.ftp import check_reachable as check_ftp
from fleetkey.emulate.http import check_reachable as check_http
from fleetkey.emulate.phone import failure_reason
from fleetkey.emulate.transport import Reply
from fleetkey.errors import EmulationError

KEEP_UP: float = 0.9
BUSY: float = 0.9  # the generator's CPU share beyond which it, not the server, may be the limit
REFUSED: Final = frozenset({401, 403})  # a login the probe cannot give: its boots fail


class Storm(enum.StrEnum):
    """What made the phones boot, and so what each boot costs the server."""

    LICENSE_LAPSE = "license-lapse"  # phones run the served image: its header, no download
    FIRMWARE_CHANGE = "firmware-change"  # a new image on the server: every boot downloads it


@dataclass(frozen=True, slots=True)
class Step:
    boots_per_s: float
    seconds: float
    requests: int
    rejected: int
    errors: int
    p95_ms: float
    requests_per_s: float
    asked_per_s: float
    healthy: bool
    why: str
    client_busy: float  # share of the step the load generator's own CPU was busy
    megabytes_per_s: float = 0.0  # firmware downloaded


@dataclass
class Measurement:
    storm: Storm = Storm.LICENSE_LAPSE
    steps: list[Step] = field(default_factory=list)
    stopped: str = ""
    requests_per_boot: int = 0  # of the calibration boot, before the steps
    image_bytes_per_boot: int = 0
    hint: str = ""  # what to do when no capacity was found (the cause's, not a guess)

    @property
    def capacity(self) -> float | None:
        """Requests per second of the best healthy step."""
        return max((s.requests_per_s for s in self.steps if s.healthy), default=None)


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """What a healthy step stays within: p95 latency, the share of 503s, the share of failed
    boots. A step beyond any of them is strained, and the measurement stops."""

    max_p95_ms: float = 250.0
    max_rejected: float = 0.01
    max_errors: float = 0.01


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    rejected: int = 0
    errors: int = 0
    image_bytes: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # answers that ended a boot
    first_failure: str = ""  # the first request that ended a boot, and what it got

    def failed(self, what: str, status: int = 0) -> None:
        self.refused[status] += 1
        self.first_failure = self.first_failure or what


async def _boot(
    connect: Connect,
    prefix: str,
    master: str | None,
    index: int,
    flash: Flash,
    tally: _Tally,
    clock: Clock,
    model: str = "VVX_500",
) -> None:
    """One probe phone's boot from ``flash``; its first 503 or failure ends it (counted, not
    retried)."""
    mac = probe_mac(index)  # locally administered: never a vendor's (``emulate.addresses``)
    config = PhoneConfig(mac, model=model, firmware=default_firmware(model))
    client = connect(config, phone_address(mac), flash, None)

    async def exchange(
        request: FileRequest, body: bytes, agent: str, first: int | None, keep: bool
    ) -> Reply | None:
        began = time.perf_counter()
        path = f"{prefix}/{request.name}"
        try:
            reply = await send(client, path, request, body, agent, first, keep)
        except (OSError, EmulationError) as exc:  # TimeoutError, ConnectionError: OSErrors
            tally.errors += 1
            tally.failed(f"{request.method} {path}: {failure_reason(exc)}")
            raise BootAborted from None
        tally.latencies.append((time.perf_counter() - began) * 1000)
        tally.requests += 1 + reply.challenged  # a login's 401 is an answer the server gave
        asked = "connect" if reply.admission else f"{request.method} {path}"
        answered = f"{asked}: {reply.said or reply.status}"
        if reply.status == 503:
            tally.rejected += 1
            tally.failed(answered, 503)
            raise BootAborted  # a phone would wait for Retry-After; the probe counts it
        if reply.status >= 500 or reply.status in REFUSED:  # not an answer a boot goes on with
            tally.errors += 1
            tally.failed(answered, reply.status)
            raise BootAborted
        return reply

    try:
        outcome = await run_boot(
            config, flash, exchange, licenses=True, named_master=master, now=clock.now
        )
        tally.image_bytes += outcome.image_bytes
    except BootAborted:
        pass
    finally:
        await client.close()


async def measure(
    host: str,
    port: int,
    prefix: str = "",
    *,
    start_boots_per_s: float = 5.0,
    factor: float = 1.5,
    step_s: float = 5.0,
    max_steps: int = 12,
    limits: HealthLimits | None = None,
    on_step: Callable[[Step], None] | None = None,
    clock: Clock | None = None,
    storm: Storm = Storm.LICENSE_LAPSE,
    models: Sequence[str] = ("VVX_500",),
    ftp: FtpLogins | None = None,
    master: str | None = None,
) -> Measurement:
    """Step the boot rate up from ``start_boots_per_s`` until a step is strained.

    A first boot, alone, measures what one boot asks of this server (requests, firmware
    bytes). ``models``: the probe phones' models, dealt in turn (a ``deal_models`` list).
    ``clock`` says what day the probe's phones think it is; the steps themselves are
    timed by the process's monotonic clock. ``ftp``: the probe boots over FTP with these
    logins (one FTP session per boot), else over HTTP. ``master``: a master configuration
    the server URL names, which the phones ask for before their own (domain.md §4).
    """
    limits = limits or HealthLimits()
    clock = clock or SystemClock()
    await (check_http(host, port) if ftp is None else check_ftp(host, port))
    connect = connector(host, port, ftp=ftp)
    result = Measurement(storm)
    calibration, calibrated = _Tally(), Flash(adopt=storm is Storm.LICENSE_LAPSE)
    await _boot(connect, prefix, master, 0, calibrated, calibration, clock, models[0])
    if calibration.errors or calibration.rejected or not calibration.requests:
        result.stopped, result.hint = first_boot_failed(calibration, prefix, ftp is not None)
        return result
    result.requests_per_boot = per_boot = calibration.requests
    result.image_bytes_per_boot = calibration.image_bytes
    rate, index = start_boots_per_s, 1
    for _ in range(max_steps):
        tally = _Tally()
        tasks: list[asyncio.Task[None]] = []
        boots = max(1, round(rate * step_s))
        began, cpu = time.perf_counter(), time.process_time()
        for number in range(boots):
            delay = began + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            model = models[index % len(models)]
            flash = calibrated.copy() if storm is Storm.LICENSE_LAPSE else Flash(adopt=False)
            boot = _boot(connect, prefix, master, index, flash, tally, clock, model)
            tasks.append(asyncio.create_task(boot))
            index += 1
        # the step lasts boots / rate: what was answered by then, over that time (measured up
        # to the last boot's start, a step looked short and its last answers missing)
        planned_s = boots / rate
        if (left := began + planned_s - time.perf_counter()) > 0:
            await asyncio.sleep(left)
        done_in_step = tally.requests
        elapsed = max(time.perf_counter() - began, planned_s)
        await asyncio.gather(*tasks)
        busy = (time.process_time() - cpu) / max(time.perf_counter() - began, 1e-9)
        latencies = sorted(tally.latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("inf")
        total = max(tally.requests, 1)
        asked = boots * per_boot / elapsed
        achieved = done_in_step / elapsed
        why = ""
        if tally.rejected / total > limits.max_rejected:
            why = f"{tally.rejected / total:.1%} answers were 503"
        elif tally.errors / max(boots, 1) > limits.max_errors:
            why = f"{tally.errors} boots failed (no connection, a timeout, 401/403 or 5xx)"
        elif p95 > limits.max_p95_ms:
            why = f"p95 latency {p95:.0f} ms over {limits.max_p95_ms:g} ms"
        elif achieved < KEEP_UP * asked:
            why = f"answered {achieved:,.0f} of the {asked:,.0f} requests/s asked"
        if why and busy > BUSY:
            why += " (the load generator was busy too: the server may sustain more)"
        step = Step(
            rate,
            elapsed,
            tally.requests,
            tally.rejected,
            tally.errors,
            p95,
            achieved,
            asked,
            not why,
            why or "healthy",
            busy,
            tally.image_bytes / 1e6 / max(time.perf_counter() - began, 1e-9),
        )
        result.steps.append(step)
        if on_step is not None:
            on_step(step)
        if why:
            result.stopped = why
            if len(result.steps) == 1:  # a server strained by what it is asked, not refusing
                result.hint = "measure again with a lower --start"
            return result
        rate *= factor
    result.stopped = f"still healthy after {max_steps} steps: the capacity is at least this"
    return result


def first_boot_failed(tally: _Tally, prefix: str, ftp: bool) -> tuple[str, str]:
    """Why the calibration boot, alone, failed, and what to do: a lower rate cures none of
    these (a login the probe does not have, a site prefix its phones are not of, a busy or
    failing server, no answer)."""
    first = tally.first_failure or "no request was answered"
    said = f"the first boot, alone, failed: {first}"
    if 401 in tally.refused:
        return (said + " (the server asks every phone to log in; the probe's phones have none)"), (
            "measure a server that serves phones without a login (fleetkey serve --auth off), "
            "e.g. a copy of this one"
        )
    if ftp and "530" in first:
        return said + " (the FTP server refused the probe's shared login)", (
            "give the server's shared login in the URL (ftp://USER:PASSWORD@HOST:PORT), or "
            "start the server with --ftp-shared-login USER:PASSWORD"
        )
    if 403 in tally.refused and prefix:
        return said + f" (the probe's phones are in no site: {prefix} is refused them)", (
            f"measure the tree's root: give --server without the {prefix} prefix"
        )
    if 403 in tally.refused:
        return said + " (the server refuses phones it does not know)", (
            "the probe's phones are in no inventory: measure a server started with --unknown serve"
        )
    if 503 in tally.refused:
        return said + " (the server was busy before the first step)", (
            "the server is loaded by something else: measure it when it is quiet"
        )
    if tally.refused.keys() - {0}:
        return said + " (the server failed)", "see the server's log for the failure"
    return said, "is the server running and serving? (it accepted a connection)"


def probe_models(mix: str | None, phones: int = 100) -> list[str]:
    """The probe phones' models, one turn of ``phones`` dealt from a ``--models`` mix."""
    return deal_models(parse_model_mix(mix), phones) if mix else ["VVX_500"]

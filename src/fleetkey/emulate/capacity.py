"""Measuring a provisioning server's capacity: boots at stepped rates until it strains.

Each step starts emulated boots (the request sequence of domain.md §5.1, from a loopback
address of their own) at a fixed rate for a few seconds, open loop: a new boot starts on time
whether or not earlier ones finished, as phones do after a check-sync. A 503 is counted as a
rejection, not retried. The step is healthy when the p95 latency and the rejected share stay
under their limits and the server keeps up (the requests answered in the step are at least
90 % of those its boots asked for). The rate grows by ``factor`` per step; the capacity is the
request rate of the best healthy step. The load generator runs on one core: when the server is
faster than that, the result is a lower bound, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fleetkey.clock import Clock, SystemClock
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.engine import DeviceEngine
from fleetkey.core.signing import TrustedKeys
from fleetkey.emulate.fleet import phone_address, user_agent
from fleetkey.emulate.http import HttpClient

KEEP_UP: float = 0.9
BUSY: float = 0.9  # the generator's CPU share beyond which it, not the server, may be the limit


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


@dataclass
class Measurement:
    steps: list[Step] = field(default_factory=list)
    stopped: str = ""

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


async def _boot(
    host: str,
    port: int,
    prefix: str,
    index: int,
    latencies: list[float],
    counts: dict[str, int],
    now: datetime,
) -> None:
    mac = f"02{index:010x}"  # locally administered (bit 1 of the first octet): never a vendor's
    config = PhoneConfig(mac)
    phone = DeviceEngine(config, TrustedKeys())
    client = HttpClient(
        host,
        port,
        local_address=phone_address(index % 60_000),
        user_agent=user_agent(config),
        timeout_s=30,
    )
    try:
        for request in phone.boot_requests(now):
            began = time.perf_counter()
            try:
                body = b"boot log\n" if request.method == "PUT" else b""
                reply = await client.request(
                    request.method,
                    f"{prefix}/{request.name}",
                    body,
                    user_agent=user_agent(config, request.stage),
                )
            except (OSError, TimeoutError, ConnectionError, ValueError):
                counts["errors"] += 1
                return
            latencies.append((time.perf_counter() - began) * 1000)
            counts["requests"] += 1
            if reply.status == 503:
                counts["rejected"] += 1
                return  # a phone would wait for Retry-After; the probe counts it and stops
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
) -> Measurement:
    """Step the boot rate up from ``start_boots_per_s`` until a step is strained.

    ``clock`` says what day the probe's phones think it is (the boot sequence can depend on
    it); the steps themselves are timed by the process's monotonic clock.
    """
    limits = limits or HealthLimits()
    clock = clock or SystemClock()
    result = Measurement()
    rate, index = start_boots_per_s, 0
    per_boot = len(
        DeviceEngine(PhoneConfig("020000000000"), TrustedKeys()).boot_requests(clock.now())
    )
    for _ in range(max_steps):
        latencies: list[float] = []
        counts = {"requests": 0, "rejected": 0, "errors": 0}
        tasks: list[asyncio.Task[None]] = []
        boots = max(1, round(rate * step_s))
        began, cpu = time.perf_counter(), time.process_time()
        for number in range(boots):
            delay = began + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            boot = _boot(host, port, prefix, index, latencies, counts, clock.now())
            tasks.append(asyncio.create_task(boot))
            index += 1
        done_in_step = counts["requests"]
        elapsed = time.perf_counter() - began
        await asyncio.gather(*tasks)
        busy = (time.process_time() - cpu) / max(time.perf_counter() - began, 1e-9)
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("inf")
        total = max(counts["requests"], 1)
        asked = boots * per_boot / elapsed
        achieved = done_in_step / elapsed
        why = ""
        if counts["rejected"] / total > limits.max_rejected:
            why = f"{counts['rejected'] / total:.1%} answers were 503"
        elif counts["errors"] / max(boots, 1) > limits.max_errors:
            why = f"{counts['errors']} boots failed to connect or timed out"
        elif p95 > limits.max_p95_ms:
            why = f"p95 latency {p95:.0f} ms over {limits.max_p95_ms:g} ms"
        elif achieved < KEEP_UP * asked:
            why = f"answered {achieved:,.0f} of the {asked:,.0f} requests/s asked"
        if why and busy > BUSY:
            why += " (the load generator was busy too: the server may sustain more)"
        step = Step(
            rate,
            elapsed,
            counts["requests"],
            counts["rejected"],
            counts["errors"],
            p95,
            achieved,
            asked,
            not why,
            why or "healthy",
            busy,
        )
        result.steps.append(step)
        if on_step is not None:
            on_step(step)
        if why:
            result.stopped = why
            return result
        rate *= factor
    result.stopped = f"still healthy after {max_steps} steps: the capacity is at least this"
    return result

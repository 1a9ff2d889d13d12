"""``fleetkey capacity measure``: find the request rate a provisioning server sustains."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final

import click
import uvloop

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.tables import Column, Kind, Output, print_rows
from fleetkey.emulate.capacity import (
    HealthLimits,
    Measurement,
    Step,
    Storm,
    measure,
    probe_models,
)
from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.runner import ServerUrl
from fleetkey.errors import CommandFailedError
from fleetkey.store import capacity as capacities

STEP_COLUMNS: Final = (
    Column("boots/s", Kind.NUMBER),
    Column("req/s", Kind.NUMBER),
    Column("asked req/s", Kind.NUMBER),
    Column("MB/s", Kind.NUMBER),
    Column("p95 ms", Kind.NUMBER),
    Column("503", Kind.NUMBER),
    Column("errors", Kind.NUMBER),
    Column("verdict"),
)


@click.group()
def capacity() -> None:
    """Measure and list the provisioning server's capacity (for rollout planning)."""


@capacity.command(name="measure")
@click.option(
    "--server",
    required=True,
    metavar="URL",
    help="http://HOST:PORT[/<site>] or ftp://[USER:PASSWORD@]HOST:PORT[/<site>] to probe (FTP: "
    "every probe phone logs in as USER, by default Polycom's factory PlcmSpIp, which the "
    "server must accept as its shared login).",
)
@click.option(
    "--start",
    "start_rate",
    type=click.FloatRange(0.1),
    default=5.0,
    show_default=True,
    help="Boots per second of the first step.",
)
@click.option(
    "--factor",
    type=click.FloatRange(1.05),
    default=1.5,
    show_default=True,
    help="Each step's rate over the one before.",
)
@click.option(
    "--step-seconds",
    "step_s",
    type=click.FloatRange(1),
    default=5.0,
    show_default=True,
    help="How long each step's boots start.",
)
@click.option("--max-steps", type=click.IntRange(1, 50), default=12, show_default=True)
@click.option(
    "--models",
    metavar="MODEL:N%,...",
    help="The probe phones' mix of models, as emulate takes it (default: all VVX_500).",
)
@click.option(
    "--storm",
    type=click.Choice([s.value for s in Storm]),
    default=Storm.LICENSE_LAPSE.value,
    show_default=True,
    help="What the boots are: after a license lapse (no firmware download) or after a "
    "firmware change (every boot downloads the image). Measured apart.",
)
@click.option(
    "--max-p95-ms",
    type=click.FloatRange(1),
    default=250.0,
    show_default=True,
    help="Latency beyond which the server counts as strained.",
)
@click.option(
    "--max-rejected",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Share of 503 answers beyond which it counts as strained.",
)
@click.option(
    "--save/--no-save",
    default=True,
    show_default=True,
    help="Record the result for `rollout plan --capacity measured`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def measure_command(
    env: Env,
    server: str,
    start_rate: float,
    factor: float,
    step_s: float,
    max_steps: int,
    models: str | None,
    storm: str,
    max_p95_ms: float,
    max_rejected: float,
    save: bool,
    as_json: bool,
) -> None:
    """Drive emulated boots at growing rates until latency or 503s climb; record the rate."""
    url = ServerUrl.parse(server, ("http", "ftp"))
    server = url.redacted  # shown and saved without its login: the password stays out
    ftp = None
    if url.scheme == "ftp":
        ftp = FtpLogins(shared=url.login) if url.login is not None else FtpLogins()
    limits = HealthLimits(max_p95_ms, max_rejected)

    def show(step: Step) -> None:
        if not as_json:
            env.err.print(
                f"{step.boots_per_s:8.1f} boots/s → {step.requests_per_s:8.0f} req/s, "
                f"p95 {step.p95_ms:6.1f} ms, 503 {step.rejected}: {step.why}"
            )

    result: Measurement = uvloop.run(
        measure(
            url.host,
            url.port,
            url.prefix.rstrip("/"),
            master=url.master,
            start_boots_per_s=start_rate,
            factor=factor,
            step_s=step_s,
            max_steps=max_steps,
            limits=limits,
            on_step=show,
            clock=env.clock,
            storm=Storm(storm),
            models=probe_models(models),
            ftp=ftp,
        )
    )
    found = result.capacity
    details: dict[str, Any] = {
        "storm": result.storm.value,
        "requests_per_boot": result.requests_per_boot,
        "image_bytes_per_boot": result.image_bytes_per_boot,
        "stopped": result.stopped,
        "steps": [asdict(s) for s in result.steps],
    }
    if save and found is not None:
        with env.store().transaction() as session:
            capacities.record(session, env.clock, server, found, details)
    if as_json:
        env.print_json(
            {
                "server": server,
                "requests_per_s": found,
                "saved": save and found is not None,
                **details,
                "hint": result.hint or None,
            }
        )
        _fail_without_capacity(result)  # the same exit status as the table's
        return
    rows = [
        [
            f"{step.boots_per_s:,.1f}",
            f"{step.requests_per_s:,.0f}",
            f"{step.asked_per_s:,.0f}",
            f"{step.megabytes_per_s:,.1f}",
            f"{step.p95_ms:,.1f}",
            str(step.rejected),
            str(step.errors),
            step.why,
        ]
        for step in result.steps
    ]
    title = (
        f"capacity of {server}, {result.storm.value} storm: {result.requests_per_boot} "
        f"requests and {result.image_bytes_per_boot / 1e6:,.1f} MB of firmware a boot"
    )
    print_rows(env.out, STEP_COLUMNS, rows, Output.TABLE, title=title)
    _fail_without_capacity(result)
    env.out.print(
        f"capacity {found:,.0f} requests/s in a {result.storm.value} storm ({result.stopped})"
        + ("; saved" if save else "")
    )


def _fail_without_capacity(result: Measurement) -> None:
    """No capacity found is a failed measurement (exit 1), with the cause's own hint: a
    strained first step, or a first boot that failed (a login, a prefix, no answer)."""
    if result.capacity is not None:
        return
    if result.steps:
        raise CommandFailedError(
            f"the server was strained at the first step ({result.stopped})",
            hint=result.hint or None,
        )
    raise CommandFailedError(result.stopped, hint=result.hint or None)


@capacity.command(name="show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def list_command(env: Env, as_json: bool) -> None:
    """The newest recorded capacity measurement."""
    with env.store().transaction() as session:
        latest = capacities.latest(session)
    if as_json:
        env.print_json(
            None
            if latest is None
            else {
                "at": latest.at.isoformat(),
                "server": latest.target,
                "requests_per_s": latest.requests_per_s,
                **latest.details,
                "storm": latest.storm,
            }
        )
        return
    if latest is None:
        env.out.print("no capacity measured yet: fleetkey capacity measure --server URL")
        return
    env.out.print(
        f"{latest.requests_per_s:,.0f} requests/s in a {latest.storm} storm, measured "
        f"{latest.at:%Y-%m-%d %H:%M} UTC against {latest.target} "
        f"({latest.details.get('stopped', '')})"
    )

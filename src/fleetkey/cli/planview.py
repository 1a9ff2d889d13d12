"""How a rollout plan is shown: JSON with every wave, a table by site and hour, and what its
load plot (cli/loadplot.py) draws, for a plan or a saved rollout."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Final

from rich.console import Console
from sqlalchemy.orm import Session

from fleetkey.cli.loadplot import LoadPicture
from fleetkey.cli.tables import Column, Kind, Output, print_rows
from fleetkey.core.rollout.plan import Plan
from fleetkey.core.rollout.windows import open_intervals
from fleetkey.store import inventory, load, rollouts
from fleetkey.store.rollouts import Rollout

TABLE_ROWS: Final = 40


def plan_json(made: Plan, rollout_id: int | None) -> dict[str, Any]:
    request = made.input
    return {
        "rollout": rollout_id,
        "phones": made.phones,
        "capacity": request.capacity,
        "headroom": request.headroom,
        "slot_seconds": request.slot_s,
        "per_slot": request.per_slot,
        "boot": {
            "requests": request.cost.requests,
            "bytes": request.cost.bytes,
            "seconds": request.cost.seconds,
            "source": request.cost.source,
        },
        "start": request.start.isoformat(),
        "deadline": request.deadline.isoformat(),
        "finish": made.finish.isoformat(),
        "peak_load": made.peak_load,
        "explanation": list(made.explanation),
        "waves": [
            {
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "site": w.site,
                "macs": list(w.macs),
            }
            for w in made.waves
        ],
    }


PLAN_COLUMNS: Final = (
    Column("hour (UTC)", Kind.ID),
    Column("site", Kind.ID),
    Column("waves", Kind.NUMBER),
    Column("phones", Kind.NUMBER),
    Column("peak req/s", Kind.NUMBER),
)


def print_plan_table(console: Console, made: Plan) -> None:
    """Waves by site and hour: what an operator checks against windows at a glance."""
    hours: dict[tuple[datetime, str], list[int]] = defaultdict(list)
    for wave in made.waves:
        hour = wave.start.replace(minute=0, second=0, microsecond=0)
        hours[(hour, wave.site)].append(len(wave.macs))
    rate = made.input.cost.requests / made.input.slot_s
    rows = [
        [
            f"{hour:%Y-%m-%d %H:00}",
            site,
            f"{len(counts):,}",
            f"{sum(counts):,}",
            f"{max(counts) * rate:,.1f}",
        ]
        for (hour, site), counts in sorted(hours.items())[:TABLE_ROWS]
    ]
    title = f"{len(made.waves):,} waves"
    print_rows(console, PLAN_COLUMNS, rows, Output.TABLE, title=title)
    if len(hours) > TABLE_ROWS:
        console.print(
            f"… {len(hours) - TABLE_ROWS:,} more rows (--json has every wave)", markup=False
        )


def plan_picture(made: Plan) -> LoadPicture:
    """A plan as the load plot shows it: its waves, its sites' windows, the others' load."""
    request = made.input
    return LoadPicture(
        title=f"rollout plan: {made.phones:,} phones, {len(made.waves):,} "
        + ("wave" if len(made.waves) == 1 else "waves"),
        start=request.start,
        deadline=request.deadline,
        capacity=request.capacity,
        headroom=request.headroom,
        slot_s=request.slot_s,
        planned=tuple(made.slot_loads()),
        others=request.busy,
        windows=tuple(
            (
                f"{site.serial} {site.window} {site.timezone}",
                tuple(open_intervals(site.window, site.timezone, request.start, request.deadline)),
            )
            for site in sorted(request.sites, key=lambda site: site.serial)
            if site.window is not None
        ),
    )


def rollout_picture(session: Session, rollout: Rollout, now: datetime) -> LoadPicture:
    """A saved rollout as the load plot shows it: its schedule as it stands, and once run the
    rate the servers answered (every request, in slots of the rollout's length)."""
    planned = load.scheduled(session, rollout.id)
    start = min([rollout.created_at, *(at for at, _ in planned)])
    serials = {site for site, _ in rollouts.sites_of(session, rollout.id)}
    sites = [site for site in inventory.sites(session) if site.serial in serials]
    span = load.run_span(session, rollout.id)
    actual: list[tuple[datetime, float]] = []
    if span is not None:
        margin = timedelta(seconds=rollout.slot_s + rollout.boot_s)
        actual = load.measured_rate(
            session, span[0] - margin, min(span[1] + margin, now), rollout.slot_s
        )
    confirmed = rollouts.progress(session, rollout.id, failures=0).states.get("confirmed", 0)
    return LoadPicture(
        title=f"rollout {rollout.id} ({rollout.state}): {confirmed:,} phones confirmed",
        start=start,
        deadline=rollout.deadline,
        capacity=rollout.capacity,
        headroom=rollout.headroom,
        slot_s=rollout.slot_s,
        planned=tuple(planned),
        others=tuple(load.planned_loads(session, start, rollout.deadline, exclude=rollout.id)),
        actual=tuple(actual),
        actual_bucket_s=rollout.slot_s,
        windows=tuple(
            (
                f"{site.serial} {site.window} {site.timezone}",
                tuple(open_intervals(site.window, site.timezone, start, rollout.deadline)),
            )
            for site in sites
        ),
    )

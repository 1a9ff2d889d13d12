"""How a rollout plan is shown: JSON with every wave, a table by site and hour, a load plot."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from rich.table import Table

from fleetkey.core.rollout.plan import Plan

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


def plan_table(made: Plan) -> Table:
    """Waves by site and hour: what an operator checks against windows at a glance."""
    hours: dict[tuple[datetime, str], list[int]] = defaultdict(list)
    for wave in made.waves:
        hour = wave.start.replace(minute=0, second=0, microsecond=0)
        hours[(hour, wave.site)].append(len(wave.macs))
    rate = made.input.cost.requests / made.input.slot_s
    table = Table(title=f"{len(made.waves):,} waves", title_justify="left")
    for name in ("hour (UTC)", "site", "waves", "phones", "peak req/s"):
        table.add_column(name, justify="left" if name in ("hour (UTC)", "site") else "right")
    for (hour, site), counts in sorted(hours.items())[:TABLE_ROWS]:
        table.add_row(
            f"{hour:%Y-%m-%d %H:00}",
            site,
            f"{len(counts):,}",
            f"{sum(counts):,}",
            f"{max(counts) * rate:,.1f}",
        )
    if len(hours) > TABLE_ROWS:
        table.caption = f"… {len(hours) - TABLE_ROWS:,} more rows (--json has every wave)"
    return table


def plan_plot(made: Plan, path: Path) -> None:
    import matplotlib  # a plot is rare; do not pay for the import otherwise

    matplotlib.use("Agg")
    from matplotlib import pyplot

    request = made.input
    xs, ys, unit = _load_curve(made)
    figure, axes = pyplot.subplots(figsize=(10, 4))
    axes.fill_between(xs, ys, step=None, alpha=0.35, label="predicted load")
    axes.plot(xs, ys, linewidth=1)
    axes.axhline(request.capacity, color="red", linestyle="--", label="capacity")
    axes.axhline(
        request.capacity * request.headroom,
        color="orange",
        linestyle=":",
        label=f"capacity x {request.headroom:g}",
    )
    axes.set_ylabel("requests/s")
    axes.set_xlabel(f"{unit} from {request.start:%Y-%m-%d %H:%M} UTC")
    axes.set_ylim(bottom=0, top=request.capacity * 1.15)
    axes.set_title(f"rollout plan: {made.phones:,} phones, {len(made.waves):,} waves")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _load_curve(made: Plan) -> tuple[list[float], list[float], str]:
    """The predicted load as a step curve (zero between waves), in minutes or hours."""
    request = made.input
    loads = made.slot_loads()
    span = (made.finish - request.start).total_seconds()
    unit, scale = ("minutes", 60.0) if span <= 3 * 3600 else ("hours", 3600.0)
    xs, ys = [0.0], [0.0]
    for start, load in loads:
        begin = (start - request.start).total_seconds() / scale
        end = begin + request.slot_s / scale
        if xs[-1] < begin:
            xs += [xs[-1], begin]
            ys += [0.0, 0.0]
        xs += [begin, end]
        ys += [load, load]
    xs.append(xs[-1])
    ys.append(0.0)
    return xs, ys, unit

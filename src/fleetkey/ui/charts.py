"""Charts as inline SVG, drawn on the server: no script, nothing loaded from elsewhere.

Every text and link in a chart goes through ``markupsafe.escape``; colours are presentation
attributes (``fill=``), not ``style=``, so the page's Content-Security-Policy needs no
``'unsafe-inline'``. Each function returns ``Markup`` for a template to place as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from markupsafe import Markup, escape

STAGE_COLOURS: Final = {  # lead-time stage -> colour, from calm to late
    "ok": "#3b8f5a",
    "60d": "#8fb339",
    "30d": "#e0a526",
    "14d": "#e07b26",
    "7d": "#d4522a",
    "1d": "#b8262b",
    "expired": "#6d1a1d",
}
STATE_COLOURS: Final = {
    "confirmed": "#3b8f5a",
    "notified": "#3a78c2",
    "pending": "#c9ced6",
    "failed": "#b8262b",
}


def _svg(parts: list[str]) -> Markup:
    """The chart as markup: every text and link in ``parts`` went through ``escape``, every
    other value is a number or one of this module's constants."""
    return Markup("".join(parts))  # noqa: S704  # built only from escaped text and numbers


@dataclass(frozen=True, slots=True)
class Expiry:
    """One license on the timeline."""

    row: str  # the site (or phone) it belongs to
    expires_on: date
    stage: str  # a key of STAGE_COLOURS
    link: str
    label: str


def stage_of(days_left: int, stages: Sequence[int]) -> str:
    if days_left < 0:
        return "expired"
    stage = next((s for s in sorted(stages) if days_left <= s), None)
    return "ok" if stage is None else f"{stage}d"


def timeline(items: Sequence[Expiry], today: date, weeks: int) -> Markup:
    """Licenses on a weeks-ahead axis, one row per site, a dot per license coloured by stage;
    drawn at its natural size, stretched to its card's width by the stylesheet."""
    rows = sorted({item.row for item in items})
    label_w, week_w, row_h = 150, 24, 22
    width, height = label_w + weeks * week_w + 10, 30 + row_h * max(len(rows), 1)
    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="licenses expiring by week">'
    ]
    for week in range(0, weeks + 1, 4):
        x = label_w + week * week_w
        parts.append(f'<line x1="{x}" y1="18" x2="{x}" y2="{height}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{x}" y="12" font-size="10" fill="#5b6572">+{week}w</text>')
    for index, name in enumerate(rows):
        y = 30 + index * row_h
        parts.append(f'<text x="4" y="{y + 4}" font-size="11" fill="#1f2933">{escape(name)}</text>')
    for item in items:
        week = max(0, min(weeks, (item.expires_on - today).days // 7))
        x = label_w + week * week_w + week_w // 2
        y = 30 + rows.index(item.row) * row_h
        parts.append(
            f'<a href="{escape(item.link)}"><circle cx="{x}" cy="{y}" r="7" '
            f'fill="{STAGE_COLOURS[item.stage]}"><title>{escape(item.label)}</title></circle></a>'
        )
    parts.append("</svg>")
    return _svg(parts)


def progress_bar(states: dict[str, int], link: str, width: int = 320) -> Markup:
    """Phones of a rollout by state, as one stacked bar (each part links to its phones)."""
    total = sum(states.values()) or 1
    parts = [
        f'<svg class="bar" viewBox="0 0 {width} 16" width="{width}" height="16" role="img" '
        'aria-label="phones by state">'
    ]
    x = 0.0
    for state, colour in STATE_COLOURS.items():
        count = states.get(state, 0)
        if not count:
            continue
        part = width * count / total
        parts.append(
            f'<a href="{escape(link)}?state={state}"><rect x="{x:.1f}" y="0" width="{part:.1f}" '
            f'height="16" fill="{colour}"><title>{count} {state}</title></rect></a>'
        )
        x += part
    parts.append("</svg>")
    return _svg(parts)


def rate_chart(
    per_minute: Sequence[tuple[int, int]], capacity_per_s: float | None, height: int = 120
) -> Markup:
    """Requests (and 503s, in red) per minute over the last hour, oldest first, with the
    measured capacity as a dashed line (in requests per minute)."""
    bar_w, left = 8, 40
    width = left + bar_w * len(per_minute) + 10
    base = height - 22  # the time axis and its labels below it
    ceiling: float = max([total for total, _ in per_minute] + [1])
    if capacity_per_s is not None:
        ceiling = max(ceiling, capacity_per_s * 60 * 1.1)
    scale = (base - 10) / ceiling
    end = left + bar_w * len(per_minute)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="requests per minute, last hour">',
        f'<text x="0" y="12" font-size="10" fill="#5b6572">{ceiling:.0f}/min</text>',
        f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#c9ced6"/>',
        f'<text x="{left}" y="{height - 6}" font-size="10" fill="#5b6572">'
        f"{len(per_minute)} min ago</text>",
        f'<text x="{end}" y="{height - 6}" font-size="10" fill="#5b6572" '
        'text-anchor="end">now</text>',
    ]
    for index, (total, refused) in enumerate(per_minute):
        x = left + index * bar_w
        h = total * scale
        parts.append(
            f'<rect x="{x}" y="{base - h:.1f}" width="{bar_w - 1}" height="{h:.1f}" '
            f'fill="#3a78c2"><title>{total} requests, {refused} answered 503</title></rect>'
        )
        if refused:
            r = refused * scale
            parts.append(
                f'<rect x="{x}" y="{base - r:.1f}" width="{bar_w - 1}" height="{r:.1f}" '
                'fill="#b8262b"/>'
            )
    if capacity_per_s is not None:
        y = base - capacity_per_s * 60 * scale
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="#d4522a" '
            f'stroke-dasharray="4 3"><title>measured capacity {capacity_per_s:.0f}/s</title></line>'
        )
    parts.append("</svg>")
    return _svg(parts)


def plan_chart(
    planned: Sequence[tuple[datetime, float]],
    actual: Sequence[tuple[datetime, float]],
    capacity: float,
    headroom: float,
    slot_s: int,
    width: int = 560,
) -> Markup:
    """A rollout's load against the server: the plan's requests per second per slot (bars),
    the rate the servers answered while it ran (a line), the capacity and the budget
    (capacity x headroom, dashed)."""
    height, left, bottom = 150, 44, 18
    moments = [at for at, _ in planned] + [at for at, _ in actual]
    if not moments:
        return _svg(['<svg class="chart" width="0" height="0"></svg>'])
    start = min(moments)
    span = max((max(moments) - start).total_seconds() + slot_s, slot_s)
    ceiling = max([rate for _, rate in (*planned, *actual)] + [capacity]) * 1.1

    def x_of(at: datetime) -> float:
        return left + (width - left - 6) * (at - start).total_seconds() / span

    def y_of(rate: float) -> float:
        return height - bottom - (height - bottom - 8) * rate / ceiling

    slot_w = max(1.0, (width - left - 6) * slot_s / span - 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="load against capacity">',
        f'<text x="0" y="12" font-size="10" fill="#5b6572">{ceiling:.0f}/s</text>',
        f'<text x="{left}" y="{height - 4}" font-size="10" fill="#5b6572">'
        f"{escape(start.strftime('%Y-%m-%d %H:%M'))} UTC</text>",
    ]
    for at, rate in planned:
        y = y_of(rate)
        parts.append(
            f'<rect x="{x_of(at):.1f}" y="{y:.1f}" width="{slot_w:.1f}" '
            f'height="{height - bottom - y:.1f}" fill="#9dbbe3"><title>planned {rate:.1f}/s at '
            f"{escape(at.strftime('%H:%M:%S'))}</title></rect>"
        )
    for level, colour, label in (
        (capacity, "#b8262b", "capacity"),
        (capacity * headroom, "#e0a526", "budget"),
    ):
        y = y_of(level)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 6}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="4 3"><title>{label} {level:.1f}/s</title></line>'
        )
    if actual:
        points = " ".join(f"{x_of(at):.1f},{y_of(rate):.1f}" for at, rate in actual)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="#1f2933" stroke-width="1.5">'
            "<title>answered by the servers</title></polyline>"
        )
    parts.append("</svg>")
    return _svg(parts)


def wave_chart(waves: Sequence[tuple[int, int, int]], width: int = 480) -> Markup:
    """Phones per wave: planned (grey) and confirmed (green), one bar pair per wave."""
    height = 110
    ceiling = max([planned for _, planned, _ in waves] + [1])
    bar_w = max(4, min(40, (width - 40) // max(len(waves), 1)))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="phones per wave">'
    ]
    for index, (wave, planned, confirmed) in enumerate(waves):
        x = 30 + index * bar_w
        h = (height - 25) * planned / ceiling
        c = (height - 25) * confirmed / ceiling
        parts.append(
            f'<rect x="{x}" y="{height - 15 - h:.1f}" width="{bar_w - 2}" height="{h:.1f}" '
            f'fill="#c9ced6"><title>wave {wave}: {planned} phones</title></rect>'
            f'<rect x="{x}" y="{height - 15 - c:.1f}" width="{bar_w - 2}" height="{c:.1f}" '
            f'fill="#3b8f5a"><title>wave {wave}: {confirmed} confirmed</title></rect>'
        )
    parts.append(f'<text x="0" y="12" font-size="10" fill="#5b6572">{ceiling} phones</text>')
    parts.append("</svg>")
    return _svg(parts)

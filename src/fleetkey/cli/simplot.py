"""The pictures of ``fleetkey simulate``: requests against capacity over time, and phones
with each feature over time, one column per scenario (``--compare`` puts two side by side);
as a PNG, or inline SVG in an HTML report that needs no network (no scripts, no fonts, no
links).
"""

from __future__ import annotations

import html
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

from fleetkey.core.features import FeatureCatalog
from fleetkey.simulate.report import Summary, hourly
from fleetkey.simulate.simulation import Run


def _figure(runs: list[Run], catalog: FeatureCatalog) -> Any:
    import matplotlib  # a plot is rare; do not pay for the import otherwise

    matplotlib.use("Agg")
    from matplotlib import dates, pyplot

    figure, axes = pyplot.subplots(
        2, len(runs), figsize=(7 * len(runs), 7), squeeze=False, sharex="col"
    )
    for column, run in enumerate(runs):
        series = hourly(run, catalog)
        start = run.scenario.start
        hours = [start + timedelta(hours=h) for h in range(len(series["boots"]))]
        load, features = axes[0][column], axes[1][column]
        load.plot(
            hours,
            series["offered_peak_minute_per_s"],
            label="offered (busiest minute)",
            color="#d62728",
            linewidth=0.8,
        )
        load.plot(
            hours,
            series["answered_peak_minute_per_s"],
            label="answered (busiest minute)",
            color="#1f77b4",
            linewidth=0.8,
        )
        capacity = run.scenario.server.capacity_per_s
        load.axhline(capacity, color="#000000", linestyle="--", linewidth=0.8, label="capacity")
        load.axhline(
            capacity * run.scenario.server.headroom,
            color="#2ca02c",
            linestyle=":",
            linewidth=0.8,
            label="capacity x headroom",
        )
        load.set_ylabel("requests/s")
        load.set_title(run.scenario.name)
        load.legend(fontsize=7, loc="upper right")
        for name, values in series["phones_with"].items():
            features.plot(hours, values, label=name, linewidth=0.9)
        features.set_ylabel("phones with the feature")
        features.set_ylim(bottom=0)
        features.legend(fontsize=7, loc="lower left")
        features.xaxis.set_major_formatter(dates.DateFormatter("%m-%d", tz="UTC"))  # type: ignore[no-untyped-call]
        features.set_xlabel("UTC")
    figure.tight_layout()
    return figure, pyplot


def write_png(
    runs: list[Run], summaries: list[Summary], catalog: FeatureCatalog, path: Path
) -> None:
    figure, pyplot = _figure(runs, catalog)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def svg(runs: list[Run], catalog: FeatureCatalog) -> str:
    figure, pyplot = _figure(runs, catalog)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    pyplot.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def write_html(
    runs: list[Run], summaries: list[Summary], catalog: FeatureCatalog, path: Path
) -> None:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>fleetkey simulate</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
        "{text-align:left}</style></head><body>",
        f"<h1>fleetkey simulate: {html.escape(' vs '.join(s.name for s in summaries))}</h1>",
    ]
    for summary in summaries:
        parts.append(_summary_html(summary))
    parts.append(svg(runs, catalog))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def _summary_html(summary: Summary) -> str:
    doc = summary.to_json()
    peak = doc["peak"]
    rows = [
        ("period", f"{doc['start']} + {doc['days']} days"),
        ("phones / sites", f"{doc['phones']:,} / {doc['sites']:,}"),
        *((f"reboots: {cause}", f"{count:,}") for cause, count in doc["reboots"].items()),
        ("peak offered req/s", f"{peak['offered_per_s']:,} at {peak['offered_at']}"),
        ("peak answered req/s", f"{peak['answered_per_s']:,}"),
        ("capacity (x headroom)", f"{peak['capacity_per_s']:,} ({peak['budget_per_s']:,})"),
        ("minutes over budget", f"{peak['minutes_over_budget']:,}"),
        (
            "longest boot",
            f"{'≥ ' if doc['longest_boot_at_least'] else ''}{doc['longest_boot_s']:,} s",
        ),
        ("still waiting at end", f"{doc['phones_waiting_at_end']:,}"),
        ("booted expired at end (R8)", f"{doc['booted_expired_at_end']:,}"),
    ]
    out = [f"<h2>{html.escape(summary.name)}</h2><table>"]
    out += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows]
    out.append("</table><table><tr><th>feature</th><th>phones at start</th><th>affected</th>"
               "<th>phone-hours lost</th><th>without at end</th></tr>")  # fmt: skip
    for f in summary.features:
        out.append(
            f"<tr><td>{html.escape(f.feature)}</td><td>{f.phones_at_start:,}</td>"
            f"<td>{f.phones_affected:,}</td><td>{f.phone_hours_lost:,.1f}</td>"
            f"<td>{f.phones_without_at_end:,}</td></tr>"
        )
    out.append("</table>")
    for r in summary.rollouts:
        out.append(
            f"<p>rollout of {html.escape(r.license or '-')}: {r.reached:,} of {r.phones:,} "
            f"phones reached, finished {html.escape(str(r.finished or 'not all'))} "
            f"(planned {r.planned_finish}, deadline {r.deadline})</p>"
        )
    return "".join(out)

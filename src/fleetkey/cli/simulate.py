"""``fleetkey simulate SCENARIO.toml``: what a fleet would go through, before it happens."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from fleetkey.cli.context import Env, pass_env
from fleetkey.core.features import FeatureCatalog
from fleetkey.errors import InputError
from fleetkey.simulate.report import Summary, hourly, summarize
from fleetkey.simulate.scenario import Scenario
from fleetkey.simulate.scenariofile import parse_scenario
from fleetkey.simulate.simulation import Run
from fleetkey.simulate.simulation import simulate as run_simulation


@click.command()
@click.argument(
    "scenario_file",
    metavar="[SCENARIO.toml]",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--from-store",
    is_flag=True,
    help="Simulate the fleet in the store (sites, phones, licenses, boot cost, capacity); "
    "SCENARIO.toml, if given, is a what-if on top of it.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    help="Simulate this many days (default: the scenario's).",
)
@click.option("--seed", type=click.IntRange(0, 2**20), default=0, show_default=True,
              help="Seed of the calls and random draws.")  # fmt: skip
@click.option("--compare", "other_file", metavar="OTHER.toml",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Simulate a second scenario and show the two side by side.")  # fmt: skip
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG: requests against capacity, phones with each feature.")  # fmt: skip
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report (opens without a network).")  # fmt: skip
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary and hourly series as JSON."
)
@pass_env
def simulate(
    env: Env,
    scenario_file: Path | None,
    from_store: bool,
    days: int | None,
    seed: int,
    other_file: Path | None,
    plot_path: Path | None,
    html_path: Path | None,
    as_json: bool,
) -> None:
    """Simulate a fleet by the device rules: lost feature-hours, storms, rollouts (what-if).

    The fleet of SCENARIO.toml, or with --from-store the store's (SCENARIO.toml then a what-if
    on top of it), by R1-R9: features lost and for how long, reboot storms against the server's
    capacity, rollouts under the windows. The scenario format is in docs/simulate.md."""
    catalog = env.data.catalog()
    base: Scenario | None = None
    notes: tuple[str, ...] = ()
    if from_store:
        from fleetkey.ops.storefleet import scenario_from_store  # the store only when asked

        with env.store().transaction() as session:
            fleet = scenario_from_store(session, env.clock.now())
        base, notes = fleet.scenario, fleet.notes
    elif scenario_file is None:
        raise click.UsageError("give SCENARIO.toml, or --from-store")
    first = _load(scenario_file, catalog, days, base) if scenario_file else _days(base, days)
    scenarios = [first]
    if other_file is not None:
        scenarios.append(_load(other_file, catalog, days, base))
    runs = [run_simulation(s, seed) for s in scenarios]
    summaries = [summarize(r, catalog) for r in runs]
    if plot_path is not None or html_path is not None:
        from fleetkey.cli import simplot  # matplotlib only when a picture is asked for

        if plot_path is not None:
            simplot.write_png(runs, summaries, catalog, plot_path)
        if html_path is not None:
            simplot.write_html(runs, summaries, catalog, html_path)
    if as_json:
        documents = [_document(r, s, catalog) for r, s in zip(runs, summaries, strict=True)]
        document = documents[0] if len(documents) == 1 else {"scenarios": documents}
        env.print_json({**document, "notes": list(notes)} if from_store else document)
        return
    for note in notes:
        env.err.print(f"store: {note}")
    _print(env, summaries)
    for path in (plot_path, html_path):
        if path is not None:
            env.err.print(f"wrote {path}")


def _load(path: Path, catalog: FeatureCatalog, days: int | None, base: Scenario | None) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    return _days(parse_scenario(text, str(path), catalog, base), days)


def _days(scenario: Scenario | None, days: int | None) -> Scenario:
    assert scenario is not None  # noqa: S101  # a file or the store gave one
    return scenario if days is None else replace(scenario, days=days)


def _document(run: Run, summary: Summary, catalog: FeatureCatalog) -> dict[str, Any]:
    return {"summary": summary.to_json(), "hourly": hourly(run, catalog)}


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


def _longest(summary: Summary) -> str:
    at_least = "≥ " if summary.longest_boot_open else ""  # a phone still waiting at the end
    return f"{at_least}{summary.longest_boot_s:,.0f} s"


def _print(env: Env, summaries: list[Summary]) -> None:
    facts = Table(title="simulation", title_justify="left")
    facts.add_column("")
    for summary in summaries:
        facts.add_column(summary.name, justify="right", overflow="fold")
    rows: list[tuple[str, list[str]]] = [
        ("period", [f"{s.start:%Y-%m-%d} + {s.days} d" for s in summaries]),
        ("phones / sites", [f"{s.phones:,} / {s.sites:,}" for s in summaries]),
        *(
            (f"reboots: {cause}", [f"{s.reboots.get(cause, 0):,}" for s in summaries])
            for cause in summaries[0].reboots
        ),
        (
            "peak offered req/s",
            [f"{s.peak_offered_per_s:,.1f} at {_when(s.peak_offered_at)}" for s in summaries],
        ),
        ("peak answered req/s", [f"{s.peak_answered_per_s:,.1f}" for s in summaries]),
        (
            "capacity (x headroom)",
            [f"{s.capacity_per_s:,g} ({s.budget_per_s:,g})" for s in summaries],
        ),
        ("minutes over budget", [f"{s.over_budget_minutes:,}" for s in summaries]),
        ("longest boot", [_longest(s) for s in summaries]),
        ("still waiting at end", [f"{s.waiting_at_end:,}" for s in summaries]),
        ("reboots held by calls", [f"{s.waited_for_calls:,}" for s in summaries]),
        ("booted expired at end (R8)", [f"{s.booted_expired_at_end:,}" for s in summaries]),
    ]
    for name, values in rows:
        facts.add_row(name, *values)
    env.out.print(facts)
    for summary in summaries:
        features = Table(title=f"features: {summary.name}", title_justify="left")
        features.add_column("feature", no_wrap=True)
        for name in ("phones at start", "affected", "phone-hours lost", "without at end"):
            features.add_column(name, justify="right")
        for f in summary.features:
            counts = (f.phones_at_start, f.phones_affected, f.phones_without_at_end)
            at_start, affected, without = (f"{n:,}" for n in counts)
            features.add_row(f.feature, at_start, affected, f"{f.phone_hours_lost:,.1f}", without)
        env.out.print(features)
        if summary.rollouts:
            rollouts = Table(title=f"rollouts: {summary.name}", title_justify="left")
            for name in ("license", "phones", "reached", "finished", "planned finish", "deadline"):
                rollouts.add_column(
                    name, justify="right" if name in ("phones", "reached") else "left"
                )
            for r in summary.rollouts:
                times = (_when(r.finished), _when(r.planned_finish), _when(r.deadline))
                rollouts.add_row(r.license or "-", f"{r.phones:,}", f"{r.reached:,}", *times)
            env.out.print(rollouts)

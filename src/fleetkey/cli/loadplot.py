"""The load plot of a rollout: its windows, deadline, capacity and headroom, the load other
rollouts plan, and once run the rate the servers really answered.

Two panels: the *overview* spans from the plan's start to its deadline, one row per site with
its window openings, the waves as bars at least a few pixels wide, the deadline; the *detail*
spans the waves (padded so that a one-wave plan is a block, not a 1-pixel bar), with the
window openings shaded, the other rollouts' load and this plan's stacked on it, the actual
rate as a line, the capacity, and capacity x headroom with the headroom band between them.
:class:`LoadPicture` is what is drawn, computed without matplotlib; :func:`draw` draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from fleetkey.core.rollout.sharing import Load, grid_start

PLANNED_COLOR: Final = "#1f77b4"
OTHERS_COLOR: Final = "#9e9e9e"
WINDOW_COLOR: Final = "#2ca02c"
ACTUAL_COLOR: Final = "#000000"
PAD_SLOTS: Final = 5  # the detail shows at least this many slots either side of the waves
MIN_BAR: Final = 1 / 300  # a wave in the overview is at least this share of its width


@dataclass(frozen=True, slots=True)
class LoadPicture:
    title: str
    start: datetime
    deadline: datetime
    capacity: float
    headroom: float
    slot_s: int
    planned: tuple[tuple[datetime, float], ...]  # (slot start, req/s) of this rollout
    others: tuple[Load, ...] = ()
    actual: tuple[tuple[datetime, float], ...] = ()  # (bucket start, req/s) answered
    actual_bucket_s: int = 60
    windows: tuple[tuple[str, tuple[tuple[datetime, datetime], ...]], ...] = ()

    @property
    def budget(self) -> float:
        return self.capacity * self.headroom

    def activity(self) -> tuple[datetime, datetime]:
        """From the first planned or answered bucket to the end of the last."""
        slot, bucket = timedelta(seconds=self.slot_s), timedelta(seconds=self.actual_bucket_s)
        starts = [at for at, _ in self.planned] + [at for at, _ in self.actual]
        ends = [at + slot for at, _ in self.planned] + [at + bucket for at, _ in self.actual]
        if not starts:
            return self.start, self.deadline
        return min(starts), max(ends)

    def focus(self) -> tuple[datetime, datetime]:
        """The detail's span: the activity, padded by a quarter of it and at least
        ``PAD_SLOTS`` slots either side."""
        first, last = self.activity()
        pad = max((last - first) / 4, timedelta(seconds=PAD_SLOTS * self.slot_s))
        return first - pad, last + pad

    def stacked(self) -> tuple[list[datetime], list[float], list[float]]:
        """Breakpoints of the detail, and at each (until the next) the others' load and the
        others' plus this plan's: two step curves. Planned slots lie on the epoch grid."""
        lo, hi = self.focus()
        slot = timedelta(seconds=self.slot_s)
        steps: dict[datetime, float] = {lo: 0.0, hi: 0.0}
        for at, _ in self.planned:
            steps.setdefault(at, 0.0)
            steps.setdefault(at + slot, 0.0)
        for load in self.others:
            steps[load.start] = steps.get(load.start, 0.0) + load.rate
            steps[load.end] = steps.get(load.end, 0.0) - load.rate
        mine = dict(self.planned)
        xs: list[datetime] = []
        others: list[float] = []
        total: list[float] = []
        level = 0.0
        for edge in sorted(steps):
            level += steps[edge]
            if lo <= edge <= hi:
                own = mine.get(grid_start(edge, self.slot_s), 0.0)
                xs.append(edge)
                others.append(max(level, 0.0))
                total.append(max(level, 0.0) + own)
        return xs, others, total


def draw(picture: LoadPicture, path: Path) -> None:
    """Write ``picture`` as a PNG."""
    import matplotlib  # a plot is rare; do not pay for the import otherwise

    matplotlib.use("Agg")
    from matplotlib import dates, pyplot

    figure, (overview, detail) = pyplot.subplots(
        2, 1, figsize=(11, 6.5), gridspec_kw={"height_ratios": [1, 2.4]}
    )
    _overview(overview, picture)
    _detail(detail, picture)
    for axes in (overview, detail):
        axes.xaxis.set_major_formatter(
            dates.DateFormatter("%m-%d %H:%M", tz="UTC")  # type: ignore[no-untyped-call]
        )
        axes.tick_params(axis="x", labelsize=8)
    overview.set_title(picture.title)
    detail.set_xlabel("UTC")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _overview(axes: Any, picture: LoadPicture) -> None:
    end = max(picture.deadline, picture.activity()[1])
    span = end - picture.start
    rows = [label for label, _ in picture.windows]
    for row, (_, openings) in enumerate(picture.windows):
        bars = [(lo, hi - lo) for lo, hi in openings]
        axes.broken_barh(bars, (row - 0.35, 0.7), color=WINDOW_COLOR, alpha=0.35, linewidth=0)
    wide = max(timedelta(seconds=picture.slot_s), span * MIN_BAR)
    waves = [(at, wide) for at, _ in picture.planned]
    axes.broken_barh(waves, (len(rows) - 0.35, 0.7), color=PLANNED_COLOR, linewidth=0)
    lo, hi = picture.focus()
    axes.axvspan(lo, hi, color="#000000", alpha=0.06)
    axes.axvline(picture.deadline, color="red", linewidth=1.5)
    axes.annotate(
        f"deadline {picture.deadline:%Y-%m-%d %H:%M}", (picture.deadline, len(rows) + 0.45),
        ha="right", va="bottom", fontsize=8, color="red",
    )  # fmt: skip
    axes.set_yticks(range(len(rows) + 1), [*rows, "waves"], fontsize=8)
    axes.set_ylim(-0.6, len(rows) + 0.9)
    axes.set_xlim(picture.start, end + span / 50)


def _detail(axes: Any, picture: LoadPicture) -> None:
    lo, hi = picture.focus()
    for _, openings in picture.windows:
        for start, stop in openings:
            if stop > lo and start < hi:
                axes.axvspan(max(start, lo), min(stop, hi), color=WINDOW_COLOR, alpha=0.12)
    xs, others, total = picture.stacked()
    if any(others):
        axes.fill_between(
            xs, 0, others, step="post", color=OTHERS_COLOR, linewidth=0, label="other rollouts"
        )
    axes.fill_between(  # no edge: where the plan adds nothing, nothing shows
        xs, others, total, step="post", color=PLANNED_COLOR, linewidth=0, label="planned"
    )
    if picture.actual:
        ax, ay = _steps(picture.actual, picture.actual_bucket_s)
        axes.plot(ax, ay, color=ACTUAL_COLOR, linewidth=1.2, label="actual (fetch records)")
    axes.axhline(picture.capacity, color="red", linestyle="--", label="capacity")
    axes.axhline(
        picture.budget, color="orange", linestyle=":", label=f"capacity x {picture.headroom:g}"
    )
    axes.axhspan(picture.budget, picture.capacity, color="orange", alpha=0.08, label="headroom")
    if lo <= picture.deadline <= hi:
        axes.axvline(picture.deadline, color="red", linewidth=1.5, label="deadline")
    top = max([picture.capacity, *total, *(rate for _, rate in picture.actual)])
    axes.set_ylim(0, top * 1.15)
    axes.set_xlim(lo, hi)
    axes.set_ylabel("requests/s")
    axes.legend(loc="upper right", fontsize=8)


def _steps(
    points: Sequence[tuple[datetime, float]], width_s: int
) -> tuple[list[datetime], list[float]]:
    """A step line through buckets, down to zero between buckets that are not adjacent."""
    width = timedelta(seconds=width_s)
    xs: list[datetime] = []
    ys: list[float] = []
    for at, rate in points:
        if xs and xs[-1] < at:
            xs += [xs[-1], at]
            ys += [0.0, 0.0]
        xs += [at, at + width]
        ys += [rate, rate]
    return xs, ys

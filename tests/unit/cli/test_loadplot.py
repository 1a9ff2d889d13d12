"""The load plot: windows, deadline, capacity and headroom, the others' load, the actual rate;
a one-wave plan drawn as a block, measured in the PNG's pixels."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from fleetkey.cli.loadplot import (
    ACTUAL_COLOR,
    OTHERS_COLOR,
    PLANNED_COLOR,
    WINDOW_COLOR,
    LoadPicture,
    draw,
)
from fleetkey.cli.planview import plan_picture
from fleetkey.core.rollout.plan import BootCost, PlanInput, SitePhones, plan_rollout
from fleetkey.core.rollout.sharing import Load
from fleetkey.core.rollout.windows import Window

START = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
COST = BootCost(requests=10, bytes=40_000, seconds=60, source="test")


def one_wave(busy: tuple[Load, ...] = ()) -> LoadPicture:
    """20 phones at a site whose window opens at 14:00; deadline 30 days on: one wave."""
    site = SitePhones(
        "100000000001", "UTC", Window.parse("14:00-16:00"),
        tuple(f"0004f2{i:06x}" for i in range(20)),
    )  # fmt: skip
    made = plan_rollout(PlanInput((site,), COST, 100, START, START + timedelta(days=30), busy=busy))
    assert len(made.waves) == 1
    return plan_picture(made)


def test_a_one_wave_plan_is_shown_around_its_wave_with_its_windows_and_deadline() -> None:
    picture = one_wave()
    lo, hi = picture.focus()
    wave = timedelta(seconds=60)
    assert picture.planned[0][0] == START + timedelta(hours=2)
    assert wave / (hi - lo) >= 1 / 11  # a block of the detail, not 1 pixel of 30 days
    assert picture.deadline == START + timedelta(days=30)
    label, openings = picture.windows[0]
    assert label == "100000000001 14:00-16:00 UTC"
    assert len(openings) == 30
    assert openings[0] == (START + timedelta(hours=2), START + timedelta(hours=4))
    assert (picture.capacity, picture.budget) == (100, pytest.approx(70))


def test_the_others_load_is_stacked_under_the_plan() -> None:
    other = Load(START + timedelta(hours=2), START + timedelta(hours=3), 40.0, 3)
    picture = one_wave((other,))
    xs, others, total = picture.stacked()
    at_wave = xs.index(picture.planned[0][0])
    assert others[at_wave] == 40.0
    assert total[at_wave] == pytest.approx(40.0 + picture.planned[0][1])
    assert total[at_wave] <= picture.budget + 1e-9  # the plan fits beside rollout 3


def pixels(path: Path, color: str, rows: slice, alpha: float = 1.0) -> np.ndarray:
    """Where the PNG has ``color`` (drawn with ``alpha`` over white) in ``rows``."""
    rgb = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]) * alpha + 1 - alpha
    picture = image.imread(path)[rows, :, :3]
    return np.all(np.abs(picture - rgb) < 0.02, axis=2)


def test_the_drawn_wave_is_a_block_and_the_actual_rate_a_line(tmp_path: Path) -> None:
    picture = one_wave((Load(START, START + timedelta(days=1), 20.0, 3),))
    wave = picture.planned[0][0]
    actual = ((wave, 30.0), (wave + timedelta(seconds=60), 25.0))
    with_actual = replace(picture, actual=actual, actual_bucket_s=60)
    path = tmp_path / "plot.png"
    draw(with_actual, path)
    height = image.imread(path).shape[0]
    detail = slice(height * 2 // 5, height)  # the lower panel
    wave_columns = pixels(path, PLANNED_COLOR, detail).any(axis=0).sum()
    assert wave_columns >= 60  # of 1100: was a 1-pixel bar
    assert pixels(path, OTHERS_COLOR, detail).any()
    assert pixels(path, ACTUAL_COLOR, detail).sum() > 100
    windows = pixels(path, WINDOW_COLOR, slice(0, height * 2 // 5), alpha=0.35)
    assert windows.any(axis=0).sum() >= 30  # thirty two-hour openings over thirty days

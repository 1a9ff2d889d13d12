"""The rules shared by the engine and the simulator are typed (``Num`` was ``Any``): mypy
--strict takes numbers in and gives numbers back, arrays in and arrays back, and refuses
anything else (a str was accepted, and a rule's result was Any wherever it went)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GOOD = """
from datetime import date
import numpy as np
from numpy.typing import NDArray
from typing import Any
from fleetkey.core.device.schedule import boot_draw, mix64, picked_day, periodic_after, unit
from fleetkey.core.device.engine import booted_expired, check_sync_reboots

day: int = picked_day(10, 7, 3)
date.fromordinal(picked_day(738000, 7, 3))
moment: float = periodic_after(1.5, 60, 100.0)
draw: float = boot_draw(mix64(12345), 3)
drawn: NDArray[Any] = boot_draw(np.array([1], dtype=np.uint64), 1)
days: NDArray[Any] = picked_day(np.array([1, 2]), 7, np.array([0, 1]))
u: float = unit(7)
expired: int = booted_expired(3, 1, False)
many: NDArray[Any] = check_sync_reboots(np.array([True]), False, np.array([False]), False)
"""

BAD = """
from fleetkey.core.device.schedule import boot_draw, picked_day
from fleetkey.core.device.engine import booted_expired

picked_day("10", 7, 3)
name: str = boot_draw(1, 2)
booted_expired(1.5, 1, False)
"""


def test_numbers_and_arrays_type_check_as_what_they_are_and_nothing_else(
    tmp_path: Path,
) -> None:
    """One mypy run over both files (it takes a while on a loaded machine)."""
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "good.py", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors = [line.split(":")[:2] for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [["bad.py", "5"], ["bad.py", "6"], ["bad.py", "7"]], done.stdout

"""bench/boot.py's CPU a request: each server's threads read from /proc, split into the event
loop (each process's main thread) and the other threads, divided by the answers, and the
budget 0.8x nginx's rate leaves fleetkey once its system time is paid."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    """A bench module by its path (bench/ on sys.path would shadow ``http``); boot.py imports
    benchfleet by name, so that one is registered under its own."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def boot() -> ModuleType:
    _load("benchfleet")
    return _load("boot")


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_thread_counts_among_the_other_threads_not_the_loop(boot: ModuleType) -> None:
    benchfleet = sys.modules["benchfleet"]
    spun, stop = threading.Event(), threading.Event()

    def work() -> None:
        _spin(0.4)
        spun.set()
        stop.wait()  # alive at the second reading: an ended thread is no longer in /proc

    before = benchfleet.thread_cpu(os.getpid())
    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert spun.wait(30)
        after = benchfleet.thread_cpu(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert sum(after["other"]) - sum(before["other"]) >= 0.35
    assert sum(after["loop"]) - sum(before["loop"]) < 0.2


def test_cpu_a_request_divides_each_kind_of_thread_by_the_answers(boot: ModuleType) -> None:
    spent = boot.cpu_a_request(
        {"loop": (1.0, 2.0), "other": (0.5, 0.0)},
        {"loop": (1.5, 2.25), "other": (0.75, 0.05)},
        10_000,
    )
    assert spent["loop"] == pytest.approx({"user_us": 50.0, "system_us": 25.0})
    assert spent["other"] == pytest.approx({"user_us": 25.0, "system_us": 5.0})
    assert spent["all"] == pytest.approx({"user_us": 75.0, "system_us": 30.0})


def _run(rps: float, loop: tuple[float, float], other: tuple[float, float]) -> dict[str, Any]:
    return {
        "rps": rps,
        "server_cpu": {
            "loop": {"user_us": loop[0], "system_us": loop[1]},
            "other": {"user_us": other[0], "system_us": other[1]},
            "all": {"user_us": loop[0] + other[0], "system_us": loop[1] + other[1]},
        },
    }


def test_the_budget_is_what_0_8x_nginx_rate_leaves_after_fleetkeys_system_time(
    boot: ModuleType,
) -> None:
    runs = {
        "nginx": {
            "keep-alive": [_run(40_000, (4.0, 20.0), (0.0, 0.0))],
            "close": [_run(20_000, (5.0, 35.0), (0.0, 0.0))],
        },
        "fleetkey": {
            "keep-alive": [_run(14_000, (35.0, 20.0), (12.0, 3.0))],
            "close": [_run(8_000, (50.0, 50.0), (16.0, 4.0))],
        },
    }
    medians = {
        name: {mode: v[0]["rps"] for mode, v in modes.items()} for name, modes in runs.items()
    }
    lines = boot.cpu_lines(runs, medians)
    text = "\n".join(lines)
    # 1 / (0.8 x 40,000 req/s) = 31.25 µs; fleetkey's system time 23.0 leaves 8.2 (rounded)
    assert "keep-alive: 0.8x nginx's rate leaves fleetkey 31.2 µs a request of core 0;" in text
    assert (
        "its system time alone is 23.0 (nginx's 20.0): 8.2 left for user time, it spends 47.0"
        in text
    )
    # 1 / (0.8 x 20,000) = 62.5 µs; 54.0 of system time leaves 8.5
    assert "close: 0.8x nginx's rate leaves fleetkey 62.5 µs a request of core 0;" in text
    assert "event loop 35.0 + 20.0, other threads (the record writer most) 12.0 + 3.0" in text
    assert "nginx     keep-alive  user    4.0 + system  20.0 =   24.0" in text

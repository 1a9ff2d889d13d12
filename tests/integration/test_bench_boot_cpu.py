"""bench/boot.py's CPU a request: each server's threads read from /proc, split into the event
loop (each process's main thread, a child process's too) and the other threads, divided by the
answers, and the budget 0.8x nginx's rate leaves fleetkey once system time is paid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import bench_module, wait_until


@pytest.fixture(scope="module")
def boot() -> Iterator[ModuleType]:
    """bench/boot.py, whose ``from benchfleet import …`` finds bench/benchfleet.py in
    sys.modules for as long as the module's tests run (bench/ on sys.path would shadow
    ``http``)."""
    with pytest.MonkeyPatch.context() as registry:
        bench_module("benchfleet", registry)
        yield bench_module("boot", registry)


# a process whose other thread spins for 0.4 s of user time, then waits; with "child" its main
# thread spins in a child process instead (nginx's worker under its master)
_SPINNER = textwrap.dedent(
    """
    import subprocess, sys, threading, time

    def spin():  # the clock is a system call here: read it once every 100,000 turns
        end = time.thread_time() + 0.4
        while time.thread_time() < end:
            for _ in range(100_000):
                pass
        print("spun", flush=True)

    if sys.argv[1] == "thread":
        threading.Thread(target=spin, daemon=True).start()
    else:
        subprocess.Popen([sys.executable, "-c", sys.argv[2]]).wait()  # spins, then sleeps
    time.sleep(60)
    """
)
_CHILD = (
    "import time\nend = time.thread_time() + 0.4\nwhile time.thread_time() < end:\n"
    "    for _ in range(100_000): pass\ntime.sleep(60)"
)


def _spent(boot: ModuleType, how: str) -> dict[str, dict[str, float]]:
    """CPU a request (one request) of a spinner process, read after its 0.4 s of spinning."""
    benchfleet = sys.modules["benchfleet"]
    args = [sys.executable, "-c", _SPINNER, how, _CHILD]
    # a session of its own: the child the "child" case starts is killed with it
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            before = benchfleet.thread_cpu(process.pid)
            assert process.stdout is not None
            if how == "thread":
                assert process.stdout.readline().strip() == "spun"
            else:  # the child sleeps after spinning: read while it is alive
                wait_until(lambda: len(benchfleet.cpu_by_process(process.pid)) == 2)
                wait_until(lambda: sum(benchfleet.thread_cpu(process.pid)["loop"]) >= 0.4, 30)
            time.sleep(0.05)
            after = benchfleet.thread_cpu(process.pid)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
    spent: dict[str, dict[str, float]] = boot.cpu_a_request(before, after, 1)
    return spent


def test_a_busy_thread_counts_as_user_time_of_the_other_threads_not_the_loop(
    boot: ModuleType,
) -> None:
    spent = _spent(boot, "thread")
    assert spent["other"]["user_us"] >= 0.35e6  # the spin is user time, not system time
    assert spent["other"]["system_us"] < 0.1e6
    assert spent["loop"]["user_us"] + spent["loop"]["system_us"] < 0.2e6


def test_a_child_process_main_thread_counts_as_a_loop(boot: ModuleType) -> None:
    spent = _spent(boot, "child")
    assert spent["loop"]["user_us"] >= 0.35e6  # nginx's worker is its master's child
    assert spent["other"]["user_us"] < 0.1e6


def test_cpu_a_request_divides_each_kind_of_thread_by_the_answers(boot: ModuleType) -> None:
    spent = boot.cpu_a_request(
        {"loop": (1.0, 2.0), "other": (0.5, 0.0)},
        {"loop": (1.5, 2.25), "other": (0.75, 0.05)},
        10_000,
    )
    assert spent["loop"] == pytest.approx({"user_us": 50.0, "system_us": 25.0})
    assert spent["other"] == pytest.approx({"user_us": 25.0, "system_us": 5.0})
    assert spent["all"] == pytest.approx({"user_us": 75.0, "system_us": 30.0})


def test_no_answers_is_an_error_not_a_figure(boot: ModuleType) -> None:
    reading = {"loop": (1.0, 1.0), "other": (1.0, 1.0)}
    with pytest.raises(SystemExit, match="no answers between the two readings"):
        boot.cpu_a_request(reading, reading, 0)


def _run(rps: float, loop: tuple[float, float], other: tuple[float, float]) -> dict[str, Any]:
    return {
        "rps": rps,
        "server_cpu": {
            "loop": {"user_us": loop[0], "system_us": loop[1]},
            "other": {"user_us": other[0], "system_us": other[1]},
            "all": {"user_us": loop[0] + other[0], "system_us": loop[1] + other[1]},
        },
    }


def test_the_budget_is_what_0_8x_nginx_rate_leaves_once_system_time_is_paid(
    boot: ModuleType,
) -> None:
    runs = {
        "nginx": {
            "keep-alive": [
                _run(40_000, (4.0, 20.0), (0.0, 0.0)),
                _run(50_000, (4.0, 16.0), (0.0, 0.0)),
            ],
            "close": [_run(20_000, (5.0, 35.0), (0.0, 0.0)), _run(20_000, (5.0, 35.0), (0, 0))],
        },
        "fleetkey": {
            "keep-alive": [
                _run(14_000, (35.0, 20.0), (12.0, 3.0)),
                _run(15_000, (33.0, 18.0), (12.0, 2.0)),
            ],
            "close": [_run(8_000, (50.0, 50.0), (16.0, 4.0)), _run(8_000, (50.0, 50.0), (16, 4))],
        },
    }
    lines = boot.cpu_lines(runs)
    text = "\n".join(lines)
    # round 1: 1 / (0.8 x 40,000 req/s) = 31.25 µs, less fleetkey's 23.0 of system time: 8.25;
    # round 2: 25.0 µs, less 20.0: 5.0. Less nginx's (20.0, 16.0): 11.25 and 9.0
    assert "keep-alive: 0.8x nginx's rate leaves fleetkey at most 28.1 µs a request" in text
    assert "of core 0; less its system time, 6.6 for user time (less nginx's, 10.1);" in text
    # fleetkey's user time of each round (47.0, 45.0) over what its system time left it
    assert "it spends 46.0, over by 39.4 (by round: 38.8 40.0)" in text
    # 1 / (0.8 x 20,000) = 62.5 µs; fleetkey's 54.0 of system time leaves 8.5, nginx's 35.0 27.5
    assert "of core 0; less its system time, 8.5 for user time (less nginx's, 27.5);" in text
    assert "event loop    user   34.0 + system  19.0" in text
    assert "other threads user   12.0 + system   2.5  (record writer, refreshes)" in text
    assert "nginx     keep-alive  user    4.0 + system  18.0 =   22.0" in text
    assert "it spends 66.0, over by 57.5 (by round: 57.5 57.5)" in text
    assert max(len(line) for line in lines) <= 80


def test_the_budget_of_many_rounds_stays_within_80_columns(boot: ModuleType) -> None:
    rounds = 12
    runs = {
        "nginx": {mode: [_run(40_000, (4.0, 20.0), (0, 0))] * rounds for mode in boot.MODES},
        "fleetkey": {
            mode: [_run(14_000, (35.0, 120.0), (12.0, 3.0))] * rounds for mode in boot.MODES
        },
    }
    lines = boot.cpu_lines(runs)
    assert max(len(line) for line in lines) <= 80
    # 47.0 µs of user time over 31.25 - 123.0: each round's, and the median, in both modes
    assert " ".join(lines).count("138.8") == 2 * (rounds + 1)

"""bench/requestpath.py: bad options refused before anything is built, and a small run measures
every step of the boot with the answers the boot expects."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "requestpath.py"


def run_bench(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "tmp"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(BENCH), "--tmp", str(work), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "TMPDIR": str(work)},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phones", "99"], "--phones must be from 100 to 16,777,215"),
        (["--phones", "16777216"], "--phones must be from 100 to 16,777,215"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--sites", "0"], "--sites must be from 1 to --phones"),
        (["--phones", "100", "--sites", "101"], "--sites must be from 1 to --phones"),
        (["--phones", "many"], "invalid int value: 'many'"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_builds_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_bench(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_missing_tmp_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--tmp", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"--tmp {tmp_path / 'nowhere'}: no such directory" in done.stderr


@pytest.mark.slow
def test_a_small_run_measures_each_step_of_the_boot_with_its_expected_answers_in_80_columns(
    tmp_path: Path,
) -> None:
    done = run_bench(
        tmp_path, "--phones", "200", "--sites", "3", "--rounds", "2", "--json", timeout=600
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["phones"], result["rounds"]) == (200, 2)
    answered = {(step["method"], step["path"]): step["status"] for step in result["steps"]}
    assert answered == {
        ("PUT", "/{mac}-boot.log"): "204",  # the first pass stored them: replaced now
        ("GET", "/{mac}.cfg"): "404",
        ("GET", "/000000000000.cfg"): "200",
        ("GET", "/2345-12500-001.sip.ld"): "404",
        ("GET", "/{mac}-phone.cfg"): "404",
        ("GET", "/{mac}-web.cfg"): "404",
        ("GET", "/000000000000-license.cfg"): "200",
        ("GET", "/{mac}-license.cfg"): "200/404",  # every tenth phone has a license
        ("GET", "/{mac}-directory.xml"): "404",
        ("GET", "/000000000000-directory.xml"): "200",
        ("PUT", "/{mac}-app.log"): "204",
    }
    for step in result["steps"]:
        assert 0 < step["floor_us"] < step["total_us"], step
        assert 0 < step["service_us"] < step["total_us"], step
        assert step["protocol_us"] == pytest.approx(step["total_us"] - step["service_us"])
    assert len(result["mean"]["rounds_total_us"]) == 2
    assert len(result["mean"]["rounds_interleaved_us"]) == 2
    mean = result["mean"]
    assert mean["interleaved_us"] > mean["framing_interleaved_us"] > mean["floor_us"] > 0
    assert result["mean"]["writer_interleaved_us"] > 0  # it wrote the records meanwhile
    assert result["connection_us"] > 0
    # every phone's two license answers waited for their record's commit, none went without
    licensed = 200 // 10
    # a first boot, then each of two rounds a step-by-step boot and an interleaved one
    assert result["commits_waited"] == 5 * (200 + licensed)
    assert result["sent_without_commit"] == 0
    assert list((tmp_path / "tmp").iterdir()) == []  # the fleet's folder is removed
    table = subprocess.run(  # the same figures as the terminal shows them
        [sys.executable, "-c", "import json, sys; from requestpath import report; "
         "report(json.load(sys.stdin))"],
        input=done.stdout, capture_output=True, text=True, check=True, timeout=60,
        cwd=BENCH.parent,
    )  # fmt: skip
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    assert any(line.split()[:2] == ["GET", "/000000000000-license.cfg"] for line in lines)
    assert any(line.strip().startswith("a request of the boot, mean") for line in lines)
    assert "not here: the event loop's own work, the kernel's sockets" in table.stdout
    assert "the record writer's thread meanwhile:" in table.stdout
    assert "framing with a service answering fixed statuses" in table.stdout


def _requestcost() -> ModuleType:
    """bench/requestcost.py, loaded by its path: bench/ on sys.path would shadow ``http``."""
    name = "fleetkey_bench_requestcost"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH.with_name("requestcost.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclass looks its module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # it appends bench/ to find bareprotocol.py: not for other tests
    return module


SEQUENCE = """\
# method  path                     stage        body bytes   answer expected
PUT       /{mac}-boot.log          Updater      2048         # 201 first, then 204
GET       /{mac}-license.cfg       Application  0            # 200 for 10 %, else 404
"""


def test_a_boot_is_sent_as_bootload_builds_it() -> None:
    cost = _requestcost()
    steps = cost.steps_of(SEQUENCE)
    assert [(s.method, s.path, s.stage, s.body_bytes, s.statuses) for s in steps] == [
        ("PUT", "/{mac}-boot.log", "Updater", 2048, frozenset({201, 204})),
        ("GET", "/{mac}-license.cfg", "Application", 0, frozenset({200, 404})),
    ]
    put, get = cost.requests_of(steps, 0)  # phone 0 tags its serial (bootload's hash: 0)
    assert put == (
        b"PUT /0004f2000000-boot.log HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"User-Agent: FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2000000) "
        b"Type/Updater\r\nAccept: */*\r\nContent-Type: text/plain\r\nContent-Length: 2048\r\n"
        b"\r\n" + b"x" * 2048
    )
    assert get == (
        b"GET /0004f2000000-license.cfg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"User-Agent: FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2000000) "
        b"Type/Application\r\nAccept: */*\r\n\r\n"
    )
    untagged = [phone for phone in range(20) if b"(SN:" not in cost.requests_of(steps, phone)[1]]
    assert untagged  # Polycom's default User-Agent: no serial
    agent = cost.requests_of(steps, untagged[0])[1].split(b"\r\n")[2]
    assert agent == b"User-Agent: FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"


def test_a_quarter_of_the_phones_tag_their_serial_each_from_an_address_of_its_own() -> None:
    cost = _requestcost()
    steps = cost.steps_of(SEQUENCE)
    phones = 20_000
    tagged = sum(b"(SN:" in cost.requests_of(steps, phone)[1] for phone in range(phones))
    assert 0.24 * phones < tagged < 0.26 * phones
    assert len({cost.address_of(phone) for phone in range(phones)}) == phones


def test_a_measured_boot_must_replace_its_logs_and_find_every_tenth_phones_license() -> None:
    cost = _requestcost()
    put, license_ = cost.steps_of(SEQUENCE)
    assert cost.expected(put, 3, measured=False) == {201, 204}  # the first boot stores them
    assert cost.expected(put, 3, measured=True) == {204}
    assert cost.expected(license_, 30, measured=True) == {200}
    assert cost.expected(license_, 31, measured=True) == {404}

"""Helpers for tests that run a real `fleetkey serve` (never a test module importing another one).

A data directory with its environment, a small fleet made through the CLI, a server started on
an ephemeral loopback port and stopped with SIGTERM, the CLI run as a process against it, and
the waiting and reading back those tests share. Fixtures built on these stay in the conftest
files (``tests/integration/serve/conftest.py``: ``server``).
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from fleetkey.cli import main
from fleetkey.emulate.addresses import phone_address
from fleetkey.store.schema import FetchRow
from fleetkey.store.texts import path_of

from tests.helpers import PASSPHRASE, wait_until

MAC = "0004f2a1b2c3"  # a VVX 500 at site 100000000001
SP_MAC = "0004a11a1a1a"  # a SoundPoint IP 550 that tags its serial
SITE = "100000000001"
# the two phones of make_fleet with their provisioning logins, for the FTP tests
FTP_PHONES = (
    "mac,site,model,firmware,user,password\n"
    f"{MAC},{SITE},VVX_500,5.9.7.4477,vvx500-a1b2c3,s3cret-vvx\n"
    f"{SP_MAC},{SITE},SPIP_550,,spip550-1a1a1a,s3cret-spip\n"
)
VVX_LOGIN = ("vvx500-a1b2c3", "s3cret-vvx")  # MAC's login
SPIP_LOGIN = ("spip550-1a1a1a", "s3cret-spip")  # SP_MAC's login
SHARED_LOGIN = ("PlcmSpIp", "PlcmSpIp")  # Polycom's factory login


def fleetkey_command() -> list[str]:
    return [sys.executable, "-m", "fleetkey"]


def run_fleetkey(
    env: dict[str, str], *args: str, code: int = 0, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``fleetkey ARGS`` as a process in ``env``; it must exit ``code``."""
    done = subprocess.run(
        [*fleetkey_command(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == code, (
        f"fleetkey {' '.join(args)} exited {done.returncode}, expected {code}\n{done.stderr}"
    )
    return done


def fleetkey_in_process(env: dict[str, str], *args: str, code: int = 0) -> Result:
    """``fleetkey ARGS`` run in this process, seeing the environment a process started with
    ``env`` would see; for building a fleet and reading it back, where a process per command
    cost an interpreter and fleetkey's imports each (~0.6 s of CPU). It must exit ``code``;
    its ``stdout`` and ``stderr`` are kept apart, as ``run_fleetkey``'s are."""
    changes: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
    changes.update({k: None for k in os.environ if k not in env})
    result = CliRunner().invoke(main.cli, list(args), env=changes, catch_exceptions=False)
    assert result.exit_code == code, (
        f"fleetkey {' '.join(args)} exited {result.exit_code}, expected {code}\n{result.stderr}"
    )
    return result


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """What ``fleetkey ARGS`` printed; it must succeed."""
    return run_fleetkey(env, *args, timeout=timeout).stdout


@dataclass
class RunningServer:
    url: str
    port: int
    data: Path
    process: subprocess.Popen[str]
    env: dict[str, str]

    def stop(self) -> str:
        """SIGTERM, wait, return what it printed after starting."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err
        return out

    def cli(self, *args: str) -> str:
        return cli(self.env, *args, timeout=60)


def server_env(data: Path) -> dict[str, str]:
    """The environment of a `fleetkey` process using the data directory ``data``."""
    env = {**os.environ, "FLEETKEY_DATA": str(data), "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE}
    env.pop("FLEETKEY_DB", None)
    return env


def fleet_env(tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[Path, dict[str, str]]:
    """A fresh data directory (not yet initialized) under a temporary ``name``, and its env."""
    data = tmp_path_factory.mktemp(name) / "data"
    return data, server_env(data)


_FLEETS: dict[str | None, Path] = {}  # each phone list's fleet, built once per session
_INITIALIZED: list[Path] = []  # a data directory after `fleetkey init`, made once per session


def init_data(data: Path, env: dict[str, str]) -> None:
    """``data`` as `fleetkey init` leaves it: a copy (modes kept) of one initialized once per
    session when the store is the data directory's own (``env`` as ``server_env`` makes it),
    else `fleetkey init` run in this process (another database: its tables are made there)."""
    if env != server_env(data) or data.exists():
        fleetkey_in_process(env, "init")
        return
    if not _INITIALIZED:
        template = Path(tempfile.mkdtemp(prefix="fleetkey-init-")) / "data"
        atexit.register(shutil.rmtree, template.parent, ignore_errors=True)
        fleetkey_in_process(server_env(template), "init")
        _INITIALIZED.append(template)
    shutil.copytree(_INITIALIZED[0], data, symlinks=True)


def make_fleet(data: Path, env: dict[str, str], phones_csv: str | None = None) -> None:
    """Site 100000000001 with MAC and SP_MAC (or ``phones_csv``), its site license, MAC's
    phone license, a master configuration and a 20 MiB firmware file in the tree.

    A fleet in its data directory alone (SQLite, ``env`` as ``server_env`` makes it) is built
    once per session for each phone list and copied (modes kept): its five commands and three
    scrypts of 128 MiB are paid once, not by each of the ~40 modules and tests that make one.
    Each copy is the test's own; a fleet in another database is built each time."""
    if env != server_env(data) or data.exists():
        build_fleet(data, env, phones_csv)
        return
    if phones_csv not in _FLEETS:
        template = Path(tempfile.mkdtemp(prefix="fleetkey-fleet-")) / "data"
        atexit.register(shutil.rmtree, template.parent, ignore_errors=True)
        build_fleet(template, server_env(template), phones_csv)
        _FLEETS[phones_csv] = template
    shutil.copytree(_FLEETS[phones_csv], data, symlinks=True)
    shutil.copy(_FLEETS[phones_csv].parent / "phones.csv", data.parent / "phones.csv")


def build_fleet(data: Path, env: dict[str, str], phones_csv: str | None = None) -> None:
    """The fleet of ``make_fleet``, made through the CLI in ``data``."""

    def run(*args: str) -> None:
        fleetkey_in_process(env, *args)

    init_data(data, env)
    run("sites", "add", SITE, "--name", "HQ", "--tz", "Europe/Berlin", "--window", "22:00-05:00")
    csv = data.parent / "phones.csv"
    csv.write_text(
        phones_csv or f"mac,site,model\n{MAC},{SITE},VVX_500\n{SP_MAC},{SITE},SPIP_550\n"
    )
    run("phones", "import", str(csv))
    run(
        "issue",
        "site",
        "--serial",
        SITE,
        "--features",
        "corporate-directory",
        "--expires",
        "2030-12-31",
        "--default-site",  # also the tree's default, for phones the server cannot place
    )
    run("issue", "phone", "--mac", MAC, "--features", "vqmon", "--expires", "never")
    tree = data / "provisioning"
    (tree / "000000000000.cfg").write_text("<APPLICATION APP_FILE_PATH='sip.ld'/>\n")
    (tree / "2345-12500-001.sip.ld").write_bytes(os.urandom(20 * 1024 * 1024))
    (tree / f"{MAC}-directory.xml").write_text("<directory/>\n")


def start_server(
    data: Path, env: dict[str, str], *args: str, files: int | None = None
) -> RunningServer:
    """`fleetkey serve` with ``args``, HTTP on an ephemeral loopback port unless ``args`` name
    ``--http`` (serve's own default, 8080, would collide with whatever else holds it: another
    test run, a CI neighbour); the URL is the first listener it announces. ``files``: its limit
    of open files."""

    def limit_files() -> None:  # pragma: no cover  # runs in the child
        if files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    process = subprocess.Popen(
        [*fleetkey_command(), "serve", *ephemeral_http(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_files if files is not None else None,  # only setrlimit, before exec
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("fleetkey serving "):
        process.kill()
        raise AssertionError(f"serve did not start: {first!r} {process.communicate()[1]}")
    url = first.split()[2]
    return RunningServer(url, int(url.rsplit(":", 1)[1]), data, process, env)


def ephemeral_http(args: tuple[str, ...]) -> tuple[str, ...]:
    """``args`` for `fleetkey serve`, with ``--http 127.0.0.1:0`` first unless they name
    ``--http`` themselves: no test server on a fixed port."""
    if "--http" in args or any(a.startswith("--http=") for a in args):
        return args
    return ("--http", "127.0.0.1:0", *args)


def wait_for(check: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``check`` every 0.2 s until it is truthy; fail after ``timeout`` seconds (30 by
    default: a check that runs the CLI as a process takes seconds on a loaded 2-core box)."""
    wait_until(check, timeout, every_s=0.2)


def records(server: RunningServer, mac: str) -> list[dict[str, object]]:
    """The server's fetch records for ``mac``, as `fleetkey fetches --json` prints them."""
    found: list[dict[str, object]] = json.loads(server.cli("fetches", "--mac", mac, "--json"))
    return found


def recorded(
    server: RunningServer, mac: str, method: str, path: str, status: int
) -> dict[str, object]:
    """``mac``'s fetch record of ``method path`` answered ``status``, once the server has written
    it (records are written shortly after the answer)."""

    def found() -> list[dict[str, object]]:
        return [
            r
            for r in records(server, mac)
            if (r["method"], r["path"], r["status"]) == (method, path, status)
        ]

    wait_for(found)
    return found()[0]


def window_around_now() -> str:
    """A maintenance window open from an hour ago to six hours on (UTC)."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=6)
    return f"{start:%H}:00-{end:%H}:00"


@dataclass
class FtpServer:
    """A `fleetkey serve` with HTTP (for /metrics) and FTP, and the FTP port."""

    running: RunningServer
    port: int

    @property
    def data(self) -> Path:
        return self.running.data


def start_ftp(data: Path, env: dict[str, str], *args: str) -> FtpServer:
    """`fleetkey serve --http 127.0.0.1:0 --ftp 127.0.0.1:0 ARGS`; the second line it prints
    names the FTP listener."""
    running = start_server(data, env, "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0", *args)
    assert running.process.stdout is not None
    line = running.process.stdout.readline()
    if not line.startswith("fleetkey serving ftp://"):
        running.process.kill()
        raise AssertionError(f"no FTP listener: {line!r} {running.process.communicate()[1]}")
    return FtpServer(running, int(line.split()[2].rsplit(":", 1)[1]))


def import_sip_phones(
    env: dict[str, str], work: Path, macs: list[str], sites: tuple[str, ...], sip_port: int
) -> None:
    """Import ``macs`` (VVX 500s) spread over ``sites`` in turn, each with a SIP contact on
    its emulated address (``emulate.addresses``) and ``sip_port``, every other one over TCP;
    ``work/macs.txt`` lists them for ``fleetkey emulate --macs``."""
    rows = [
        f"{mac},{sites[i % len(sites)]},VVX_500,sip:{mac}@{phone_address(mac)}:{sip_port}"
        + (";transport=tcp" if i % 2 else "")
        for i, mac in enumerate(macs)
    ]
    (work / "phones.csv").write_text("mac,site,model,contact\n" + "\n".join(rows) + "\n")
    fleetkey_in_process(env, "phones", "import", str(work / "phones.csv"))
    (work / "macs.txt").write_text("\n".join(macs) + "\n")


# the phones that were answered a site license (one row per phone): every phone has booted once
SITE_LICENSED = (
    select(func.count(func.distinct(FetchRow.mac)))
    .join(path_of, path_of.id == FetchRow.path_id)
    .where(path_of.text.like("%000000000000-license.cfg"), FetchRow.status == 200)
)
# the phones whose boot has ended (one row per phone): its last request is the app log. A
# check-sync between a phone's license file and that is absorbed by the boot under way (R9)
BOOTED = (
    select(func.count(func.distinct(FetchRow.mac)))
    .join(path_of, path_of.id == FetchRow.path_id)
    .where(path_of.text.like("%-app.log"))
)


class Control:
    """A raw FTP control connection: one line out, the whole reply back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")
        try:
            self.banner = self.reply()
        except BaseException:  # no banner (reset, timeout): nothing left open for the GC to
            self.close()  # warn about in some later test (filterwarnings = error)
            raise

    def send(self, line: bytes | str) -> str:
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        self.sock.sendall(raw + b"\r\n")
        return self.reply()

    def reply(self) -> str:
        first = self.file.readline().decode().rstrip("\r\n")
        line = first
        while len(line) < 4 or not (line[:3] == first[:3] and line[3] == " "):
            line = self.file.readline().decode().rstrip("\r\n")
            if not line:
                break
        return line

    def login(self, user: str = VVX_LOGIN[0], password: str = VVX_LOGIN[1]) -> None:
        assert self.send(f"USER {user}").startswith("331")
        assert self.send(f"PASS {password}") == "230 Logged in."

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def sigkill(server: RunningServer | FtpServer) -> None:
    """SIGKILL: the server writes nothing after this."""
    running = server.running if isinstance(server, FtpServer) else server
    running.process.kill()
    running.process.communicate(timeout=30)


S = TypeVar("S", RunningServer, FtpServer)  # a server killed after answering


def killed_after_answer(
    start: Callable[[], S],
    answer: Callable[[S], bytes],
    records: Callable[[], list[dict[str, object]]],
    rounds: int = 2,
) -> None:
    """Rounds of: a server started, a license file read whole from it (``answer``: its bytes),
    the server SIGKILLed at once. After each, ``records`` (that file's records of an answer
    sent) has one more, of the bytes read, with their digest: the record was committed before
    the answer was sent (serve/commits.py, serve/ftp/confirming.py)."""
    before = len(records())
    for n in range(before + 1, before + rounds + 1):
        server = start()
        try:
            body = answer(server)
        finally:
            sigkill(server)
        found = records()
        assert len(found) == n, f"round {n}: {len(found)} records of {n} answers"
        assert found[-1]["bytes"] == len(body) > 0
        assert found[-1]["digest"]

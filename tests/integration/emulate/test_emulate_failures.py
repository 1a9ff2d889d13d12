"""`fleetkey emulate` that cannot run, or whose phones cannot boot: one clear line, exit 1 (or 2
for usage), and nothing started or written."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fleetkey.emulate.addresses import generated_mac
from fleetkey.testing import signing_key_for

from tests.serving import (
    SITE,
    fleet_env,
    fleetkey_command,
    make_fleet,
    run_fleetkey,
    server_env,
    start_server,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data directory with the inventory of make_fleet (two phones at SITE)."""
    data, env = fleet_env(tmp_path_factory, "emulate-failures")
    make_fleet(data, env)
    return env


class _Refusing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._refuse()

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._refuse()

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # the base's name
        pass


class _Challenging(_Refusing):
    """401 with a Digest challenge to everything: logins wanted, none accepted."""

    def _refuse(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Digest realm="fleetkey", nonce="n1", qop="auth"')
        self.send_header("Content-Length", "0")
        self.end_headers()


class _LockingOut(_Challenging):
    """A Digest challenge to a request without a login, 403 to one with a login (a server
    that locked the phone out after wrong passwords)."""

    def _refuse(self) -> None:
        if "Authorization" in self.headers:
            _Refusing._refuse(self)
        else:
            super()._refuse()


class _Empty(_Refusing):
    """A server with nothing to serve: 404 to every file, 204 to every log."""

    def _refuse(self) -> None:
        self.send_response(204 if self.command == "PUT" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refusing() -> Iterator[str]:
    """An HTTP server that answers 403 to everything."""
    yield from _serving(_Refusing)


@pytest.fixture
def challenging() -> Iterator[str]:
    yield from _serving(_Challenging)


@pytest.fixture
def locking_out() -> Iterator[str]:
    yield from _serving(_LockingOut)


def emulate(env: dict[str, str], *args: str, code: int) -> subprocess.CompletedProcess[str]:
    return run_fleetkey(env, "emulate", "--sip-port", "0", "--duration", "20", *args, code=code)


@pytest.mark.parametrize(
    ("server", "line"),
    [
        ("http://127.0.0.1:1", "error: nothing listens at http://127.0.0.1:1 (connection refused)"),
        ("tftp://127.0.0.1:1", "error: nothing listens at tftp://127.0.0.1:1 (port unreachable)"),
    ],
)
def test_nothing_listening_exits_1_with_one_line(
    env: dict[str, str], server: str, line: str
) -> None:
    done = emulate(env, "--server", server, "--phones", "3", code=1)
    assert done.stderr.splitlines() == [line]
    assert done.stdout == ""


def test_every_phone_failing_exits_1_saying_why_after_the_summary(
    env: dict[str, str], refusing: str
) -> None:
    done = emulate(env, "--server", refusing, "--phones", "3", "--until-booted", "--json", code=1)
    summary = json.loads(done.stdout)
    assert (summary["phones"], summary["phones_failed"]) == (3, 3)
    assert summary["answers_by_status"] == {"403": 3 * 10}  # the fallback boot: 10 each
    assert summary["booted"] == 0  # the table said 3 "booted"
    assert done.stderr.splitlines() == [
        "error: all 3 phones failed: every answer was 403",
        "hint: the server refuses these phones: are they in its inventory (serve --unknown "
        "serve answers phones it does not know)?",
    ]


def test_logins_refused_after_a_challenge_are_named_as_refused_logins(
    env: dict[str, str], locking_out: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A 401 challenge then a 403 to the login (the challenge is not counted as an answer):
    the hint asked whether the server was running (an administrator's trial)."""
    credentials = tmp_path_factory.mktemp("wrong") / "credentials.csv"
    credentials.write_text("".join(f"{generated_mac(i)},u{i},wrong\n" for i in range(3)))
    done = emulate(env, "--server", locking_out, "--phones", "3", "--until-booted",
                   "--credentials", str(credentials), code=1)  # fmt: skip
    assert done.stderr.splitlines() == [
        "error: all 3 phones failed: every answer was 403",
        f"hint: the server refused the logins of {credentials}: are they the inventory's?",
    ]


def test_a_server_asking_for_logins_is_named_with_the_option_that_gives_them(
    env: dict[str, str], challenging: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    done = emulate(env, "--server", challenging, "--phones", "3", "--until-booted", "--json",
                   code=1)  # fmt: skip
    assert done.stderr.splitlines() == [
        "error: all 3 phones failed: every answer was 401",
        "hint: the server asks the phones to log in: give --credentials FILE (mac,user,password)",
    ]
    assert json.loads(done.stdout)["answers_by_status"] == {"401": 3 * 10}
    credentials = tmp_path_factory.mktemp("logins") / "credentials.csv"
    credentials.write_text("".join(f"{generated_mac(i)},u{i},p{i}\n" for i in range(3)))
    done = emulate(env, "--server", challenging, "--phones", "3", "--until-booted", "--json",
                   "--credentials", str(credentials), code=1)  # fmt: skip
    # each request answered 401 twice: the challenge, then the refused login (only the
    # second was counted)
    assert json.loads(done.stdout)["answers_by_status"] == {"401": 2 * 3 * 10}
    assert done.stderr.splitlines()[1] == (
        f"hint: the server refused the logins of {credentials}: are they the inventory's?"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--models", "VVX_500:60%"], 1, "the shares add up to 60 %, expected 100 %"),
        (["--models", "VVX_500"], 1, "'VVX_500' is not MODEL:PERCENT%"),
        (["--models", "--:100%"], 1, "'--' is not a model name"),
        (["--from-inventory", "--models", "VVX_500:100%"], 2, "--from-inventory takes"),
        (["--from-inventory", "--phones", "5"], 1, "the inventory has 2 phones, --phones asks"),
        (["--from-inventory", "--site", "nowhere"], 1, "nowhere"),
        (["--site", SITE], 1, "--site picks phones of the inventory"),
        (["--phones", "0"], 2, "--phones"),
        (["--phones", "60001"], 2, "--phones"),
    ],
)
def test_bad_phone_choices_are_refused_before_any_phone_starts(
    env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    done = emulate(env, "--server", "http://127.0.0.1:1", *args, code=code)
    assert message in done.stderr
    assert "nothing listens" not in done.stderr  # refused before reaching for the server


def test_an_empty_inventory_is_refused(initialized: Path) -> None:
    env = server_env(initialized)  # a copy of the session's `fleetkey init`
    done = emulate(env, "--server", "http://127.0.0.1:1", "--from-inventory", code=1)
    assert done.stderr.splitlines()[0] == "error: the inventory has no phones"


def test_too_low_an_open_file_limit_names_it_and_how_many_phones_fit(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    pem = tmp_path_factory.mktemp("trust") / "trusted.pem"
    pem.write_bytes(signing_key_for().public.to_pem())

    def limit() -> None:  # pragma: no cover  # runs in the child
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    done = subprocess.run(
        [*fleetkey_command(), "emulate", "--server", "http://127.0.0.1:1", "--phones", "2000",
         "--trust", str(pem)],
        env=env, capture_output=True, text=True, timeout=120, check=False, preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[0] == (
        "error: 2,000 phones need about 2,320 open files (a SIP socket each, 256 boots in "
        "progress and 64 more), but the open-file limit is 1,024: 704 phones fit"
    )
    assert "ulimit" in done.stderr  # the hint: how to raise it


def test_a_bad_credentials_file_names_every_bad_line(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    credentials = tmp_path_factory.mktemp("creds") / "credentials.csv"
    credentials.write_text(
        "mac,user,password\nnot-a-mac,u,p\n0004f2100000,u\n0004f2100000,u,p\n0004f2100000,u,q\n"
    )
    done = emulate(env, "--server", "http://127.0.0.1:1", "--credentials", str(credentials), code=1)
    line = done.stderr.splitlines()[0]
    assert line.startswith(f"error: --credentials {credentials}: line 2: ")
    assert "; line 3: expected mac,user,password; line 5: 0004f2100000 is given twice" in line
    assert "nothing listens" not in done.stderr


def test_a_tftp_port_that_never_answers_exits_1_saying_so(env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answering
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        done = emulate(env, "--server", f"tftp://127.0.0.1:{port}", "--phones", "2", code=1)
    assert done.stderr.splitlines() == [
        f"error: tftp://127.0.0.1:{port} does not answer: nothing came back in 3 s"
    ]


def test_a_macs_file_without_phones_boots_every_mac_of_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`--macs FILE` alone boots the file's phones (it booted 10 of 1,000 without a word)."""
    data, env = fleet_env(tmp_path_factory, "macs-count")
    make_fleet(data, env)
    macs = data.parent / "macs.txt"
    macs.write_text("".join(f"0004f2{0x500000 + i:06x}\n" for i in range(12)))
    server = start_server(data, env)
    try:
        done = run_fleetkey(
            env, "emulate", "--server", server.url, "--macs", str(macs), "--until-booted",
            "--duration", "60", "--sip-port", "0", "--json",
        )  # fmt: skip
    finally:
        server.stop()
    assert json.loads(done.stdout)["booted"] == 12


def test_an_empty_macs_file_is_refused(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    macs = tmp_path_factory.mktemp("empty") / "macs.txt"
    macs.write_text("mac\n# none yet\n")
    done = run_fleetkey(
        env, "emulate", "--server", "http://127.0.0.1:1", "--macs", str(macs), "--sip-port", "0",
        code=1,
    )  # fmt: skip
    assert f"error: {macs} has no MACs: one per line, or mac,user,password" in done.stderr


def test_a_fleet_booted_without_any_site_license_is_warned_about(env: dict[str, str]) -> None:
    """Phones that booted but were served no license: the run looked like a success (exit 0,
    "booted 3") though no phone could use a licensed feature (an administrator's trial)."""
    for server in _serving(_Empty):
        done = emulate(env, "--server", server, "--phones", "3", "--until-booted", code=0)
        printed = " ".join(done.stdout.split())
        assert "│ booted │ 3 (failed: 0) │" in printed
        assert "warning: no phone holds a site license" in printed

"""Helpers shared by test modules (never a test module importing another one).

Fixtures stay in the conftest files; what several test modules call directly lives here: the
in-process CLI runner, a small site fleet built through the CLI, the admin API called in
process, free ports, a local webhook receiver, a Kamailio SIP peer for the check-sync client
and the rollout executor, and bench/'s scripts loaded as modules. Helpers for a real
`fleetkey serve` are in ``tests/serving.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import itertools
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from fleetkey.authority.datadir import DataDir
from fleetkey.cli.main import cli
from fleetkey.core.sip import Contact
from fleetkey.store.store import Store

INTEROP = Path(__file__).resolve().parents[1].parent / "shared" / "interop"
VENDOR_FILE = INTEROP / "vendor-site-license.cfg"
PASSPHRASE = "correct horse battery staple"  # noqa: S105  # the tests' own throwaway passphrase
SITE_SERIAL = "100000000001"


class Fleetkey:
    """Runs ``fleetkey`` commands in-process; stdout and stderr kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Result:
        result = self.runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == code, (
            f"fleetkey {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result


def runnable_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command a user can run: commands, and groups that run by themselves
    (``fetches``, ``alerts``); lazily loaded commands (cli/lazy.py) are loaded on the way."""
    found: list[tuple[str, ...]] = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, f"{' '.join((*prefix, name))} is listed but does not load"
        path = (*prefix, name)
        if not isinstance(command, click.Group) or command.invoke_without_command:
            found.append(path)
        if isinstance(command, click.Group):
            found.extend(runnable_commands(command, path))
    return found


def command_at(group: click.Group, path: tuple[str, ...]) -> click.Command:
    """The command at ``path`` (loaded if it loads lazily)."""
    command: click.Command = group
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"no command {' '.join(path)}"
        command = found
    return command


Build = Callable[[Fleetkey, Path], None]  # CLI commands making a fleet (conftest: built_once)


def add_site_fleet(
    fleetkey: Fleetkey,
    data: Path,
    *,
    phones: int,
    tz: str = "Europe/Berlin",
    window: str = "22:00-05:00",
) -> None:
    """Through the CLI: site 100000000001 and ``phones`` VVX 500s (MACs 0004f2000000, …)."""
    fleetkey("sites", "add", SITE_SERIAL, "--name", "HQ", "--tz", tz, "--window", window)
    csv = data.parent / "phones.csv"
    rows = "".join(f"0004f2{i:06x},{SITE_SERIAL},VVX_500\n" for i in range(phones))
    csv.write_text("mac,site,model\n" + rows)
    fleetkey("phones", "import", str(csv))


def issue_site_license(fleetkey: Fleetkey, expires: date) -> None:
    """Through the CLI: a corporate-directory site license for 100000000001, posted."""
    fleetkey(
        "issue",
        "site",
        "--serial",
        SITE_SERIAL,
        "--features",
        "corporate-directory",
        "--expires",
        expires.isoformat(),
    )


@dataclass
class Api:
    """The admin API app in process, called through ``httpx.ASGITransport`` with its token."""

    app: FastAPI
    token: str
    store: Store
    data: DataDir

    def ask(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``method path`` with the bearer token (another ``token``, or None for none)."""
        bearer = self.token if token == "" else token
        headers = dict(headers or {})
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fleetkey") as c:
                return await c.request(method, path, headers=headers, **kwargs)

        return asyncio.run(send())


def fleetkey_executable() -> list[str]:
    """The installed ``fleetkey`` console script (``python -m fleetkey`` when there is none)."""
    script = shutil.which("fleetkey", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "fleetkey"]


def bench_module(name: str, registry: pytest.MonkeyPatch | None = None) -> ModuleType:
    """``bench/<name>.py`` loaded as a module (bench/ is scripts, not a package), for the tests
    that check what a benchmark builds is what fleetkey would have. With ``registry`` it is
    put in ``sys.modules`` under its own name first (its dataclasses look their module up
    there, and another bench module's ``from <name> import …`` finds it), until ``registry``
    is undone."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name if registry else f"bench_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if registry is not None:
        registry.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def wait_until(check: Callable[[], object], timeout_s: float = 20.0, every_s: float = 0.05) -> None:
    """Poll ``check`` until it is truthy; fail after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(every_s)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port")


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1 (a real HTTP server on a thread): answers each POST with
    the next status queued in ``answers`` (200 when none is), and keeps what came in
    ``received`` as (headers with lowercase names, body, status answered)."""

    def __init__(self, path: str = "/hooks/fleetkey") -> None:
        self.answers: list[int] = []
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append((headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_udp_port(host: str = "127.10.1.1") -> int:
    """A UDP port free on ``host`` (by default the first emulated phone's address) whose TCP
    port is free on every address too (the emulator's SIP TCP listener takes the wildcard)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("0.0.0.0", port))  # noqa: S104  # only to see that it is free
            except OSError:
                continue
        return port


def sip_exchange(address: str, port: int, message: str, timeout: float = 1.0) -> str | None:
    """Send one SIP message over UDP; the answer, or None when none came in ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message.encode(), (address, port))
        try:
            return sock.recvfrom(9000)[0].decode()
        except TimeoutError:
            return None


_SIP_REQUESTS = itertools.count(1)


def sip_request(
    method: str, port: int, *, event: str = "check-sync", drop: str = "", to: str = "127.10.1.1"
) -> str:
    """A SIP request to an emulated phone, a new transaction each call (its own branch and
    Call-ID: the same bytes again are a retransmission, answered but not acted on twice);
    ``drop`` leaves one header out."""
    unique = next(_SIP_REQUESTS)
    headers = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-test{unique}",
        "From": "<sip:fleetkey@127.0.0.1>;tag=t1",
        "To": f"<sip:phone@{to}:{port}>",
        "Call-ID": f"c{unique}@127.0.0.1",
        "CSeq": f"1 {method}",
        "Event": event,
        "Content-Length": "0",
    }
    lines = [f"{method} sip:phone@{to}:{port} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name != drop]
    return "\r\n".join([*lines, "", ""])


KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadpath "{modules}"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "textops.so"
request_route {{
    if (is_method("NOTIFY")) {{
        if ({challenge} && !pv_www_authenticate("PolycomSPIP", "secret", "0")) {{
            xlog("L_NOTICE", "PEER challenge proto=$pr callid=$ci cseq=$cs\\n");
            www_challenge("PolycomSPIP", "0");
            exit;
        }}
        xlog("L_NOTICE", "PEER notify proto=$pr event=[$hdr(Event)] callid=$ci cseq=$cs "
                         "user=[$au] ruri=$ru\\n");
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


@dataclass
class Peer:
    port: int
    log: Path
    challenging: bool

    def contact(self, transport: str = "udp") -> Contact:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return Contact.parse(f"sip:0004f2000001@127.0.0.1:{self.port}{suffix}")

    def lines(self, kind: str) -> list[dict[str, str]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f"PEER {kind} " in line:
                tail = line.split(f"PEER {kind} ", 1)[1]
                found.append(dict(re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", tail)))
        return found


def start_kamailio(directory: Path, challenge: bool) -> tuple[Peer, subprocess.Popen[bytes]]:
    port = free_port()
    config = directory / "kamailio.cfg"
    config.write_text(
        CONFIG.format(port=port, modules=MODULES, challenge="1" if challenge else "0")
    )
    log = directory / "kamailio.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [KAMAILIO, "-f", str(config), "-DD", "-E", "-Y", str(directory),
             "-P", str(directory / "kamailio.pid"), "-w", str(directory)],
            stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return Peer(port, log, challenge), process
        if process.poll() is not None:
            raise AssertionError(f"kamailio exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("kamailio did not start listening")


def self_signed(folder: Path, address: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``address`` and its key (PEM files in ``folder``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file

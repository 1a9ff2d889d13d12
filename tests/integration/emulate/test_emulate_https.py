"""`fleetkey emulate --server https://… --cacert FILE`: phones boot over HTTPS from `fleetkey
serve --https` with a self-signed certificate they are told to trust, and the server records
their fetches as `https`. A certificate they do not trust, a server without TLS, a --cacert
that is no certificate or that goes with another scheme: one clear line, exit 1 (2 for a
file that is not there), and no phone booted."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import self_signed
from tests.serving import (
    RunningServer,
    fleet_env,
    make_fleet,
    run_fleetkey,
    start_server,
    wait_for,
)

PHONES = 12


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """`fleetkey serve` over HTTPS only, and its self-signed certificate."""
    data, env = fleet_env(tmp_path_factory, "emulate-https")
    make_fleet(data, env)
    cert, key = self_signed(data.parent)
    running = start_server(data, env, "--https", "127.0.0.1:0", "--cert", str(cert),
                           "--key", str(key), "--http", "off")  # fmt: skip
    yield running, cert
    running.stop()


def every_record(server: RunningServer) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(server.cli("fetches", "--json", "--limit", "0"))
    return found


def emulate(server: RunningServer, url: str, *args: str, code: int = 0) -> str:
    done = run_fleetkey(server.env, "emulate", "--server", url, "--phones", str(PHONES),
                        "--until-booted", "--duration", "60", "--sip-port", "0", "--json", *args,
                        code=code)  # fmt: skip
    return done.stdout if code == 0 else done.stderr


def test_phones_boot_over_https_trusting_the_servers_certificate(
    https: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    server, cert = https
    report = tmp_path / "report.json"
    summary = json.loads(
        emulate(server, server.url, "--cacert", str(cert), "--report", str(report))
    )
    assert (summary["booted"], summary["phones_with_errors"]) == (PHONES, 0), summary
    assert summary["protocol"] == "https"
    assert {answer.split()[0] for answer in summary["answers"]} <= {"GET", "PUT"}
    phones = json.loads(report.read_text())["phones"]
    assert all(p["fetches"] for p in phones)
    asked = sum(len(p["fetches"]) for p in phones)
    # only a license file's answer waits for its record's commit: the others are written
    # just after the phone has its answer
    wait_for(lambda: len(every_record(server)) >= asked)
    protocols = Counter(r["protocol"] for r in every_record(server))
    assert set(protocols) == {"https"}, protocols
    assert protocols["https"] >= asked


def test_a_certificate_the_phones_do_not_trust_is_said_with_what_to_do(
    https: tuple[RunningServer, Path],
) -> None:
    server, _ = https
    before = len(every_record(server))
    err = emulate(server, server.url, code=1)
    assert "error: " + server.url in err
    assert "the phones do not trust its certificate (self-signed certificate)" in err
    assert "hint: give its certificate (or its CA's) with --cacert FILE.pem" in err
    assert len(every_record(server)) == before


@pytest.mark.parametrize(
    ("where", "make", "said", "code"),
    [
        ("no-tls", None, "speaks no TLS the phones accept", 1),
        ("not-pem", "garbage", "--cacert", 1),
        ("empty", "", "--cacert", 1),
        ("http-scheme", "cert", "--cacert goes with an https:// --server, not http://", 1),
        ("missing", "missing", "does not exist", 2),
    ],
)
def test_what_the_phones_cannot_trust_or_reach_is_refused_clearly(
    https: tuple[RunningServer, Path],
    tmp_path: Path,
    where: str,
    make: str | None,
    said: str,
    code: int,
) -> None:
    server, cert = https
    url = server.url
    args: list[str] = []
    if where == "no-tls":  # a plain HTTP server where HTTPS was said
        plain = start_server(server.data, server.env)
        try:
            url = plain.url.replace("http://", "https://")
            err = emulate(plain, url, "--cacert", str(cert), code=code)
        finally:
            plain.stop()
        assert said in err
        return
    if make == "cert":
        url, args = url.replace("https://", "http://"), ["--cacert", str(cert)]
    elif make == "missing":
        args = ["--cacert", str(tmp_path / "missing.pem")]
    elif make is not None:
        (tmp_path / "ca.pem").write_text(make)
        args = ["--cacert", str(tmp_path / "ca.pem")]
    err = emulate(server, url, *args, code=code)
    assert said in err, err
    if code == 1:
        assert err.startswith("error: "), err
        if make in ("garbage", ""):
            assert "no PEM certificate in it" in err
            assert "hint: give the server's" in err

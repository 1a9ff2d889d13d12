"""FTP on IPv6 (::1) under `serve --workers 2`: the kernel's hash spreads its connections (the
steering program reads IPv4 source addresses only, serve/steering.py), which the server says
at start; sessions work, EPSV only (PASV names IPv4 addresses), every file recorded."""

from __future__ import annotations

import ftplib
import hashlib
import json
import signal
import socket

import pytest

from tests.serving import (
    FTP_PHONES,
    MAC,
    VVX_LOGIN,
    fleet_env,
    make_fleet,
    start_ftp,
    wait_for,
)

FIRMWARE = "2345-12500-001.sip.ld"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")
def test_ftp_over_ipv6_with_workers_is_spread_by_the_kernel_and_serves(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "ftp-ipv6")
    make_fleet(data, env, FTP_PHONES)
    server = start_ftp(data, env, "--workers", "2", "--ftp", "[::1]:0")
    running = server.running
    try:
        for _ in range(3):  # sessions from one address, whichever worker the kernel picks
            with ftplib.FTP(timeout=30) as client:  # noqa: S321  # FTP is what is under test
                client.connect("::1", server.port)
                client.login(*VVX_LOGIN)
                assert client.sendcmd("TYPE I").startswith("200")
                with pytest.raises(ftplib.error_perm, match=r"^501 PASV names IPv4 addresses"):
                    client.sendcmd("PASV")
                digest = hashlib.sha256()
                client.retrbinary(f"RETR {FIRMWARE}", digest.update)  # EPSV: ftplib on IPv6
        assert (
            digest.hexdigest()
            == hashlib.sha256((data / "provisioning" / FIRMWARE).read_bytes()).hexdigest()
        )

        def recorded() -> list[dict[str, object]]:
            every = json.loads(running.cli("fetches", "--mac", MAC, "--json"))
            return [r for r in every if r["path"] == f"/{FIRMWARE}" and r["status"] == 200]

        wait_for(lambda: len(recorded()) == 3, timeout=30)
        assert {r["remote_addr"] for r in recorded()} == {"::1"}
    finally:
        running.process.send_signal(signal.SIGTERM)
        _, err = running.process.communicate(timeout=60)
    assert running.process.returncode == 0, err
    assert "FTP: requests are spread by the kernel's hash" in err

"""What the FTP server refuses, and how it says so: failed logins recorded under the phone
whose login it was, 421 at admission counted exactly and said once, and the same 550 for a
path the tree refuses whatever the command."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import (
    FTP_PHONES,
    MAC,
    SHARED_LOGIN,
    SP_MAC,
    SPIP_LOGIN,
    VVX_LOGIN,
    Control,
    FtpServer,
    fleet_env,
    make_fleet,
    start_ftp,
    wait_for,
)

MAX_CONNECTIONS = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data, env = fleet_env(tmp_path_factory, "ftp-refusals")
    make_fleet(data, env, FTP_PHONES)
    return data, env


@pytest.fixture(scope="module")
def ftp(fleet: tuple[Path, dict[str, str]]) -> Iterator[FtpServer]:
    server = start_ftp(*fleet, "--ftp-shared-login", ":".join(SHARED_LOGIN))
    yield server
    server.running.stop()


def fetches(server: FtpServer, *args: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(server.running.cli("fetches", *args, "--json"))
    return found


def refused_logins(server: FtpServer, *args: str) -> list[dict[str, object]]:
    return [r for r in fetches(server, *args) if r["method"] == "PASS"]


def fail_login(server: FtpServer, user: str, password: str) -> str:
    control = Control(server.port)
    try:
        assert control.send(f"USER {user}").startswith("331")
        return control.send(f"PASS {password}")
    finally:
        control.close()


class TestFailedLogins:
    def test_a_wrong_password_is_recorded_under_the_phone_whose_login_it_was(
        self, ftp: FtpServer
    ) -> None:
        assert fail_login(ftp, VVX_LOGIN[0], "wrong") == "530 Authentication failed."
        wait_for(lambda: refused_logins(ftp, "--mac", MAC))
        (record,) = refused_logins(ftp, "--mac", MAC)
        assert (record["protocol"], record["path"], record["status"]) == ("ftp", "/", 401)
        assert record["identified_by"] == "login"
        assert record["remote_addr"] == "127.0.0.1"
        assert record["bytes"] == 0

    def test_an_unknown_user_and_the_shared_login_are_recorded_under_no_phone(
        self, ftp: FtpServer
    ) -> None:
        before = len(refused_logins(ftp, "--status", "401"))
        assert fail_login(ftp, "nobody", "x") == "530 Authentication failed."
        assert fail_login(ftp, SHARED_LOGIN[0], "wrong") == "530 Authentication failed."
        wait_for(lambda: len(refused_logins(ftp, "--status", "401")) == before + 2)
        newest = refused_logins(ftp, "--status", "401")[-2:]
        assert [(r["mac"], r["identified_by"]) for r in newest] == [(None, None)] * 2

    def test_a_good_login_leaves_no_refusal(self, ftp: FtpServer) -> None:
        control = Control(ftp.port)
        try:
            control.login(*SPIP_LOGIN)
            assert control.send("TYPE I").startswith("200")
            assert control.send("EPSV").startswith("229")
            control.send(f"RETR {MAC}-license.cfg")  # refused (another phone's): recorded
        finally:
            control.close()
        # records are written in order: once the RETR's is there, a PASS's would be too
        wait_for(lambda: any(r["method"] == "RETR" for r in fetches(ftp, "--mac", SP_MAC)))
        assert refused_logins(ftp, "--mac", SP_MAC) == []


# every form of a path the tree refuses, and the one 550 each gets from every command
REFUSED_PATHS = [
    ("../000000000000.cfg", "550 refused path: a '..' segment."),
    ("/../../etc/passwd", "550 refused path: a '..' segment."),
    ("%2e%2e/000000000000.cfg", "550 refused path: character '%' in '%2e%2e'."),
    (".hidden", "550 refused path: hidden name '.hidden'."),
    ("a\\b", "550 refused path: character '\\\\' in 'a\\\\b'."),
    ("a\x00b.cfg", "550 refused path: character '\\x00' in 'a\\x00b.cfg'."),
    ("//000000000000.cfg", "550 refused path: an empty segment ('//', or a trailing '/')."),
]


@pytest.mark.parametrize(("path", "expected"), REFUSED_PATHS, ids=[p[0] for p in REFUSED_PATHS])
def test_a_refused_path_gets_the_same_550_from_every_command(
    ftp: FtpServer, path: str, expected: str
) -> None:
    control = Control(ftp.port)
    try:
        control.login()
        assert control.send("TYPE I").startswith("200")
        said = {command: control.send(f"{command} {path}") for command in ("SIZE", "MDTM", "CWD")}
        for command in ("RETR", "LIST", "NLST"):
            assert control.send("EPSV").startswith("229")
            said[command] = control.send(f"{command} {path}")
    finally:
        control.close()
    assert said == dict.fromkeys(("SIZE", "MDTM", "CWD", "RETR", "LIST", "NLST"), expected)


def test_size_and_mdtm_of_another_phones_file_say_what_retr_says(ftp: FtpServer) -> None:
    control = Control(ftp.port)
    try:
        control.login()
        assert control.send("TYPE I").startswith("200")
        said = [control.send(f"{c} {SP_MAC}-license.cfg") for c in ("SIZE", "MDTM")]
        assert control.send("EPSV").startswith("229")
        said.append(control.send(f"RETR {SP_MAC}-license.cfg"))
        missing = [control.send(f"{c} nothing-here.cfg") for c in ("SIZE", "MDTM")]
        assert control.send("EPSV").startswith("229")
        missing.append(control.send("RETR nothing-here.cfg"))
    finally:
        control.close()
    assert said == [f"550 that file belongs to another phone ({SP_MAC})."] * 3
    assert missing == ["550 no such file."] * 3


class TestAdmission:
    def test_max_connections_admits_exactly_that_many_and_says_every_refusal_in_few_lines(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        server = start_ftp(
            *fleet, "--ftp-max-connections", str(MAX_CONNECTIONS), "--ftp-per-address", "50"
        )
        admitted = []
        try:
            began = time.monotonic()
            admitted = [Control(server.port) for _ in range(MAX_CONNECTIONS)]
            assert [c.banner for c in admitted] == ["220 fleetkey provisioning FTP ready."] * 3
            for _ in range(20):  # N+1, twenty times over
                extra = Control(server.port)
                extra.close()
                assert extra.banner == "421 Too many connections; retry in 5 seconds."
            elapsed = time.monotonic() - began
        finally:
            for control in admitted:
                control.close()
            process = server.running.process
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        lines = [line for line in err.splitlines() if "421" in line or "connections" in line]
        assert lines  # said, through fleetkey's log
        assert lines[0].endswith(
            "FTP: 1 connection(s) refused with 421 (latest: too many connections, from 127.0.0.1)"
        )
        assert len(lines) <= 2 + elapsed / 10  # a line per 10 s and the last, not one a refusal
        # every refusal is said: the last window's count too (it once waited for a refusal
        # after it, and the server's stop never said it: 20 refusals logged as 1)
        said = [int(re.search(r"FTP: ([\d,]+) connection", line)[1]) for line in lines]  # type: ignore[index]
        assert sum(said) == 20
        assert "FTP transfers (20 connections refused with 421)" in out.splitlines()[-1]
        assert "Traceback" not in err
        assert "Too many connections; retry" not in err  # pyftpdlib's own line per refusal

"""FTP and explicit FTPS with real clients: curl, lftp and Python's ftplib (FTP and FTP_TLS).

Each fetches license files and the 20 MiB firmware byte-exact, passive and active, uploads
with STOR/APPE, and every transfer is checked in the fetch records (scripts/test-deps installs
curl and lftp).
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import self_signed
from tests.serving import (
    FTP_PHONES,
    MAC,
    SHARED_LOGIN,
    SITE,
    SP_MAC,
    VVX_LOGIN,
    FtpServer,
    fleet_env,
    make_fleet,
    records,
    start_ftp,
    wait_for,
)

FIRMWARE = "2345-12500-001.sip.ld"  # 20 MiB, from make_fleet
VVX_USERPWD = ":".join(VVX_LOGIN)  # as curl --user takes it


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    data, env = fleet_env(tmp_path_factory, "ftp")
    make_fleet(data, env, FTP_PHONES)
    cert, key = self_signed(data.parent)
    server = start_ftp(
        data, env, "--ftps", "--cert", str(cert), "--key", str(key),
        "--ftp-shared-login", ":".join(SHARED_LOGIN), "--ftp-passive", "41000-41999",
    )  # fmt: skip
    yield server
    out = server.running.stop()
    assert "FTP transfers" in out


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, cwd=cwd, capture_output=True, timeout=120, check=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_of(
    server: FtpServer, mac: str, method: str, path: str, status: int, protocol: str = "ftp"
) -> dict[str, object]:
    """The fetch record of that transfer over ``protocol``, once written (one of them, if
    several: the same transfer over FTP and FTPS is two records)."""
    found: list[dict[str, object]] = []

    def written() -> bool:
        found[:] = [
            r
            for r in records(server.running, mac)
            if (r["method"], r["path"], r["status"], r["protocol"])
            == (method, path, status, protocol)
        ]
        return bool(found)

    wait_for(written)
    return found[-1]


def over_http(server: FtpServer, name: str) -> bytes:
    """The same file as the server's HTTP side answers it (no --auth there: by its name)."""
    reply = httpx.get(f"{server.running.url}/{name}", timeout=30)
    assert reply.status_code == 200
    return reply.content


def login(server: FtpServer, user: tuple[str, str] = VVX_LOGIN, *, tls: bool = False) -> ftplib.FTP:
    client: ftplib.FTP
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client = ftplib.FTP_TLS(context=context, timeout=30)  # noqa: S321  # FTP is under test
    else:
        client = ftplib.FTP(timeout=30)  # noqa: S321  # FTP is what is under test
    client.connect("127.0.0.1", server.port)
    client.login(*user)
    if isinstance(client, ftplib.FTP_TLS):
        client.prot_p()
    return client


class TestCurl:
    def test_the_phones_own_login_gets_its_license_and_it_is_recorded(
        self, ftp: FtpServer, tmp_path: Path
    ) -> None:
        url = f"ftp://127.0.0.1:{ftp.port}/{MAC}-license.cfg"
        result = run(["curl", "-sS", "--user", VVX_USERPWD, url, "-o", "got.cfg"], tmp_path)
        assert result.returncode == 0, result.stderr
        body = (tmp_path / "got.cfg").read_bytes()
        assert f"Serial='{MAC}'".encode() in body
        record = record_of(ftp, MAC, "RETR", f"/{MAC}-license.cfg", 200)
        assert record["protocol"] == "ftp"
        assert record["digest"] == hashlib.sha256(body).hexdigest()
        assert record["bytes"] == len(body)
        assert record["identified_by"] == "login"
        assert record["remote_addr"] == "127.0.0.1"

    def test_explicit_ftps_gets_the_site_license_under_its_prefix(
        self, ftp: FtpServer, tmp_path: Path
    ) -> None:
        url = f"ftp://127.0.0.1:{ftp.port}/{SITE}/000000000000-license.cfg"
        result = run(
            ["curl", "-sS", "--ssl-reqd", "-k", "--user", VVX_USERPWD, url, "-o", "site.cfg"],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        body = (tmp_path / "site.cfg").read_bytes()
        assert f"Serial='{SITE}'".encode() in body
        record = record_of(ftp, MAC, "RETR", f"/{SITE}/000000000000-license.cfg", 200, "ftps")
        assert record["digest"] == hashlib.sha256(body).hexdigest()

    @pytest.mark.parametrize(
        "mode",
        [
            ["--ftp-pasv"],
            ["--ftp-port", "127.0.0.1"],
            ["-P", "-"],
            ["--ssl-reqd", "-k", "--ftp-pasv"],
        ],
        ids=["passive", "active", "active-P-", "ftps-passive"],
    )
    def test_the_firmware_arrives_byte_exact(
        self, ftp: FtpServer, tmp_path: Path, mode: list[str]
    ) -> None:
        url = f"ftp://127.0.0.1:{ftp.port}/{FIRMWARE}"
        result = run(["curl", "-sS", *mode, "--user", VVX_USERPWD, url, "-o", "fw"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert sha256(tmp_path / "fw") == sha256(ftp.data / "provisioning" / FIRMWARE)
        protocol = "ftps" if "--ssl-reqd" in mode else "ftp"
        record = record_of(ftp, MAC, "RETR", f"/{FIRMWARE}", 200, protocol)
        assert record["bytes"] == 20 * 1024 * 1024

    @pytest.mark.parametrize("mode", [["--ftp-pasv"], ["-P", "-"]], ids=["passive", "active"])
    @pytest.mark.parametrize("name", [f"{MAC}-license.cfg", "000000000000.cfg"])
    def test_a_license_and_a_small_file_arrive_byte_exact(
        self, ftp: FtpServer, tmp_path: Path, mode: list[str], name: str
    ) -> None:
        """Small bodies go with one send and their 125 and 226 in one segment
        (serve/ftp/control.py): a plain client still gets every byte and a clean end."""
        url = f"ftp://127.0.0.1:{ftp.port}/{name}"
        result = run(["curl", "-sS", *mode, "--user", VVX_USERPWD, url, "-o", "got"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "got").read_bytes() == over_http(ftp, name)

    def test_stor_uploads_a_boot_log_into_the_phones_uploads(
        self, ftp: FtpServer, tmp_path: Path
    ) -> None:
        log = tmp_path / "boot.log"
        log.write_bytes(b"0101000000|boot   |1|00|Starting\n" * 200)
        url = f"ftp://127.0.0.1:{ftp.port}/{MAC}-boot.log"
        result = run(["curl", "-sS", "--user", VVX_USERPWD, "-T", str(log), url], tmp_path)
        assert result.returncode == 0, result.stderr
        stored = ftp.data / "uploads" / MAC / f"{MAC}-boot.log"
        assert stored.read_bytes() == log.read_bytes()
        record = record_of(ftp, MAC, "STOR", f"/{MAC}-boot.log", 201)
        assert record["bytes"] == log.stat().st_size


class TestLftp:
    @pytest.mark.parametrize(
        "settings",
        [
            "set ftp:ssl-allow no; set ftp:passive-mode on",
            "set ftp:ssl-allow no; set ftp:passive-mode off",
            "set ftp:ssl-force yes; set ftp:ssl-protect-data yes; set ssl:verify-certificate no",
        ],
        ids=["passive", "active", "ftps"],
    )
    def test_lftp_gets_the_firmware_and_the_license(
        self, ftp: FtpServer, tmp_path: Path, settings: str
    ) -> None:
        script = (
            f"{settings}; set net:max-retries 1; "
            f"open -u {VVX_LOGIN[0]},{VVX_LOGIN[1]} -p {ftp.port} 127.0.0.1; "
            f"get {FIRMWARE} -o fw; get {MAC}-license.cfg -o license.cfg; bye"
        )
        result = run(["lftp", "-c", script], tmp_path)
        assert result.returncode == 0, result.stderr
        assert sha256(tmp_path / "fw") == sha256(ftp.data / "provisioning" / FIRMWARE)
        license_file = (tmp_path / "license.cfg").read_bytes()
        assert license_file == over_http(ftp, f"{MAC}-license.cfg")
        assert f"Serial='{MAC}'".encode() in license_file

    def test_lftp_puts_a_log(self, ftp: FtpServer, tmp_path: Path) -> None:
        (tmp_path / f"{MAC}-app.log").write_bytes(b"app log from lftp\n")
        script = (
            "set ftp:ssl-allow no; "
            f"open -u {VVX_LOGIN[0]},{VVX_LOGIN[1]} -p {ftp.port} 127.0.0.1; put {MAC}-app.log; bye"
        )
        result = run(["lftp", "-c", script], tmp_path)
        assert result.returncode == 0, result.stderr
        stored = ftp.data / "uploads" / MAC / f"{MAC}-app.log"
        assert stored.read_bytes() == b"app log from lftp\n"


class TestFtplib:
    def test_the_shared_login_is_the_phone_its_first_file_names(self, ftp: FtpServer) -> None:
        with login(ftp, SHARED_LOGIN) as client:
            with pytest.raises(ftplib.error_perm, match=r"^550 no such file"):
                client.retrbinary(f"RETR {SP_MAC}.cfg", lambda _: None)
            body = io.BytesIO()
            client.retrbinary("RETR 000000000000-license.cfg", body.write)
            assert f"Serial='{SITE}'".encode() in body.getvalue()
            with pytest.raises(ftplib.error_perm, match=f"another phone \\({MAC}\\)"):
                client.retrbinary(f"RETR {MAC}-license.cfg", lambda _: None)
        named = record_of(ftp, SP_MAC, "RETR", "/000000000000-license.cfg", 200)
        assert named["identified_by"] == "name"
        assert named["digest"] == hashlib.sha256(body.getvalue()).hexdigest()
        assert record_of(ftp, SP_MAC, "RETR", f"/{SP_MAC}.cfg", 404)
        assert record_of(ftp, SP_MAC, "RETR", f"/{MAC}-license.cfg", 403)

    @pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
    def test_stor_then_appe_of_a_log_and_reading_it_back(self, ftp: FtpServer, tls: bool) -> None:
        name = f"{MAC}-appFlash.log"
        with login(ftp, tls=tls) as client:
            client.storbinary(f"STOR {name}", io.BytesIO(b"first\n"))
            client.storbinary(f"APPE {name}", io.BytesIO(b"second\n"))
            back = io.BytesIO()
            client.retrbinary(f"RETR {name}", back.write)
        assert back.getvalue() == b"first\nsecond\n"
        assert (ftp.data / "uploads" / MAC / name).read_bytes() == b"first\nsecond\n"
        appended = record_of(ftp, MAC, "APPE", f"/{name}", 204, "ftps" if tls else "ftp")
        assert appended["bytes"] == len(b"second\n")

    def test_active_mode_retr_is_byte_exact(self, ftp: FtpServer) -> None:
        with login(ftp) as client:
            client.set_pasv(False)
            digest = hashlib.sha256()
            client.retrbinary(f"RETR {FIRMWARE}", digest.update)
        assert digest.hexdigest() == sha256(ftp.data / "provisioning" / FIRMWARE)

    def test_listing_size_and_mdtm_show_only_what_the_phone_may_get(self, ftp: FtpServer) -> None:
        with login(ftp) as client:
            names = client.nlst()
            client.voidcmd("TYPE I")
            size = client.size(f"{MAC}-license.cfg")
            mdtm = client.sendcmd(f"MDTM {MAC}-license.cfg")
            lines: list[str] = []
            client.retrlines("LIST", lines.append)
            client.cwd(SITE)
            in_site = client.nlst()
            client.sendcmd("CDUP")
            assert client.pwd() == "/"
        assert {f"{MAC}-license.cfg", "000000000000.cfg", FIRMWARE, SITE} <= set(names)
        assert not any(SP_MAC in name for name in names)
        assert size == len((ftp.data / "provisioning" / f"{MAC}-license.cfg").read_bytes())
        assert re.fullmatch(r"213 \d{14}", mdtm)
        assert any(line.startswith("-r--r--r--") and FIRMWARE in line for line in lines)
        assert any(line.startswith("dr-xr-xr-x") and line.endswith(SITE) for line in lines)
        assert "000000000000-license.cfg" in in_site

    def test_metrics_count_ftp_transfers_logins_and_bytes(self, ftp: FtpServer) -> None:
        with login(ftp) as client:
            client.retrbinary("RETR 000000000000.cfg", lambda _: None)
        text = httpx.get(f"{ftp.running.url}/metrics", timeout=10).text
        assert re.search(r'fleetkey_ftp_transfers_total\{protocol="ftp",status="200"\} \d', text)
        assert re.search(r'fleetkey_ftp_logins_total\{outcome="device"\} \d', text)
        assert re.search(r"fleetkey_ftp_sent_bytes_total [1-9]", text)
        assert "fleetkey_ftp_sessions_active" in text


class TestFirstDownloads:
    """The first download of a file over 1 MiB (hashed on the tree's own thread, which may not
    be done when the transfer ends) is recorded with the digest of the version served."""

    def test_a_new_image_downloaded_whole_is_recorded_with_its_digest(self, ftp: FtpServer) -> None:
        name = "3111-48300-001.sip.ld"
        body = os.urandom(6 * 1024 * 1024)
        (ftp.data / "provisioning" / name).write_bytes(body)
        got = io.BytesIO()
        with login(ftp) as client:
            client.retrbinary(f"RETR {name}", got.write)
        assert got.getvalue() == body
        record = record_of(ftp, MAC, "RETR", f"/{name}", 200)
        assert record["digest"] == hashlib.sha256(body).hexdigest()

    def test_a_new_image_cut_at_once_is_recorded_with_its_digest(self, ftp: FtpServer) -> None:
        name = "3111-48301-001.sip.ld"
        body = os.urandom(6 * 1024 * 1024)
        (ftp.data / "provisioning" / name).write_bytes(body)
        with login(ftp) as client:
            client.voidcmd("TYPE I")
            with client.transfercmd(f"RETR {name}") as data:
                assert data.recv(4096)  # the first bytes, then the client leaves
            client.close()
        record = record_of(ftp, MAC, "RETR", f"/{name}", 499)
        assert record["digest"] == hashlib.sha256(body).hexdigest()

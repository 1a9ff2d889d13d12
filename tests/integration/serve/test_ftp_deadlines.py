"""FTP timeouts and kept passive listeners on a real `fleetkey serve --ftp`.

The timeouts are one sweep over the sessions (serve/ftp/control.py), not pyftpdlib's timer
per connection; a passive port serves one transfer (serve/ftp/passive.py: kept ones could be
stolen).
Each test asserts what a client sees: the reply, the port named, the record.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.serving import (
    FTP_PHONES,
    MAC,
    SP_MAC,
    SPIP_LOGIN,
    Control,
    FtpServer,
    fleet_env,
    make_fleet,
    recorded,
    start_ftp,
)

FIRMWARE = "2345-12500-001.sip.ld"  # 20 MiB in the test tree


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """Short idle and data timeouts (2 s), few connections in all (each test ends its
    sessions with QUIT)."""
    data, env = fleet_env(tmp_path_factory, "ftp-deadlines")
    make_fleet(data, env, FTP_PHONES)
    server = start_ftp(
        data, env, "--ftp-idle-timeout", "2", "--ftp-data-timeout", "2",
        "--ftp-max-connections", "3",
    )  # fmt: skip
    yield server
    server.running.stop()


def epsv_port(control: Control) -> int:
    reply = control.send("EPSV")
    assert reply.startswith("229 "), reply
    return int(reply.split("|||")[1].split("|")[0])


def retr(control: Control, name: str) -> bytes:
    """EPSV, connect, RETR ``name``: the body, after 226."""
    return retr_on(control, epsv_port(control), name)


def bye(control: Control) -> None:
    """QUIT, and the server's close: the session is gone before the next test begins."""
    assert control.send("QUIT").startswith("221")
    assert control.file.readline() == b""
    control.close()


def test_every_transfer_names_a_port_that_is_closed_once_it_is_done(quick: FtpServer) -> None:
    """No passive port outlives its transfer: a kept one would be predictable, and another
    program behind the phone's address could take the phone's next file (serve/ftp/passive.py,
    port stealing)."""
    control = Control(quick.port)
    control.login()
    control.send("TYPE I")
    expected = (quick.data / "provisioning" / f"{MAC}-directory.xml").read_bytes()
    for _ in range(4):
        port = epsv_port(control)
        assert retr_on(control, port, f"{MAC}-directory.xml") == expected
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=15).close()
    bye(control)


def retr_on(control: Control, port: int, name: str) -> bytes:
    """Connect to ``port`` (named by an EPSV), RETR ``name``: the body, after 226."""
    data = socket.create_connection(("127.0.0.1", port), timeout=15)
    assert control.send(f"RETR {name}")[:3] in ("125", "150")
    body = b""
    while chunk := data.recv(65536):
        body += chunk
    data.close()
    assert control.reply() == "226 Transfer complete."
    return body


def test_sessions_after_their_transfers_hold_no_connection_more(quick: FtpServer) -> None:
    """--ftp-max-connections 3: two sessions after a transfer each, and a third session still
    gets in (3 counted; 5 if listeners outlived their transfers)."""
    sessions = [Control(quick.port) for _ in range(2)]
    for control in sessions:
        control.login()
        retr(control, f"{MAC}-directory.xml")
    third = Control(quick.port)
    assert third.banner == "220 fleetkey provisioning FTP ready."
    for control in (*sessions, third):
        bye(control)


def test_a_data_connection_that_never_comes_is_timed_out(quick: FtpServer) -> None:
    control = Control(quick.port)
    control.login()
    epsv_port(control)
    assert control.reply() == "421 Passive data channel timed out."
    control.close()


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """A data timeout (1 s) well before the idle timeout (6 s)."""
    data, env = fleet_env(tmp_path_factory, "ftp-data-deadline")
    make_fleet(data, env, FTP_PHONES)
    server = start_ftp(data, env, "--ftp-idle-timeout", "6", "--ftp-data-timeout", "1")
    yield server
    server.running.stop()


def test_a_timed_out_data_channel_is_said_once_and_the_session_goes_on(
    patient: FtpServer,
) -> None:
    """One 421 for the listener that waited in vain, and the next command's own reply (the
    sweep timed the closed listener out again at every turn before: a 421 each)."""
    control = Control(patient.port)
    control.login()
    epsv_port(control)
    assert control.reply() == "421 Passive data channel timed out."
    time.sleep(1.5)  # several sweeps after the timeout (a sweep every quarter of it at most)
    assert control.send("NOOP").startswith("200 ")
    bye(control)


def test_an_idle_session_after_a_transfer_is_closed_with_421(quick: FtpServer) -> None:
    control = Control(quick.port)
    control.login()
    retr(control, f"{MAC}-directory.xml")
    assert control.reply() == "421 Control connection timed out."
    assert control.file.readline() == b""  # and closed
    control.close()


def test_a_stalled_download_is_cut_with_421_and_recorded(quick: FtpServer) -> None:
    control = Control(quick.port)
    control.login(*SPIP_LOGIN)
    control.send("TYPE I")
    data = socket.create_connection(("127.0.0.1", epsv_port(control)), timeout=15)
    data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert control.send(f"RETR {FIRMWARE}")[:3] in ("125", "150")
    # never read: the server's buffers fill and nothing moves for the data timeout
    assert control.reply() == "421 Data connection timed out."
    data.close()
    cut = recorded(quick.running, SP_MAC, "RETR", f"/{FIRMWARE}", 499)
    assert 0 < int(str(cut["bytes"])) < 20 * 1024 * 1024
    control.close()

"""Passive data connections of a real `fleetkey serve --ftp` on a range of two ports.

Every download leaves its port in TIME_WAIT on the server's side (the server's close is the
end of the file); the listener binds such a port again (SO_REUSEADDR), so a range as small as
two ports serves download after download. When every port of the range is taken by another
program, EPSV and PASV get a 425 that says so, and the session goes on.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import random
import socket
from collections.abc import Iterator

import pytest

from tests.serving import (
    FTP_PHONES,
    MAC,
    VVX_LOGIN,
    Control,
    FtpServer,
    fleet_env,
    make_fleet,
    recorded,
    start_ftp,
)


def two_free_ports() -> int:
    """A port P with P and P+1 free on 127.0.0.1."""
    for _ in range(200):
        first = random.randrange(42000, 48000)  # noqa: S311  # not a secret
        try:
            with socket.socket() as one, socket.socket() as two:
                one.bind(("127.0.0.1", first))
                two.bind(("127.0.0.1", first + 1))
        except OSError:
            continue
        return first
    raise AssertionError("no two free ports next to each other")


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FtpServer, int]]:
    data, env = fleet_env(tmp_path_factory, "ftp-passive")
    make_fleet(data, env, FTP_PHONES)
    first = two_free_ports()
    server = start_ftp(data, env, "--ftp-passive", f"{first}-{first + 1}")
    yield server, first
    server.running.stop()


def logged_in(server: FtpServer) -> ftplib.FTP:
    client = ftplib.FTP(timeout=30)  # noqa: S321  # FTP is what is under test
    client.connect("127.0.0.1", server.port)
    client.login(*VVX_LOGIN)
    return client


def test_a_range_taken_by_others_gets_425_and_the_session_goes_on(
    narrow: tuple[FtpServer, int],
) -> None:
    server, first = narrow
    client = logged_in(server)
    taken = [socket.socket(), socket.socket()]
    try:
        for index, sock in enumerate(taken):
            sock.bind(("127.0.0.1", first + index))
            sock.listen()
        for command in ("EPSV", "PASV"):
            with pytest.raises(ftplib.error_temp) as refused:
                client.sendcmd(command)
            assert str(refused.value) == (
                f"425 Can't open data channel: no free passive port in {first}-{first + 1}."
            )
    finally:
        for sock in taken:
            sock.close()
    got = io.BytesIO()
    client.retrbinary(f"RETR {MAC}-directory.xml", got.write)
    assert got.getvalue() == (server.data / "provisioning" / f"{MAC}-directory.xml").read_bytes()
    client.quit()


def test_ports_in_time_wait_serve_download_after_download(
    narrow: tuple[FtpServer, int],
) -> None:
    server, first = narrow
    client = logged_in(server)
    tree = server.data / "provisioning"
    expected = hashlib.sha256((tree / f"{MAC}-directory.xml").read_bytes()).hexdigest()
    client.voidcmd("TYPE I")
    ports = []
    for _ in range(12):  # a boot's worth: each of the two ports used ~6 times in a row
        reply = client.sendcmd("EPSV")
        ports.append(int(reply.split("|||")[1].split("|")[0]))
        data = socket.create_connection(("127.0.0.1", ports[-1]), timeout=30)
        assert client.sendcmd(f"RETR {MAC}-directory.xml")[:3] in ("125", "150")
        body = b""
        while chunk := data.recv(65536):
            body += chunk
        data.close()
        assert client.voidresp().startswith("226")
        assert hashlib.sha256(body).hexdigest() == expected
    assert set(ports) <= {first, first + 1}
    client.quit()


def test_a_strangers_data_connection_is_refused_and_the_phones_own_gets_the_file(
    narrow: tuple[FtpServer, int],
) -> None:
    """Another address connects to the session's passive port first (RFC 2577 §8, port
    stealing): it is refused with a 425 naming it and gets no byte; the phone's own
    connection, made after it, gets the file byte-exact and its 226. (The listener accepts
    what waits when the RETR comes, not before: the stranger is turned away then.)"""
    server, _ = narrow
    expected = (server.data / "provisioning" / f"{MAC}-directory.xml").read_bytes()
    control = Control(server.port)
    control.login()
    assert control.send("TYPE I").startswith("200")
    port = int(control.send("EPSV").split("|||")[1].split("|")[0])
    stranger = socket.create_connection(
        ("127.0.0.1", port), source_address=("127.0.0.2", 0), timeout=15
    )
    stranger_port = stranger.getsockname()[1]
    own = socket.create_connection(("127.0.0.1", port), timeout=15)
    refused = control.send(f"RETR {MAC}-directory.xml")
    assert refused == (
        f"425 Rejected data connection from foreign address 127.0.0.2:{stranger_port}."
    )
    assert control.reply()[:3] in ("125", "150")
    body = b""
    while chunk := own.recv(65536):
        body += chunk
    own.close()
    assert control.reply() == "226 Transfer complete."
    assert body == expected
    assert stranger.recv(65536) == b""  # closed, nothing sent
    stranger.close()
    assert control.send("QUIT").startswith("221")
    control.close()


def test_a_held_body_larger_than_the_phones_window_arrives_whole(
    narrow: tuple[FtpServer, int],
) -> None:
    """A tree file of 60,000 bytes is held in memory and sent with one send when its RETR
    comes (serve/ftp/quick.py), to a phone whose receive buffer takes 2 KiB at a time:
    byte-exact, 226, recorded whole. (Over loopback the server's send buffer grows to take
    it all at once; a socket that takes less hands the rest to pyftpdlib's data channel.)"""
    server, _ = narrow
    body = os.urandom(60_000)
    (server.data / "provisioning" / "ring-60k.wav").write_bytes(body)
    control = Control(server.port)
    control.login()
    assert control.send("TYPE I").startswith("200")
    port = int(control.send("EPSV").split("|||")[1].split("|")[0])
    data = socket.socket()
    data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: the window
    data.settimeout(15)
    data.connect(("127.0.0.1", port))
    assert control.send("RETR ring-60k.wav")[:3] in ("125", "150")
    got = b""
    while chunk := data.recv(1024):
        got += chunk
    data.close()
    assert control.reply() == "226 Transfer complete."
    assert got == body
    record = recorded(server.running, MAC, "RETR", "/ring-60k.wav", 200)
    assert record["bytes"] == len(body)
    assert control.send("QUIT").startswith("221")
    control.close()

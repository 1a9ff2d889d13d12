"""A server SIGKILLed the moment a phone has read a license answer has its fetch record in the
store: the record that confirms a delivery is committed before the answer is sent
(serve/commits.py), so a rollout never notifies a served phone again."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.serving import (
    MAC,
    RunningServer,
    fleet_env,
    fleetkey_in_process,
    killed_after_answer,
    make_fleet,
    sigkill,
    start_server,
)

VVX_UA = f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application"


def exchange(server: RunningServer, method: str, path: str) -> bytes:
    """``method path`` on a raw connection that the server closes after answering: every
    byte of the answer, read to the end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: phones\r\nUser-Agent: {VVX_UA}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def read_answer(server: RunningServer, path: str) -> tuple[int, bytes]:
    """GET ``path``: the status and the whole body (checked against its Content-Length)."""
    head, _, body = exchange(server, "GET", path).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (x.partition(": ") for x in lines) if k == "content-length")
    assert len(body) == length, "the answer was cut"
    return int(lines[0].split()[1]), body


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One fleet for the module; each test starts (and kills) its own servers on it."""
    data, env = fleet_env(tmp_path_factory, "killed")
    make_fleet(data, env)
    return data, env


def license_records(env: dict[str, str], path: str) -> list[dict[str, object]]:
    shown = fleetkey_in_process(env, "fetches", "--mac", MAC, "--path", path, "--json")
    found = json.loads(shown.stdout)
    return [r for r in found if r["status"] == 200]


@pytest.mark.parametrize("path", ["/000000000000-license.cfg", f"/{MAC}-license.cfg"])
def test_a_server_killed_right_after_answering_a_license_has_its_record(
    fleet: tuple[Path, dict[str, str]], path: str
) -> None:
    data, env = fleet

    def answer(server: RunningServer) -> bytes:
        read_answer(server, "/nothing-here.cfg")  # a 404: recorded in its own time
        status, body = read_answer(server, path)
        assert status == 200
        return body

    killed_after_answer(lambda: start_server(data, env), answer, lambda: license_records(env, path))


def test_the_kill_loses_no_license_record_of_several_answers_in_a_row(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    """Twenty answers on twenty connections, read whole, then SIGKILL: all twenty recorded."""
    data, env = fleet
    before = len(license_records(env, f"/{MAC}-license.cfg"))
    server = start_server(data, env)
    try:
        answers = [read_answer(server, f"/{MAC}-license.cfg") for _ in range(20)]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        sigkill(server)
    assert {status for status, _ in answers} == {200}
    assert len(license_records(env, f"/{MAC}-license.cfg")) == before + 20
    # each of the twenty waited for its record's commit (serve/commits.py)
    assert "fleetkey_confirmations_committed_first_total 20.0" in metrics
    assert "fleetkey_confirmations_uncommitted_total 0.0" in metrics


def test_the_record_says_what_it_will_send_for_a_head(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    """A HEAD of a license is recorded first too (a confirmation counts it), with 0 bytes."""
    data, env = fleet
    server = start_server(data, env)
    try:
        head = exchange(server, "HEAD", f"/{MAC}-license.cfg")
    finally:
        sigkill(server)
    assert head.startswith(b"HTTP/1.1 200")
    found = license_records(env, f"/{MAC}-license.cfg")
    assert [(r["method"], r["bytes"]) for r in found if r["method"] == "HEAD"] == [("HEAD", 0)]

"""`fleetkey fetches --follow` against a real `fleetkey serve` writing records: each matching
record printed once as the server writes it, and SIGINT or SIGTERM ends it with exit 0."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time

import httpx

from tests.serving import (
    MAC,
    RunningServer,
    fleetkey_command,
    wait_for,
)

AGENT = f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application"


class Follower:
    """`fleetkey fetches --follow ARGS` in a process of its own, its lines read as they come."""

    def __init__(self, server: RunningServer, *args: str) -> None:
        self.process = subprocess.Popen(
            [*fleetkey_command(), "fetches", "--follow", *args],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_lines(self, count: int, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        found = []
        while len(found) < count:
            try:
                found.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"only {found} within {timeout} s") from None
        return found

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err


def fetch(server: RunningServer, *paths: str) -> list[int]:
    with httpx.Client(base_url=server.url, headers={"User-Agent": AGENT}) as client:
        return [client.get(path).status_code for path in paths]


def test_followed_records_arrive_as_the_server_writes_them(server: RunningServer) -> None:
    posted = {
        key["serial"]: key["digest"]
        for key in json.loads(server.cli("licenses", "list", "--state", "posted", "--json"))
    }
    follower = Follower(server, "--json", "--path", "license.cfg", "--mac", MAC)
    try:
        time.sleep(1.0)  # it has read where the records end: what comes next is new
        assert fetch(server, f"/{MAC}-license.cfg", "/nothing.cfg", "/000000000000-license.cfg")
        first = [json.loads(line) for line in follower.next_lines(2)]
        assert [(r["path"], r["status"], r["mac"]) for r in first] == [
            (f"/{MAC}-license.cfg", 200, MAC),
            ("/000000000000-license.cfg", 200, MAC),
        ]
        assert [r["digest"] for r in first] == [posted[MAC], posted["100000000001"]]
        assert fetch(server, "/000000000000-license.cfg") == [200]
        (again,) = [json.loads(line) for line in follower.next_lines(1)]
        assert again["path"] == "/000000000000-license.cfg"
        time.sleep(1.5)  # three polls more
        assert follower.lines.empty()  # each record once; /nothing.cfg never matched
    finally:
        code, err = follower.stop(signal.SIGTERM)
    assert (code, err) == (0, "")


def test_people_get_one_line_a_record_and_ctrl_c_stops_it(server: RunningServer) -> None:
    assert fetch(server, "/missing-file.cfg") == [404]
    # its record reaches the store within the writer's flush second: the follower starts after
    wait_for(lambda: json.loads(server.cli("fetches", "--path", "/missing-file.cfg", "--json")))
    follower = Follower(server, "--status", "4xx", "--limit", "1")
    try:
        (past,) = follower.next_lines(1)  # the newest refused request so far
        assert "/missing-file.cfg" in past
        assert fetch(server, "/still-missing.cfg") == [404]
        (line,) = follower.next_lines(1)
        assert f"  {MAC}  GET   404 " in line
        assert line.endswith("  http   /still-missing.cfg")
    finally:
        code, err = follower.stop(signal.SIGINT)
    assert (code, err) == (0, "")

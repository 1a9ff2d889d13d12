"""`/healthz`, what HAProxy asks every server (docs/deploy.md): a real database query with a
timeout, the record queue and its writer, the posted view's age; 200 healthy, 503 with the
reasons. Checked against real failures (a PostgreSQL stopped, a lock that makes the query
hang) and with the requests a balancer or a stranger may send it."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from fleetkey.serve.health import PROBE_FRESH_S

from tests.pg import PostgresServer
from tests.serving import RunningServer, fleet_env, make_fleet, start_server, wait_for

pytestmark = pytest.mark.postgres


def health(server: RunningServer) -> tuple[int, dict[str, object]]:
    reply = httpx.get(f"{server.url}/healthz", timeout=10)
    return reply.status_code, reply.json()


def reasons(server: RunningServer) -> list[str]:
    found = health(server)[1]["reasons"]
    assert isinstance(found, list)
    return [str(reason) for reason in found]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    server = PostgresServer().start()
    yield server
    server.stop()


@contextlib.contextmanager
def database_fault(fault: str, postgres: PostgresServer, url: str) -> Iterator[None]:
    """The database as ``fault`` says while the block runs: ``none``; ``stopped``
    (``pg_ctl -m immediate``: as a crash); ``hung`` (a lock held elsewhere makes the check's
    query wait). Undone at the end."""
    if fault == "stopped":
        postgres.pause()
        try:
            yield
        finally:
            with contextlib.suppress(RuntimeError):  # started again whatever happened
                postgres.resume()
    elif fault == "hung":
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
            yield
            holder.rollback()
    else:
        yield


def check_healthy(body: dict[str, object]) -> None:
    """The body of a healthy server with a 1,000-record queue: its database, queue and view."""
    assert (body["healthy"], body["reasons"]) == (True, [])
    database = body["database"]
    assert isinstance(database, dict)
    assert (database["ok"], database["error"]) == (True, None)
    assert 0 < database["latency_ms"] < 2000
    assert body["record_queue"] == {
        "depth": 0,
        "capacity": 1000,
        "busy_at": 900,
        "writer_alive": True,
    }
    age = body["view_age_s"]
    assert isinstance(age, float)
    assert 0 <= age < 2.5  # refreshed every second


def check_down(body: dict[str, object]) -> None:
    """PostgreSQL stopped: the database is the reason (the view's age follows it later)."""
    assert body["healthy"] is False
    found = body["reasons"]
    assert isinstance(found, list)
    assert any(str(reason).startswith("database: ") for reason in found)


def check_hung(body: dict[str, object]) -> None:
    """A query that waits: the check gave up on it at its timeout (or PostgreSQL did)."""
    database = body["database"]
    assert isinstance(database, dict)
    assert database["ok"] is False
    error = str(database["error"])
    assert "no answer within 2 s" in error or "statement timeout" in error


@pytest.mark.parametrize(
    ("fault", "expected", "check", "at_least_s"),
    [
        ("none", 200, check_healthy, 0.0),
        ("stopped", 503, check_down, 0.0),
        ("hung", 503, check_hung, 1.5),  # it waited for its timeout, 2 s
    ],
)
def test_healthz_says_what_the_database_does_within_its_timeout_and_recovers_by_itself(
    tmp_path_factory: pytest.TempPathFactory,
    own_postgres: PostgresServer,
    fault: str,
    expected: int,
    check: Callable[[dict[str, object]], None],
    at_least_s: float,
) -> None:
    """A real query with a 2 s timeout, one at a time: a healthy database is a 200 with the
    queue and the view; a stopped one or one that hangs (the query cancelled by PostgreSQL or
    left behind) a 503 naming it within the timeout, and 200 again once it is back."""
    data, env = fleet_env(tmp_path_factory, f"healthz-{fault}")
    url = env["FLEETKEY_DB"] = own_postgres.create_database()
    make_fleet(data, env)
    server = start_server(data, env, "--http", "127.0.0.1:0", "--record-queue", "1000")
    try:
        wait_for(lambda: health(server)[0] == 200, 15)
        with database_fault(fault, own_postgres, url):
            time.sleep(PROBE_FRESH_S + 0.1)  # past the reuse of the last answer
            began = time.monotonic()
            status, body = health(server)
            took = time.monotonic() - began
            assert status == expected, body
            check(body)
            assert at_least_s <= took < 3.5  # the query's timeout is 2 s
            if fault == "stopped":  # the view cannot be read either, and says how old it is
                wait_for(
                    lambda: any(r.startswith("posted view: last read") for r in reasons(server)),
                    15,
                )
        wait_for(lambda: health(server)[0] == 200, 15)
        assert reasons(server) == []
    finally:
        out = server.stop()
    assert "0 not recorded" in out


def test_healthz_refuses_other_methods_and_any_query_and_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> None:
    data, env = fleet_env(tmp_path_factory, "healthz-malformed")
    env["FLEETKEY_DB"] = postgres_server.create_database()
    make_fleet(data, env)
    server = start_server(data, env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                reply = client.request(method, "/healthz", content=b"x" * 10)
                assert reply.status_code == 405, (method, reply.text)
                assert reply.json()["error"] == "method-not-allowed", method
                assert set(reply.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
            for query in ("verbose=1", "x", "%00", "a=" + "b" * 5000):
                reply = client.get(f"/healthz?{query}")
                expected = 414 if len(query) > 4000 else 400  # the framing caps the target
                assert reply.status_code == expected, (query[:20], reply.text)
                if expected == 400:
                    assert reply.json() == {
                        "error": "bad-request",
                        "detail": f"/healthz takes no query, got {query!r}",
                    }
            head = client.head("/healthz")
            assert (head.status_code, head.content) == (200, b"")
            slash = client.get("/healthz/")  # Starlette's redirect of a trailing slash
            assert (slash.status_code, slash.headers["location"]) == (307, f"{server.url}/healthz")
            assert client.get("/healthz").status_code == 200  # nothing above changed it
        with contextlib.closing(socket.create_connection(("127.0.0.1", server.port))) as raw:
            raw.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")  # as HAProxy's default check asks
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["healthy"] is True
    finally:
        out = server.stop()
    # operator requests are not fetch records; the framing's 414 is, as every refusal of it
    assert " 1 fetch records written, 0 not recorded" in out
    recorded = json.loads(server.cli("fetches", "--json"))
    assert [(r["status"], r["path"][:9]) for r in recorded] == [(414, "/healthz?")]

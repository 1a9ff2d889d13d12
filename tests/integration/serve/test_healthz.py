"""`/healthz`, what HAProxy asks every server (docs/deploy.md): a real database query with a
timeout, the record queue and its writer, the posted view's age; 200 healthy, 503 with the
reasons. Checked against real failures (a PostgreSQL stopped, a lock that makes the query
hang) and with the requests a balancer or a stranger may send it."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

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


def test_a_healthy_server_says_so_with_its_database_queue_and_view(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> None:
    data, env = fleet_env(tmp_path_factory, "healthz-ok")
    env["FLEETKEY_DB"] = postgres_server.create_database()
    make_fleet(data, env)
    server = start_server(data, env, "--http", "127.0.0.1:0", "--record-queue", "1000")
    try:
        status, body = health(server)
    finally:
        server.stop()
    assert status == 200, body
    assert body["healthy"] is True
    assert body["reasons"] == []
    database = body["database"]
    assert isinstance(database, dict)
    assert database["ok"] is True
    assert database["error"] is None
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


def test_a_stopped_database_is_a_503_naming_it_and_the_server_comes_back_by_itself(
    tmp_path_factory: pytest.TempPathFactory, own_postgres: PostgresServer
) -> None:
    data, env = fleet_env(tmp_path_factory, "healthz-db-down")
    env["FLEETKEY_DB"] = own_postgres.create_database()
    make_fleet(data, env)
    server = start_server(data, env)
    try:
        assert health(server)[0] == 200
        own_postgres.pause()  # pg_ctl -m immediate: as a crash
        time.sleep(PROBE_FRESH_S + 0.1)  # past the reuse of the last answer
        began = time.monotonic()
        status, body = health(server)
        took = time.monotonic() - began
        assert status == 503, body
        assert body["healthy"] is False
        assert any(reason.startswith("database: ") for reason in reasons(server))
        assert took < 3.5  # the query's timeout is 2 s
        wait_for(
            lambda: any(r.startswith("posted view: last read") for r in reasons(server)), 15
        )  # the view cannot be read either, and says how old it is
        own_postgres.resume()
        wait_for(lambda: health(server)[0] == 200, 15)
        assert reasons(server) == []
    finally:
        with contextlib.suppress(RuntimeError):
            own_postgres.resume()  # started again if the test failed while it was stopped
        out = server.stop()
    assert "0 not recorded" in out


def test_a_database_that_hangs_costs_the_check_its_timeout_not_more(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> None:
    """A lock held elsewhere makes the query wait: the check answers 503 within its timeout
    (the query is cancelled by PostgreSQL or left behind), and 200 once the lock is gone."""
    data, env = fleet_env(tmp_path_factory, "healthz-hang")
    url = postgres_server.create_database()
    env["FLEETKEY_DB"] = url
    make_fleet(data, env)
    server = start_server(data, env)
    try:
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
            time.sleep(PROBE_FRESH_S + 0.1)  # past the reuse of the last answer
            began = time.monotonic()
            status, body = health(server)
            took = time.monotonic() - began
            assert status == 503, body
            database = body["database"]
            assert isinstance(database, dict)
            assert database["ok"] is False
            error = str(database["error"])
            assert "no answer within 2 s" in error or "statement timeout" in error
            assert 1.5 < took < 3.5
            holder.rollback()
        wait_for(lambda: health(server)[0] == 200, 15)
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

"""The per-phone state the fetch-record writer keeps, on both backends: it says what the raw
records say after any mix of batches, survives its records aging out, and `db check` proves it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from fleetkey.core.useragent import parse_user_agent
from fleetkey.store import fetches, phonestate, statecheck
from fleetkey.store.records import FetchRecord, utc
from fleetkey.store.schema import FetchRow, FetchTextRow, PhoneFileRow, PhoneSeenRow
from fleetkey.store.store import Store

from tests.helpers import Fleetkey

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
MACS = ("0004f2000001", "0004f2000002", "0004f2000003")
PATHS = (
    "/000000000000-license.cfg",
    "/100000000001/000000000000-license.cfg",
    "/0004f2000001-license.cfg",
    "/0004F2000002-LICENSE.CFG",
    "/0004f2000001.cfg",
    "/sip.ld",
)
AGENTS = (None, "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477", "curl/8.0")

records = st.builds(
    lambda mac, second, path, protocol, status, digest, agent, address: FetchRecord(
        path=path,
        protocol=protocol,
        status=status,
        bytes=100,
        duration_ms=1.0,
        at=T0 + timedelta(seconds=second),
        mac=mac,
        digest=digest,
        remote_addr=address,
        user_agent=agent,
    ),
    st.sampled_from((*MACS, None)),
    st.integers(0, 5),  # few distinct times: ties, and late records older than the state
    st.sampled_from(PATHS),
    st.sampled_from(("http", "https", "tftp")),
    st.sampled_from((200, 206, 304, 404, 503)),
    st.sampled_from((None, "aa" * 32, "bb" * 32)),
    st.sampled_from(AGENTS),
    st.sampled_from(("127.0.0.2", "127.0.0.3", None)),
)


def expected_state(store: Store) -> tuple[dict[str, tuple[object, ...]], dict[object, object]]:
    """What the raw records say, computed here from the rows and their ids (the oracle)."""
    with store.transaction() as session:
        texts = {i: t for i, t in session.execute(select(FetchTextRow.id, FetchTextRow.text))}
        rows = session.scalars(select(FetchRow).where(FetchRow.mac.is_not(None))).all()
        ordered = sorted(rows, key=lambda r: (utc(r.at), r.id))
        seen: dict[str, tuple[object, ...]] = {}
        files: dict[object, object] = {}
        for r in ordered:
            path, user_agent = texts[r.path_id], texts.get(r.agent_id or 0)
            agent = parse_user_agent(user_agent)
            seen[r.mac or ""] = (
                utc(r.at),
                r.remote_addr,
                r.protocol,
                user_agent,
                agent.firmware if agent else None,
            )
            name = path.rsplit("/", 1)[-1].lower()
            if name.endswith("-license.cfg"):
                fetched = (utc(r.at), path, r.protocol, r.status, r.digest)
                files[r.mac, name, "request"] = fetched
                if r.status < 400 and r.digest is not None:
                    files[r.mac, name, "served"] = fetched
    return seen, files


def stored_state(store: Store) -> tuple[dict[str, tuple[object, ...]], dict[object, object]]:
    with store.transaction() as session:
        seen = {
            s.mac: (utc(s.at), s.address, s.protocol, s.user_agent, s.firmware)
            for s in session.scalars(select(PhoneSeenRow))
        }
        files: dict[object, object] = {
            (f.mac, f.file_name, f.kind): (utc(f.at), f.path, f.protocol, f.status, f.digest)
            for f in session.scalars(select(PhoneFileRow))
        }
    return seen, files


def clear(store: Store) -> None:
    with store.transaction() as session:
        for table in (FetchRow, PhoneSeenRow, PhoneFileRow):
            session.execute(delete(table))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.lists(records, max_size=12), min_size=1, max_size=6))
def test_state_equals_what_the_records_say_after_a_storm_of_batches(
    store: Store, batches: list[list[FetchRecord]]
) -> None:
    clear(store)
    for batch in batches:
        fetches.insert_records(store.engine, batch)
    assert stored_state(store) == expected_state(store)
    with store.engine.connect() as connection:
        assert statecheck.check(connection).differences == []


def test_a_late_record_older_than_the_state_does_not_turn_it_back(store: Store) -> None:
    newer = FetchRecord("/000000000000-license.cfg", "http", 200, 1, 1.0, T0, mac=MACS[0])
    late = newer._replace(at=T0 - timedelta(hours=1), protocol="tftp", digest="aa" * 32)
    fetches.insert_records(store.engine, [newer])
    fetches.insert_records(store.engine, [late])
    with store.transaction() as session:
        assert phonestate.seen(session, MACS[0]) == phonestate.Seen(
            MACS[0], T0, None, "http", None, None
        )
        request, served = phonestate.file_fetches(session, MACS[0], "000000000000-license.cfg")
    assert request is not None
    assert request.at == T0
    assert served is not None  # the late one is the only one that served a version
    assert served.at == late.at


def test_a_phone_whose_records_aged_out_still_shows_its_last_fetch(
    store: Store,
    store_url: str,
    initialized: Path,
    fleetkey: Fleetkey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = FetchRecord(
        "/000000000000-license.cfg", "https", 200, 1, 1.0, T0, mac=MACS[0], digest="aa" * 32
    )
    recent = FetchRecord("/sip.ld", "http", 404, 1, 1.0, T0 + timedelta(days=100), mac=MACS[1])
    fetches.insert_records(store.engine, [old, recent])
    with store.transaction() as session:
        session.execute(delete(FetchRow).where(FetchRow.mac == MACS[0]))  # aged out
        request, _ = phonestate.file_fetches(session, MACS[0], "000000000000-license.cfg")
    assert request is not None
    assert (request.at, request.protocol, request.digest) == (T0, "https", "aa" * 32)
    monkeypatch.setenv("FLEETKEY_DB", store_url)
    report = json.loads(fleetkey("db", "check", "--json").stdout)
    assert report["ok"] is True
    assert report["phones"] == 2


def test_db_check_names_the_phones_whose_state_differs(
    store: Store,
    store_url: str,
    initialized: Path,
    fleetkey: Fleetkey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = [
        FetchRecord("/000000000000-license.cfg", "http", 200, 1, 1.0, T0, mac=mac) for mac in MACS
    ]
    fetches.insert_records(store.engine, batch)
    monkeypatch.setenv("FLEETKEY_DB", store_url)
    assert "ok: 3 phones, 6 state entries agree" in fleetkey("db", "check").stdout
    with store.transaction() as session:
        session.execute(
            update(PhoneSeenRow).where(PhoneSeenRow.mac == MACS[1]).values(address="10.0.0.9")
        )
        session.execute(delete(PhoneFileRow).where(PhoneFileRow.mac == MACS[2]))
    failed = fleetkey("db", "check", code=1)
    assert failed.stderr.splitlines() == [
        "error: the per-phone state differs from the fetch records for 2 phones: "
        f"{MACS[1]}, {MACS[2]}",
        "hint: `fleetkey db check --json` shows each difference",
    ]
    report = json.loads(fleetkey("db", "check", "--json", code=1).stdout)
    assert report["differing_phones"] == [MACS[1], MACS[2]]
    assert {(d["mac"], d["what"]) for d in report["differences"]} == {
        (MACS[1], "seen"),
        (MACS[2], "000000000000-license.cfg request"),
    }
    assert report["differences"][0]["stored"]["address"] == "10.0.0.9"


def test_db_check_says_its_counts_with_thousands_separators_and_json_keeps_numbers(
    store: Store,
    store_url: str,
    initialized: Path,
    fleetkey: Fleetkey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = [
        FetchRecord("/sip.ld", "http", 200, 1, 1.0, T0, mac=f"0004f2{n:06x}") for n in range(1_000)
    ]
    fetches.insert_records(store.engine, batch)
    monkeypatch.setenv("FLEETKEY_DB", store_url)
    said = fleetkey("db", "check").stdout
    assert said.startswith("ok: 1,000 phones, "), said
    assert json.loads(fleetkey("db", "check", "--json").stdout)["phones"] == 1000

"""The boot cost from a tally per day, on both backends: the same answer as the measure over
the same raw records, kept once a day is over, read back without the records."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from fleetkey.core.rollout.cost import DEFAULT, ONE_RUN, measure
from fleetkey.core.rollout.plan import BootCost
from fleetkey.store import bootdays, fetches, retention
from fleetkey.store.records import FetchRecord, utc
from fleetkey.store.schema import BootDayRow, FetchRow
from fleetkey.store.store import Store
from fleetkey.store.texts import path_of

TODAY = datetime(2026, 6, 10, tzinfo=UTC)
MACS = [f"0004f2{i:06x}" for i in range(12)]
BOOT = ("/000000000000.cfg", "/{mac}.cfg", "/000000000000-license.cfg", "/{mac}-license.cfg")


def day_of_traffic(day: datetime, seed: int) -> list[FetchRecord]:
    """Two boots a phone (4-7 requests, lengths to the millisecond, varied sizes), a poll of
    no license file, and requests of no phone: all inside the day."""
    rng = random.Random(seed)  # noqa: S311  # varied traffic, not a secret
    found = []
    for n, mac in enumerate(MACS):
        for hour in (2 + n % 3, 14):
            at = day + timedelta(hours=hour, minutes=n)
            for step in range(rng.randint(4, 7)):
                path = BOOT[step].format(mac=mac) if step < len(BOOT) else f"/log{step}.txt"
                found.append(
                    FetchRecord(path, "http", 200, rng.randint(0, 90_000), 1.0, at, mac=mac)
                )
                at += timedelta(milliseconds=rng.randint(1, 90_000))
        poll = day + timedelta(hours=20, minutes=n)
        found.append(FetchRecord("/000000000000.cfg", "http", 304, 0, 0.5, poll, mac=mac))
        found.append(FetchRecord("/sip.cfg", "tftp", 200, 500, 2.0, poll, mac=None))
    return found


def raw_cost(store: Store, before_day: int) -> BootCost:
    """The measure over every raw phone record of the days before ``before_day``."""
    with store.transaction() as session:
        rows = session.execute(
            select(FetchRow.mac, FetchRow.at, path_of.text, FetchRow.bytes)
            .join(path_of, path_of.id == FetchRow.path_id)
            .where(FetchRow.day < before_day, FetchRow.mac.is_not(None))
            .order_by(FetchRow.mac, FetchRow.at, FetchRow.id)
        ).all()
    return measure([(mac, utc(at), path, size) for mac, at, path, size in rows])


def newest_day(store: Store) -> int:
    with store.transaction() as session:
        return int(session.scalar(select(func.max(FetchRow.day))) or 0)


def test_the_tallies_give_the_cost_the_raw_records_give(store: Store) -> None:
    for back in range(4, 0, -1):  # four whole days, then today's records
        fetches.insert_records(store.engine, day_of_traffic(TODAY - timedelta(days=back), back))
    fetches.insert_records(store.engine, day_of_traffic(TODAY, 0)[:20])
    expected = raw_cost(store, newest_day(store))
    with store.transaction() as session:
        cost = bootdays.boot_cost(session)
    assert cost == measure_with_source(expected, "the fetch records of 2026-06-06 to 2026-06-09")
    assert cost != DEFAULT


def measure_with_source(expected: BootCost, where: str) -> BootCost:
    boots = expected.source.removeprefix("measured from ").split(" ")[0]
    return replace(expected, source=f"measured from {boots} boots in {where} (UTC); {ONE_RUN}")


def test_a_days_tally_is_kept_and_read_back_when_its_records_are_gone(store: Store) -> None:
    for back in (2, 1):
        fetches.insert_records(store.engine, day_of_traffic(TODAY - timedelta(days=back), back))
    fetches.insert_records(store.engine, day_of_traffic(TODAY, 0)[:5])
    with store.transaction() as session:
        first = bootdays.boot_cost(session)
        kept = session.scalar(select(func.count()).select_from(BootDayRow))
    assert kept == 2
    today = newest_day(store)
    with store.transaction() as session:
        session.execute(delete(FetchRow).where(FetchRow.day < today))
        assert bootdays.boot_cost(session) == first


def test_only_the_newest_days_needed_are_tallied(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for back in range(5, -1, -1):
        fetches.insert_records(store.engine, day_of_traffic(TODAY - timedelta(days=back), back))
    monkeypatch.setattr(bootdays, "ENOUGH_BOOTS", 2 * len(MACS) * 2)  # two days' boots
    with store.transaction() as session:
        cost = bootdays.boot_cost(session)
        days = list(session.scalars(select(BootDayRow.day).order_by(BootDayRow.day)))
    today = newest_day(store)
    assert days == [today - 2, today - 1]
    assert cost.source == (
        f"measured from {4 * len(MACS)} boots in the fetch records of 2026-06-08 to "
        f"2026-06-09 (UTC); {ONE_RUN}"
    )


def test_a_first_day_is_measured_from_its_records(store: Store) -> None:
    records = day_of_traffic(TODAY, 0)
    fetches.insert_records(store.engine, records)
    with store.transaction() as session:
        cost = bootdays.boot_cost(session)
        kept = session.scalar(select(func.count()).select_from(BootDayRow))
    phones = sorted((r.mac, r.at, r.path, r.bytes) for r in records if r.mac is not None)
    assert cost == measure(phones)
    assert cost.source == f"measured from {2 * len(MACS)} boots in the fetch records; {ONE_RUN}"
    assert kept == 0  # today is not over: nothing kept


def test_a_first_day_past_the_limit_is_measured_from_its_first_phones_whole(
    store: Store,
) -> None:
    records = day_of_traffic(TODAY - timedelta(days=1), 1) + day_of_traffic(TODAY, 0)
    fetches.insert_records(store.engine, records)
    today = [r for r in records if r.mac is not None and r.at >= TODAY]
    first_three = sorted((r.mac, r.at, r.path, r.bytes) for r in today if r.mac in MACS[:3])
    with store.transaction() as session:
        # the limit falls inside the fourth phone's records: it is left out
        assert bootdays.first_phones(session, len(first_three) + 2) == first_three
        assert bootdays.first_phones(session, len(first_three)) == first_three
        one = bootdays.first_phones(session, 2)  # inside the first phone: its first two
    assert one == first_three[:2]


def test_an_empty_store_costs_the_default_profile(store: Store) -> None:
    with store.transaction() as session:
        assert bootdays.boot_cost(session) == DEFAULT


def test_a_prune_tallies_the_newest_whole_days_first(store: Store) -> None:
    for back in (2, 1, 0):
        fetches.insert_records(store.engine, day_of_traffic(TODAY - timedelta(days=back), back))
    retention.prune(store.engine, TODAY + timedelta(hours=12), 90)
    with store.transaction() as session:
        days = list(session.scalars(select(BootDayRow.day).order_by(BootDayRow.day)))
    today = newest_day(store)
    assert days == [today - 2, today - 1]

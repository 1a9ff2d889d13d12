"""The per-boot cost measured from fetch records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetkey.core.rollout.cost import DEFAULT, ONE_RUN, measure

T0 = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)
BOOT = ["0004f2000001.cfg", "000000000000.cfg", "sip.cfg", "000000000000-license.cfg",
        "0004f2000001-license.cfg"]  # fmt: skip


def boot(mac: str, at: datetime, paths: list[str] = BOOT, size: int = 1000, step: float = 1):
    return [(mac, at + timedelta(seconds=i * step), p, size) for i, p in enumerate(paths)]


def test_boots_are_split_by_mac_and_gap_and_averaged() -> None:
    rows = []
    for i in range(30):
        mac = f"0004f2{i:06x}"
        rows += boot(mac, T0)  # 5 requests over 4 s
        rows += boot(mac, T0 + timedelta(hours=1), [*BOOT, "a.log", "b.log"], step=2)  # 7 over 12 s
    cost = measure(rows)
    assert cost.requests == 6.0
    assert cost.bytes == 6000.0
    assert cost.seconds == 12.0  # the 90th percentile
    assert cost.source == f"measured from 60 boots in the fetch records; {ONE_RUN}"


def test_boots_of_a_phone_minutes_apart_are_one_and_the_source_says_so() -> None:
    """A trial rebooting each phone three times a minute apart: three boots' requests in one
    run, and "measured from N boots" says what its N counts."""
    rows = []
    for i in range(20):
        for again in range(3):
            rows += boot(f"0004f2{i:06x}", T0 + timedelta(minutes=again))
    cost = measure(rows)
    assert cost.requests == 15.0  # three boots' five requests each, as one
    assert cost.source == (
        "measured from 20 boots in the fetch records; a phone's boots under 120 s apart count "
        "as one"
    )


def test_runs_without_a_license_fetch_are_not_boots() -> None:
    rows = []
    for i in range(30):
        rows += boot(f"0004f2{i:06x}", T0, ["0004f2000001-directory.xml", "a.log"])
    assert measure(rows) == DEFAULT


def test_too_few_boots_fall_back_to_the_profile() -> None:
    rows = [r for i in range(19) for r in boot(f"0004f2{i:06x}", T0)]
    assert measure(rows) == DEFAULT
    assert measure([]) == DEFAULT


def test_boots_that_downloaded_firmware_are_left_out_of_a_license_boots_cost() -> None:
    """A capacity probe's firmware-change storm against the server left 40 boots of 150 MB
    each in the records: a license rollout planned against them (it mixed them in)."""
    rows = []
    for i in range(30):
        rows += boot(f"0004f2{i:06x}", T0)
    for i in range(40):
        image = [*BOOT[:2], "sip.ld", *BOOT[2:]]
        rows += boot(f"02{i:010x}", T0, image, size=147_914_752)
    cost = measure(rows)
    assert (cost.requests, cost.bytes) == (5.0, 5000.0)
    assert cost.source == (
        "measured from 30 boots in the fetch records (40 that downloaded firmware left out); "
        "a phone's boots under 120 s apart count as one"
    )

"""The one recorder: a record per answer, sightings of phones that can change, back-pressure."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from fleetkey.clock import FixedClock
from fleetkey.errors import FleetkeyError
from fleetkey.serve.content import Content, ContentKind
from fleetkey.serve.fetching import Ruling
from fleetkey.serve.recorder import (
    ADMIT,
    BUSY,
    FAIR_SHARE_MIN,
    QUIET_SHARE,
    WAIT,
    Admission,
    Recorder,
    Sightings,
    confirms,
)
from fleetkey.serve.view import View
from fleetkey.store.records import FetchRecord
from fleetkey.store.sightings import NewPhone
from fleetkey.testing import FixedView, InMemoryRecordQueue

KNOWN, STRANGER = "0004f2000001", "0004f2999999"
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def recorder(capacity: int = 100) -> tuple[Recorder, InMemoryRecordQueue]:
    queue = InMemoryRecordQueue(capacity)
    view = FixedView(View(phone_sites={KNOWN: "100000000001"}))
    return Recorder(queue, FixedClock(AT), view, queue_capacity=capacity), queue


def record(made: Recorder, status: int, ruling: Ruling | None, path: str = "/x.cfg") -> None:
    made.record("tftp", "RRQ", path, status, 10, 0.5, "10.0.0.1", None, None, ruling, "file", None)


def test_every_answer_is_one_record_with_who_asked_and_how_they_were_known() -> None:
    made, queue = recorder()
    record(made, 200, Ruling(200, mac=KNOWN, via="address"), "/000000000000-license.cfg")
    record(made, 404, Ruling(404, mac=None, via="ambiguous"))
    record(made, 400, None, "/../etc/passwd")
    assert [(r.path, r.status, r.mac, r.identified_by, r.at) for r in queue.records] == [
        ("/000000000000-license.cfg", 200, KNOWN, "address", AT),
        ("/x.cfg", 404, None, "ambiguous", AT),
        ("/../etc/passwd", 400, None, None, AT),
    ]
    assert made.answers == {
        ("tftp", 200, "file"): 1,
        ("tftp", 404, "file"): 1,
        ("tftp", 400, "file"): 1,
    }
    assert made.identified == {"address": 1, "ambiguous": 1, "none": 1}


def test_long_paths_and_user_agents_are_capped_in_the_record() -> None:
    made, queue = recorder()
    made.record(
        "http", "GET", "/" + "a" * 5000, 404, 0, 0.1, None, "U" * 900, None, None, "other", None
    )
    assert len(queue.records[0].path) == 1024
    assert queue.records[0].user_agent == "U" * 255


def test_the_queue_nearly_full_makes_the_server_busy() -> None:
    made, _queue = recorder(capacity=10)
    for _ in range(8):
        record(made, 200, None)
    assert not made.congested
    record(made, 200, None)
    assert made.congested  # 9 of 10: 90 %


def test_a_record_that_finds_the_queue_full_is_counted_and_logged_once_an_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made, queue = recorder(capacity=2)
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            record(made, 200, None)
    assert len(queue.records) == 2
    assert made.unrecorded == 3
    assert caplog.text.count("fetch records not queued") == 1


def test_sightings_are_kept_for_phones_the_inventory_knows_or_that_register() -> None:
    made, _ = recorder()
    record(made, 200, Ruling(200, mac=KNOWN, via="name"))
    record(made, 200, Ruling(200, mac=STRANGER, via="name"))
    assert made.sightings.watches(KNOWN, known=True)
    assert not made.sightings.watches(STRANGER, known=False)
    newcomer = NewPhone(STRANGER, "100000000001", "VVX_500", "5.9.7")
    record(made, 200, Ruling(200, mac=STRANGER, via="agent", register=newcomer))
    assert made.sightings.watches(STRANGER, known=False)


def test_refused_answers_are_recorded_but_are_no_sighting_and_register_nobody() -> None:
    made, queue = recorder()
    newcomer = NewPhone(STRANGER, "100000000001", None, None)
    record(made, 403, Ruling(403, mac=STRANGER, via="name", register=newcomer))
    assert len(queue.records) == 1
    assert not made.sightings.watches(STRANGER, known=False)


def test_a_stranger_queued_once_stays_queued_once() -> None:
    sightings = Sightings()
    sightings.queue(NewPhone(STRANGER, "100000000001", None, None))
    sightings.queue(NewPhone(STRANGER, "100000000002", None, None))
    assert sightings.watches(STRANGER, known=False)


def test_the_writer_not_running_is_an_error_not_a_silent_loss() -> None:
    stopped = InMemoryRecordQueue(10, running=False)
    made = Recorder(stopped, FixedClock(AT), FixedView(View()), queue_capacity=10)
    with pytest.raises(FleetkeyError, match="not running"):
        record(made, 200, None)
    assert made.unrecorded == 0  # not counted as a full queue: it is an error


def test_under_pressure_an_address_over_its_fair_share_waits_and_the_others_go_on() -> None:
    made, queue = recorder(capacity=1000)
    queue.records.extend([FetchRecord("/x", "http", 200, 0, 0.0, AT)] * 600)  # 60 % full
    assert made.admits("10.0.0.2", 100.0) is ADMIT  # a phone heard from this second
    flood = [made.admits("10.0.0.1", 100.0 + n / 1000) for n in range(300)]
    assert flood.count(ADMIT) == FAIR_SHARE_MIN  # its share: at least the minimum a second
    assert set(flood[FAIR_SHARE_MIN:]) == {WAIT}
    assert [made.admits("10.0.0.2", 100.5) for _ in range(50)] == [ADMIT] * 50  # it goes on


def test_the_fairness_window_is_one_second_of_the_callers_time() -> None:
    made, queue = recorder(capacity=1000)
    queue.records.extend([FetchRecord("/x", "http", 200, 0, 0.0, AT)] * 600)
    made.admits("10.0.0.2", 100.0)
    assert [made.admits("10.0.0.1", 100.0) for _ in range(FAIR_SHARE_MIN + 1)][-1] is WAIT
    assert made.admits("10.0.0.1", 100.999) is WAIT  # the same second: still over its share
    assert made.admits("10.0.0.1", 101.0) is ADMIT  # a new second: counted afresh


def test_a_client_alone_is_not_held_back_until_nearly_full() -> None:
    made, queue = recorder(capacity=1000)
    queue.records.extend([FetchRecord("/x", "http", 200, 0, 0.0, AT)] * 600)
    assert {made.admits("10.0.0.1", 100.0) for _ in range(1000)} == {ADMIT}  # nobody to be fair to


def test_below_half_everyone_is_admitted_and_past_98_percent_nobody() -> None:
    made, queue = recorder(capacity=1000)
    assert all(made.admits("10.0.0.1", 100.0) is ADMIT for _ in range(5000))
    queue.records.extend([FetchRecord("/x", "http", 200, 0, 0.0, AT)] * 980)
    assert made.admits("10.0.0.2", 100.0) is BUSY
    assert isinstance(made.admits("10.0.0.2", 100.0), Admission)


def test_a_phone_arriving_after_a_lone_flood_filled_the_queue_is_still_answered() -> None:
    """The flood was alone while it filled the queue, so all of it was its fair share; the
    phones that come after it must not be shut out (the admin trial: 148 of 148 were 503)."""
    made, queue = recorder(capacity=1000)
    queue.records.extend([FetchRecord("/x", "http", 200, 0, 0.0, AT)] * 930)  # 93 % full
    flood = [made.admits("10.0.0.1", 100.0) for _ in range(500)]
    assert flood.count(ADMIT) == QUIET_SHARE
    assert set(flood[QUIET_SHARE:]) == {WAIT}  # held back, making no records
    assert [made.admits("10.0.0.2", 100.0) for _ in range(11)] == [ADMIT] * 11  # a booting phone


def _content(kind: ContentKind, license_id: int | None) -> Content:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    return Content(kind, "x-license.cfg", 452, '"e"', at, "ab" * 32, b"x", None, license_id)


@pytest.mark.parametrize(
    ("status", "content", "mac", "expected"),
    [
        (200, _content(ContentKind.SITE_LICENSE, 7), "0004f2a1b2c3", True),
        (206, _content(ContentKind.PHONE_LICENSE, 8), "0004f2a1b2c3", True),
        (304, _content(ContentKind.SITE_LICENSE, 7), "0004f2a1b2c3", True),
        (200, _content(ContentKind.SITE_LICENSE, 7), None, False),  # names no phone
        (404, None, "0004f2a1b2c3", False),
        (503, _content(ContentKind.SITE_LICENSE, 7), "0004f2a1b2c3", False),
        (200, _content(ContentKind.FILE, None), "0004f2a1b2c3", False),  # a tree file
    ],
)
def test_only_a_posted_license_answered_to_a_known_phone_confirms_a_delivery(
    status: int, content: Content | None, mac: str | None, expected: bool
) -> None:
    assert confirms(status, content, mac) is expected

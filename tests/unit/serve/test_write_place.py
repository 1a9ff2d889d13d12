"""Where small uploads are written: on the event loop until it waits in them for more than a
share of a second, then on worker threads for a spell (serve/http/putting.py, docs/serve.md
"Workers")."""

from __future__ import annotations

import time

from fleetkey.serve.http.putting import (
    INLINE_UPLOAD_BYTES,
    THREADS_FOR_S,
    WAITED_SHARE,
    WritePlace,
    thread_usage,
)

WRITE = 0.00005  # a 2 KiB log written on tmpfs: CPU, no waiting


def test_writes_that_only_use_the_cpu_stay_on_the_loop_however_many() -> None:
    place = WritePlace()
    now = 100.0
    for _ in range(30_000):  # 30,000 uploads in 3 s, 1.5 s of the loop's CPU
        now += 0.0001
        place.took(WRITE, WRITE, False, now)
    assert place.inline(2048, now)
    assert place.slow == 0


def test_a_large_upload_is_never_written_on_the_loop() -> None:
    place = WritePlace()
    assert place.inline(INLINE_UPLOAD_BYTES, 0.0)
    assert not place.inline(INLINE_UPLOAD_BYTES + 1, 0.0)


def test_waiting_over_the_share_of_a_second_sends_uploads_to_threads_then_back() -> None:
    place = WritePlace()
    place.took(WRITE, WRITE, False, 10.0)  # the first write opens the window
    waits = 0.006  # renames waiting for a synchronous discard
    now = 10.0
    while now < 11.0:
        now += 0.1
        place.took(waits + WRITE, WRITE, True, now)  # 10 x 6 ms = 60 ms waited in a second
    assert place.slow == 1
    assert not place.inline(2048, now)
    assert not place.inline(2048, now + THREADS_FOR_S - 0.001)
    assert place.inline(2048, now + THREADS_FOR_S)  # one is tried on the loop again


def test_waiting_under_the_share_keeps_uploads_on_the_loop() -> None:
    place = WritePlace()
    place.took(WRITE, WRITE, False, 10.0)
    place.took(WAITED_SHARE * 0.9 + WRITE, WRITE, True, 10.5)
    place.took(WRITE, WRITE, False, 11.0)  # the window closes: 0.9 of the share waited
    assert place.inline(2048, 11.0)
    assert place.slow == 0


def test_one_long_wait_is_judged_when_its_second_is_over() -> None:
    place = WritePlace()
    place.took(WRITE, WRITE, False, 10.0)
    place.took(0.5, WRITE, True, 10.6)  # a disk that stalled half a second
    assert place.inline(2048, 10.6)  # the window has not closed yet
    place.took(WRITE, WRITE, False, 11.0)
    assert not place.inline(2048, 11.0)
    assert place.slow == 1


def test_a_thread_preempted_by_others_is_not_waiting_for_the_disk() -> None:
    """A busy machine makes writes slow without the thread giving up the CPU: threads would
    only add their hand-off's CPU there."""
    place = WritePlace()
    place.took(WRITE, WRITE, False, 10.0)
    place.took(0.5, WRITE, False, 10.6)  # half a second runnable, not running
    place.took(WRITE, WRITE, False, 11.0)
    assert place.inline(2048, 11.0)
    assert place.slow == 0


def test_thread_usage_counts_a_sleep_as_a_voluntary_switch() -> None:
    _, switches = thread_usage()
    time.sleep(0.01)  # the thread gives up the CPU, as in a wait for the device
    _, after = thread_usage()
    assert after > switches

"""Where small uploads are written: on the event loop until one keeps it waiting, then on worker
threads for a spell (serve/http/putting.py, docs/serve.md "Workers")."""

from __future__ import annotations

from fleetkey.serve.http.putting import (
    INLINE_UPLOAD_BYTES,
    SLOW_WRITE_S,
    THREADS_FOR_S,
    WritePlace,
)


def test_small_uploads_are_written_on_the_loop_while_writes_are_quick() -> None:
    place = WritePlace()
    assert place.inline(2048, 100.0)
    place.took(100.0, 100.0 + SLOW_WRITE_S / 2)
    assert place.inline(2048, 100.01)
    assert place.slow == 0


def test_a_large_upload_is_never_written_on_the_loop() -> None:
    place = WritePlace()
    assert place.inline(INLINE_UPLOAD_BYTES, 0.0)
    assert not place.inline(INLINE_UPLOAD_BYTES + 1, 0.0)


def test_a_slow_write_sends_small_uploads_to_threads_for_the_spell_then_the_loop_again() -> None:
    place = WritePlace()
    ended = 50.0 + SLOW_WRITE_S * 3  # a rename that waited for a synchronous discard
    place.took(50.0, ended)
    assert place.slow == 1
    assert not place.inline(2048, ended)
    assert not place.inline(2048, ended + THREADS_FOR_S - 0.001)
    assert place.inline(2048, ended + THREADS_FOR_S)  # one is tried on the loop again


def test_a_write_of_exactly_the_limit_is_not_slow() -> None:
    place = WritePlace()
    place.took(0.0, SLOW_WRITE_S)
    assert place.inline(2048, SLOW_WRITE_S)
    assert place.slow == 0

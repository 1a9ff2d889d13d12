"""What an emulated phone makes of a server's answers without a socket: Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetkey.emulate.transport import MAX_RETRY_AFTER_S, RETRY_AFTER_S, retry_after_s

NOW = datetime(2027, 1, 5, 2, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Tue, 05 Jan 2027 02:00:30 GMT", 30.0),  # an HTTP-date (RFC 9110 §5.6.7)
        ("Tuesday, 05-Jan-27 02:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Tue Jan  5 02:00:10 2027", RETRY_AFTER_S),  # asctime has no zone: not trusted
        ("Mon, 04 Jan 2027 23:00:00 GMT", 0.0),  # already past: at once
        ("Fri, 05 Feb 2027 02:00:00 GMT", MAX_RETRY_AFTER_S),
        ("99999999", MAX_RETRY_AFTER_S),
        (None, RETRY_AFTER_S),
        ("", RETRY_AFTER_S),
        ("soon", RETRY_AFTER_S),
        ("-5", RETRY_AFTER_S),
        ("1.5", RETRY_AFTER_S),
    ],
)
def test_retry_after_is_seconds_or_an_http_date_and_anything_else_the_default(
    value: str | None, seconds: float
) -> None:
    """An HTTP-date ended the phone with a ValueError (a review)."""
    assert retry_after_s(value, NOW) == seconds

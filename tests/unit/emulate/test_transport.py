"""What an emulated phone makes of a server's answers without a socket: Retry-After, and
busy answers in words (FTP's, TFTP's)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetkey.emulate.ftp import reply_for
from fleetkey.emulate.transport import (
    MAX_RETRY_AFTER_S,
    RETRY_AFTER_S,
    Sink,
    busy,
    retry_after_s,
)
from fleetkey.errors import AnswerTooLargeError, EmulationError

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


@pytest.mark.parametrize(
    ("answer", "status", "wait_s"),
    [
        ("421 Too many connections; retry in 5 seconds.", 503, 5.0),
        ("421 Too many logins in progress; retry in 12 seconds.", 503, 12.0),
        # fleetkey serve refusing a RETR when busy: pyftpdlib says 550 for any refusal
        ("550 server busy: retry in 7 seconds.", 503, 7.0),
        ("421 Service not available, closing control connection.", 503, RETRY_AFTER_S),
        ("450 Requested file action not taken.", 503, RETRY_AFTER_S),
        ("550 No such file or directory.", 404, None),
        ("550 Permission denied.", 403, None),
        ("552 Requested file action aborted. Exceeded storage allocation.", 413, None),
    ],
)
def test_an_ftp_refusal_is_read_with_the_delay_the_server_asked(
    answer: str, status: int, wait_s: float | None
) -> None:
    """The emulator said 5 s for every busy FTP answer (1 s over TFTP), and took fleetkey
    serve's busy "550 … retry in 5 seconds." for a refusal: the phone gave up the file."""
    reply = reply_for(answer)
    assert reply.status == status
    if wait_s is not None:
        assert retry_after_s(reply.headers.get("retry-after"), NOW) == wait_s


@pytest.mark.parametrize(
    ("words", "wait_s"),
    [("server busy: retry later", RETRY_AFTER_S), ("busy, retry in 3 seconds", 3.0)],
)
def test_a_busy_answer_in_words_waits_what_it_says_else_the_one_default(
    words: str, wait_s: float
) -> None:
    reply = busy(words)
    assert reply.status == 503
    assert retry_after_s(reply.headers.get("retry-after"), NOW) == wait_s


def test_a_kept_answer_over_the_cap_is_refused_naming_its_path_and_the_cap() -> None:
    sink = Sink(True, "/big.cfg", cap=10)
    sink.add(b"0123456789")
    with pytest.raises(AnswerTooLargeError) as raised:
        sink.add(b"x")
    assert str(raised.value) == "/big.cfg: the answer is over 10 bytes, the most the emulator keeps"
    assert isinstance(raised.value, EmulationError)  # what an exchange records as a failure


def test_an_answer_not_kept_has_no_cap() -> None:
    sink = Sink(False, "/sip.ld", cap=10)
    sink.add(b"x" * 100)
    assert (sink.reply(200).size, sink.reply(200).body) == (100, b"")

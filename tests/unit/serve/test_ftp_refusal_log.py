"""The 421 log says every refusal: the first at once, each later window's count when the window
ends (not when the next refusal comes), and what is left when the server stops."""

from __future__ import annotations

import logging
import re
import time

import pytest

from fleetkey.serve.ftp.refusing import REFUSALS_LOG_EVERY_S, Refusals


def said(caplog: pytest.LogCaptureFixture) -> list[int]:
    found = [re.search(r"FTP: ([\d,]+) connection", r.getMessage()) for r in caplog.records]
    return [int(m[1].replace(",", "")) for m in found if m]


def test_a_windows_count_is_said_when_the_window_ends_without_a_later_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    refusals = Refusals()
    for _ in range(36):
        refusals.refused("Too many logins in progress", "127.0.0.5")
    assert said(caplog) == [1]  # the first at once, the 35 after it wait for the window's end
    refusals.say_due(time.monotonic())  # within the window: nothing yet
    assert said(caplog) == [1]
    refusals.say_due(time.monotonic() + REFUSALS_LOG_EVERY_S)
    assert said(caplog) == [1, 35]
    assert (
        caplog.records[-1]
        .getMessage()
        .endswith("(latest: too many logins in progress, from 127.0.0.5)")
    )
    refusals.say_due(time.monotonic() + 3 * REFUSALS_LOG_EVERY_S)  # nothing new: no line
    assert said(caplog) == [1, 35]


def test_the_count_left_is_said_when_the_server_stops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    refusals = Refusals()
    for _ in range(1_500):
        refusals.refused("Too many connections", "127.0.0.1")
    refusals.flush()
    refusals.flush()  # said once
    assert said(caplog) == [1, 1_499]
    assert "FTP: 1,499 connection(s)" in caplog.records[-1].getMessage()

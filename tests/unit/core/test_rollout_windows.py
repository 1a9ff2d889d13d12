"""A maintenance window is one value: parsed once from ``HH:MM-HH:MM``, whole minutes, not empty."""

from __future__ import annotations

from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.core.rollout.windows import Window
from fleetkey.errors import InputError


class TestParse:
    @pytest.mark.parametrize(
        ("text", "start", "end", "hours"),
        [
            ("22:00-05:00", time(22), time(5), 7.0),
            ("01:00-04:30", time(1), time(4, 30), 3.5),
            (" 23:59-00:00 ", time(23, 59), time(0), 1 / 60),
        ],
    )
    def test_operator_text_becomes_a_window(
        self, text: str, start: time, end: time, hours: float
    ) -> None:
        window = Window.parse(text)
        assert (window.start, window.end) == (start, end)
        assert window.hours() == pytest.approx(hours)

    @pytest.mark.parametrize(
        "text",
        [
            "25:00-05:00",
            "05:00-05:00",
            "5:00-06:00",
            "22:00 - 05:00",
            "22:00",
            "22:00-05:00:00",
            "",
        ],
    )
    def test_what_is_not_hh_mm_hh_mm_is_refused(self, text: str) -> None:
        with pytest.raises(InputError, match="is not HH:MM-HH:MM"):
            Window.parse(text)

    @given(st.times(), st.times())
    def test_its_text_reads_back_as_the_same_window(self, start: time, end: time) -> None:
        start, end = start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
        if start != end:
            window = Window(start, end)
            assert Window.parse(str(window)) == window


class TestValue:
    def test_an_empty_window_is_refused(self) -> None:
        with pytest.raises(InputError, match="is empty"):
            Window(time(5), time(5))

    def test_a_window_is_whole_minutes(self) -> None:
        with pytest.raises(InputError, match="whole local minutes"):
            Window(time(5, 0, 30), time(6))

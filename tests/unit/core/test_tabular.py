"""Operator CSV input: whatever the csv module cannot read is an input error naming its line."""

from __future__ import annotations

import pytest

from fleetkey.core.tabular import read_rows
from fleetkey.errors import InputError


def read(text: str) -> list[dict[str, str]]:
    return read_rows(
        text.encode(), source="p.csv", required=("mac", "model"), parse=dict, key=lambda r: r["mac"]
    )


def test_a_field_over_the_csv_limit_is_an_input_error_naming_its_line() -> None:
    text = "mac,model\n0004f2000001,VVX\n0004f2000002," + "x" * 200_000 + "\n"
    with pytest.raises(InputError) as caught:
        read(text)
    assert caught.value.message == (
        "p.csv: line 3 cannot be read as CSV: field larger than field limit (131072)"
    )


def test_an_oversized_header_is_an_input_error_too() -> None:
    with pytest.raises(InputError, match=r"p\.csv: line 1 cannot be read as CSV"):
        read("x" * 200_000 + "\n")


def test_rows_read_as_before() -> None:
    assert read("mac,model\n0004f2000001, VVX \n") == [{"mac": "0004f2000001", "model": "VVX"}]

"""`fleetkey emulate` refuses bad options with one clear line, before any phone starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetkey.cli.emulate import split_master

from tests.helpers import Fleetkey


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--server", "sftp://127.0.0.1:22"),
            "is not http://HOST:PORT[/prefix], tftp://HOST:PORT or ftp://",
        ),
        (("--server", "http://"), "is not http://HOST:PORT"),
        (("--clock-start", "yesterday"), "--clock-start 'yesterday' is not an ISO date-time"),
        (("--timezone", "Mars/Olympus"), "time zone 'Mars/Olympus' is not an IANA zone"),
        (("--license-time", "2am"), "--license-time '2am' is not HH:MM"),
        (("--speed", "0"), "virtual clock speed 0.0 must be above 0 (--speed)"),
    ],
)
def test_bad_emulate_options_are_refused(
    initialized: Path, fleetkey: Fleetkey, args: tuple[str, ...], message: str
) -> None:
    base = ("emulate", "--server", "http://127.0.0.1:1", "--phones", "1", "--sip-port", "0")
    result = fleetkey(*base, *args, code=1)
    assert message in result.stderr


def test_a_macs_file_with_a_bad_line_names_it(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    macs = tmp_path / "macs.txt"
    macs.write_text("mac\n0004f2000001\nnot-a-mac\n")
    result = fleetkey(
        "emulate", "--server", "http://127.0.0.1:1", "--macs", str(macs), "--phones", "2",
        "--sip-port", "0", code=1,
    )  # fmt: skip
    assert f"{macs} line 3:" in result.stderr


def test_too_few_macs_for_the_phones_asked(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    macs = tmp_path / "macs.txt"
    macs.write_text("0004f2000001\n")
    result = fleetkey(
        "emulate", "--server", "http://127.0.0.1:1", "--macs", str(macs), "--phones", "3",
        "--sip-port", "0", code=1,
    )  # fmt: skip
    assert "has 1 MACs, --phones asks for 3" in result.stderr


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("", ("", None)),
        ("/100000000001", ("/100000000001", None)),
        ("/100000000001/", ("/100000000001/", None)),
        ("/lab.cfg", ("", "lab.cfg")),
        ("/100000000001/lab.CFG", ("/100000000001", "lab.CFG")),
        ("/a.cfg", ("", "a.cfg")),
        ("/.cfg", ("/.cfg", None)),  # a master's name has at least 5 characters (domain.md §4)
        ("/dir.cfg/x", ("/dir.cfg/x", None)),
    ],
)
def test_a_server_url_may_name_the_master_configuration(
    path: str, split: tuple[str, str | None]
) -> None:
    assert split_master(path) == split

"""A run checks the open-file limit itself, before anything opens, counting what each boot
holds: a program calling ``emulate.runner.run`` (not only the CLI) gets the clear error, and
an FTP boot's two connections (control and data) are counted.

Each case runs in a child process whose hard limit is lowered (a lowered hard limit cannot be
raised again by the process that lowered it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetkey.emulate.runner import RunOptions
from fleetkey.emulate.sockets import descriptors_needed, phones_that_fit

CHILD = """
import resource, sys
from datetime import UTC, datetime
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.signing import TrustedKeys
from fleetkey.emulate import runner
from fleetkey.errors import FleetkeyError
resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
phones = [PhoneConfig(f"0004f2{i:06x}") for i in range(100)]
options = runner.RunOptions(start=datetime(2027, 1, 1, tzinfo=UTC), concurrency=30,
                            duration_s=0.1, sip_port=None if sys.argv[2] == "no-sip" else 5060)
try:
    runner.run(runner.ServerUrl.parse(sys.argv[1]), phones, TrustedKeys(), options)
except FleetkeyError as exc:
    print(type(exc).__name__, exc)
"""


def run_child(server: str, sip: str = "sip") -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server, sip],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_ftp_boots_count_two_open_files_each() -> None:
    assert descriptors_needed(100, 30, sip=True, per_boot=2) == 100 + 60 + 64
    assert phones_that_fit(200, 30, per_boot=2) == 76
    assert phones_that_fit(200, 100, per_boot=2) == 45  # fewer phones than boots at once
    assert (
        descriptors_needed(76, 30, sip=True, per_boot=2)
        <= 200
        < descriptors_needed(77, 30, sip=True, per_boot=2)
    )


def test_a_run_over_ftp_that_the_open_file_limit_cannot_hold_is_refused_before_it_starts() -> None:
    """100 phones, 30 boots at once: 194 open files over HTTP, 224 over FTP; the limit is
    200. Refused by the runner, naming the limit and what fits, before it looks for a server
    (nothing listens at port 1)."""
    said = run_child("ftp://127.0.0.1:1")
    assert said == (
        "InputError 100 phones need about 224 open files (a SIP socket each, 30 boots in "
        "progress of 2 connections each and 64 more), but the open-file limit is 200: 76 "
        "phones fit"
    )


@pytest.mark.parametrize(
    ("server", "sip"),
    [("http://127.0.0.1:1", "sip"), ("ftp://127.0.0.1:1", "no-sip")],
    ids=["http, 194 open files", "ftp without SIP, 124 open files"],
)
def test_a_run_that_fits_the_limit_goes_on_to_look_for_its_server(server: str, sip: str) -> None:
    said = run_child(server, sip)
    assert said.startswith("EmulationError nothing listens at ")


def test_run_options_are_given_by_name() -> None:
    """Eight options in a row were easy to give in the wrong order (two are floats of time)."""
    with pytest.raises(TypeError):
        RunOptions(1.0)  # type: ignore[misc]

"""An option the CLI refuses keeps the lower error it was translated from as its cause
(style.md: ``raise … from exc``), so ``--debug`` shows what went wrong underneath."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from fleetkey.cli.alerts import _stages
from fleetkey.cli.fetches import _moment
from fleetkey.cli.rollout import _capacity

from tests.helpers import Fleetkey

DIRECT_CAUSE = "The above exception was the direct cause of the following exception"
SERVER = ("--server", "http://127.0.0.1:1", "--sip-port", "0")


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (("serve", "--ftp", "--ftp-masquerade", "nonsense"), "ipaddress.AddressValueError"),
        (("serve", "--ftp", "--ftp-shared-login", "nocolon"), "ValueError"),
        (("emulate", *SERVER, "--clock-start", "yesterday"), "ValueError"),
        (("verify", "site.cfg", "--on", "someday"), "ValueError"),
    ],
)
def test_debug_shows_the_lower_error_a_refused_option_came_from(
    initialized: Path, fleetkey: Fleetkey, args: tuple[str, ...], cause: str
) -> None:
    result = fleetkey("--debug", *args, code=1)
    underneath, said, _ = result.stderr.partition(DIRECT_CAUSE)
    assert said
    assert f"\n{cause}: " in underneath
    assert "\nerror: " in result.stderr


def test_debug_shows_the_bad_mac_under_the_line_of_the_macs_file_it_is_on(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    macs = tmp_path / "macs.txt"
    macs.write_text("0004f2000001\nnot-a-mac\n")
    result = fleetkey("--debug", "emulate", *SERVER, "--macs", str(macs), code=1)
    assert DIRECT_CAUSE in result.stderr
    assert f"error: {macs} line 2: " in result.stderr


@pytest.mark.parametrize(
    "parse",
    [
        lambda: _capacity("lots"),
        lambda: _stages("30,soon"),
        lambda: _moment("last tuesday", datetime(2026, 5, 1, tzinfo=UTC), "--since"),
    ],
    ids=["rollout --capacity", "alerts --stages", "fetches --since"],
)
def test_a_refused_option_value_keeps_its_parse_error_as_cause(
    parse: Callable[[], object],
) -> None:
    with pytest.raises(click.BadParameter) as refused:
        parse()
    assert isinstance(refused.value.__cause__, ValueError)

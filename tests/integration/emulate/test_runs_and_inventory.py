"""Emulator runs one after the other against one `fleetkey serve`, with the inventory's phones
among them (an administrator's trial): each run's phones get their site license, the server
can tell emulated fetches from real ones, and no emulated boot rewrites a real phone's model or
firmware in the inventory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving import (
    MAC,
    SITE,
    SP_MAC,
    RunningServer,
    fleet_env,
    make_fleet,
    records,
    start_server,
    wait_for,
)

PHONES_CSV = (
    f"mac,site,model,firmware\n{MAC},{SITE},VVX_500,6.3.1.8427\n{SP_MAC},{SITE},SPIP_550,\n"
)
STRANGERS = ["0004f2e00001", "0004f2e00002"]  # not in the inventory: the tree's default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "runs")
    make_fleet(data, env, PHONES_CSV)
    running = start_server(data, env)
    yield running
    running.stop()


def emulate(server: RunningServer, name: str, *args: str) -> list[dict[str, Any]]:
    """One run until every phone booted once; its phones from the report."""
    report = server.data.parent / f"{name}.json"
    server.cli("emulate", "--server", server.url, "--sip-port", "0", "--until-booted",
               "--duration", "60", "--report", str(report), "--json", *args)  # fmt: skip
    phones: list[dict[str, Any]] = json.loads(report.read_text())["phones"]
    return phones


def inventory(server: RunningServer) -> dict[str, tuple[str, str | None, str | None]]:
    phones = json.loads(server.cli("phones", "list", "--json"))
    return {p["mac"]: (p["model"], p["firmware"], p["last_seen_at"]) for p in phones}


def test_consecutive_runs_get_their_site_license_and_leave_the_inventory_as_it_was(
    server: RunningServer,
) -> None:
    macs = server.data.parent / "macs.txt"
    macs.write_text("\n".join([MAC, *STRANGERS]) + "\n")
    before = inventory(server)
    first = emulate(server, "first", "--macs", str(macs), "--models", "SPIP_670:100%")
    second = emulate(server, "second", "--phones", "3")  # other MACs, seconds later
    for run in (first, second):
        # the addresses of the second run named other MACs within the server's 120 s: its
        # phones were ambiguous and got no site license (exit 0)
        assert [p["installed"]["site"] is not None for p in run] == [True] * 3, run
    assert not {p["address"] for p in first} & {p["address"] for p in second}
    assert all(p["mac"].startswith("02") for p in second)  # never a vendor's MAC

    wait_for(lambda: inventory(server)[MAC][2] is not None, 20)  # the sightings were written
    after = inventory(server)
    assert after[MAC][:2] == before[MAC][:2] == ("VVX_500", "6.3.1.8427")  # not SPIP_670's
    assert after[SP_MAC] == before[SP_MAC]  # not emulated: not seen
    agents = {str(r["user_agent"]) for r in records(server, MAC)}
    assert agents
    assert all(a.endswith(" Emulated/fleetkey") for a in agents), agents


def test_the_command_says_its_boots_count_as_the_phones_fetches(server: RunningServer) -> None:
    shown = server.cli("emulate", "--server", server.url, "--sip-port", "0", "--phones", "1",
                       "--until-booted", "--duration", "60")  # fmt: skip
    assert "Emulated/fleetkey" in " ".join(shown.split())
    assert "count as the fetches of those MACs" in " ".join(shown.split())

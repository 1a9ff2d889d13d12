"""The dashboard tests' fleet (``tests/browsing.py``) is seeded in this process, no `fleetkey`
process started for it, and holds what the tests read: 3 sites, 2,000 phones, a site license
each, a phone key, a successor of Lab's with rollout 1 planned, the admin token."""

from __future__ import annotations

import json
import subprocess
from typing import NoReturn

import pytest

from tests.browsing import SITES, seed_fleet
from tests.serving import fleet_env, fleetkey_in_process


def test_the_dashboard_fleet_is_seeded_in_process_with_every_part_the_tests_read(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"a process was started: {args[0]!r}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    data, env = fleet_env(tmp_path_factory, "seeded")
    token = seed_fleet(data, env, sip_port=5060)
    monkeypatch.undo()

    def read(*args: str) -> object:
        return json.loads(fleetkey_in_process(env, *args, "--json").stdout)

    assert len(token) >= 32
    sites = read("sites", "list")
    assert [s["serial"] for s in sites] == [serial for serial, *_ in SITES]  # type: ignore[index,union-attr]
    assert len(read("phones", "list")) == sum(phones for _, _, phones, _ in SITES)  # type: ignore[arg-type]
    licenses = read("licenses", "list")
    assert len(licenses) == len(SITES) + 2  # type: ignore[arg-type]  # a phone key, Lab's successor
    rollout = read("rollout", "list")
    assert [(r["id"], r["state"]) for r in rollout] == [(1, "planned")]  # type: ignore[union-attr,index]

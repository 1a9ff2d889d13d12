"""A real `fleetkey serve` on an ephemeral loopback port, with a fleet to serve (the helpers
these are made of are in ``tests/serving.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving import RunningServer, fleet_env, make_fleet, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "serve")
    make_fleet(data, env)
    running = start_server(data, env)
    yield running
    if running.process.poll() is None:
        running.stop()

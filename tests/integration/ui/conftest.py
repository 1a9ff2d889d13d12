"""A real `fleetkey serve` with a seeded store (3 sites, 2,000 phones, licenses, fetches, alerts,
a rollout to Kamailio), and Debian's Chromium driven by Playwright (the helpers are in
``tests/browsing.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browsing import CHROMIUM, Fleet, seed_fleet
from tests.helpers import Peer, start_kamailio
from tests.serving import fleet_env, start_server


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    started, process = start_kamailio(tmp_path_factory.mktemp("kamailio"), challenge=False)
    yield started
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, peer: Peer) -> Iterator[Fleet]:
    data, env = fleet_env(tmp_path_factory, "dashboard")
    token = seed_fleet(data, env, peer.port)
    server = start_server(data, env, "--http", "127.0.0.1:0", "--ui-session-seconds", "3600")
    seeded = Fleet(server, token, tmp_path_factory.mktemp("screenshots"))
    seeded.fetch_and_upload()
    yield seeded
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()

"""The dashboard in process (``tests.dashboard.Dashboard``): the admin API app with ``/ui``
installed, on an initialized data directory with a small fleet made through the CLI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.datadir import DataDir
from fleetkey.authority.tokens import create_token
from fleetkey.clock import FixedClock
from fleetkey.store.database import default_url
from fleetkey.store.store import Store
from fleetkey.ui.app import UiContext, install

from tests.dashboard import Dashboard
from tests.helpers import PASSPHRASE, Fleetkey, add_site_fleet, issue_site_license


@pytest.fixture(scope="session")
def dashboard_once(initialized_once: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard's fleet, made once for the session through the CLI: three phones, their
    site license (its issue costs a scrypt), a planned rollout and the alerts raised."""
    path = tmp_path_factory.mktemp("dashboard") / "data"
    shutil.copytree(initialized_once, path, symlinks=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETKEY_DATA", str(path))
        patch.setenv("FLEETKEY_KEY_PASSPHRASE", PASSPHRASE)
        fleetkey = Fleetkey()
        add_site_fleet(fleetkey, path, phones=3)
        issue_site_license(fleetkey, date.today() + timedelta(days=20))
        deadline = (date.today() + timedelta(days=10)).isoformat()
        fleetkey("rollout", "plan", "--license", "1", "--capacity", "5", "--boot-requests", "1",
                 "--slot", "5", "--deadline", deadline)  # fmt: skip
        fleetkey("alerts")
    return path


@pytest.fixture
def dashboard(data_dir: Path, dashboard_once: Path) -> Iterator[Dashboard]:
    """On a copy of the session's fleet (FLEETKEY_DATA names it): each test changes its own."""
    shutil.copytree(dashboard_once, data_dir, symlinks=True)
    data = DataDir(data_dir)
    token = create_token(data.api_token)
    store = Store(default_url(data.root))
    clock = FixedClock(datetime.now(UTC))
    app = create_app(ApiContext(data, store, clock, None, dict, bytes))
    install(app, UiContext(data, store, clock, session_s=3600))
    yield Dashboard(app, token, store, data, clock)
    store.close()

"""The admin API in process (``tests.helpers.Api``): an app on an initialized data directory,
its store, and a caller that sends the bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.datadir import DataDir
from fleetkey.authority.tokens import create_token
from fleetkey.clock import FixedClock
from fleetkey.store.database import default_url
from fleetkey.store.store import Store

from tests.helpers import Api


@pytest.fixture
def api(initialized: Path) -> Iterator[Api]:
    data = DataDir(initialized)
    token = create_token(data.api_token)
    store = Store(default_url(data.root))
    context = ApiContext(data, store, FixedClock(), None, dict, bytes)
    yield Api(create_app(context), token, store, data)
    store.close()

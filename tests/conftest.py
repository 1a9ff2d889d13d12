"""Shared fixtures: a signing key, a data directory with its environment, the CLI runner."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetkey.store.store import Store

from tests.helpers import PASSPHRASE, Build, Fleetkey
from tests.pg import PostgresServer, reachable  # noqa: F401  # a fixture, shared


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory, named by FLEETKEY_DATA, with the passphrase set."""
    path = tmp_path / "data"
    monkeypatch.setenv("FLEETKEY_DATA", str(path))
    monkeypatch.setenv("FLEETKEY_KEY_PASSPHRASE", PASSPHRASE)
    return path


@pytest.fixture
def fleetkey() -> Fleetkey:
    return Fleetkey()


@pytest.fixture(scope="session")
def initialized_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``fleetkey init`` for the session: its key generation and scrypt (~0.5 s of CPU)
    and its migrations are paid once, not by each of the ~300 tests that start from it."""
    path = tmp_path_factory.mktemp("initialized") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETKEY_DATA", str(path))
        patch.setenv("FLEETKEY_KEY_PASSPHRASE", PASSPHRASE)
        Fleetkey()("init")
    return path


@pytest.fixture
def initialized(data_dir: Path, initialized_once: Path) -> Path:
    """A data directory after ``fleetkey init``: a copy of the session's (modes kept, so the
    private key stays 0600); each test changes its own copy only."""
    shutil.copytree(initialized_once, data_dir, symlinks=True)
    return data_dir


@pytest.fixture(scope="session")
def built_once(
    tmp_path_factory: pytest.TempPathFactory, initialized_once: Path
) -> Callable[[Build], Path]:
    """``built_once(build)``: a data directory after ``fleetkey init`` and ``build`` (its CLI
    commands run in this process), made once a session for each ``build``; a test copies it
    (``shutil.copytree(..., symlinks=True)``, as ``initialized`` does) and changes its own
    copy only. A fleet's commands and key unwrapping (~2 s on a busy 2-core box) were paid
    by each of the tests that start from it, most of them refusals that read it once."""
    made: dict[Build, Path] = {}

    def once(build: Build) -> Path:
        if build not in made:
            path = tmp_path_factory.mktemp("built") / "data"
            shutil.copytree(initialized_once, path, symlinks=True)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("FLEETKEY_DATA", str(path))
                patch.setenv("FLEETKEY_KEY_PASSPHRASE", PASSPHRASE)
                build(Fleetkey(), path)
            made[build] = path
        return made[build]

    return once


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (never skipped: CI installs the server)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend: SQLite in a file, a fresh PostgreSQL database
    (dropped after the test: ~8 MB each, some 700 of them in a run)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleetkey.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store at the newest schema, on each backend."""
    opened = Store(store_url)
    opened.upgrade()
    yield opened
    opened.close()

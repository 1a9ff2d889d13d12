"""Shared fixtures: a signing key, a data directory with its environment, the CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetkey.cli.main import cli
from fleetkey.store.store import Store

from tests.pg import PostgresServer

INTEROP = Path(__file__).resolve().parents[1].parent / "shared" / "interop"
VENDOR_FILE = INTEROP / "vendor-site-license.cfg"
PASSPHRASE = "correct horse battery staple"  # noqa: S105  # the tests' own throwaway passphrase


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory, named by FLEETKEY_DATA, with the passphrase set."""
    path = tmp_path / "data"
    monkeypatch.setenv("FLEETKEY_DATA", str(path))
    monkeypatch.setenv("FLEETKEY_KEY_PASSPHRASE", PASSPHRASE)
    return path


class Fleetkey:
    """Runs ``fleetkey`` commands in-process; stdout and stderr kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Result:
        result = self.runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == code, (
            f"fleetkey {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result


@pytest.fixture
def fleetkey() -> Fleetkey:
    return Fleetkey()


@pytest.fixture
def initialized(data_dir: Path, fleetkey: Fleetkey) -> Path:
    """A data directory after ``fleetkey init``."""
    fleetkey("init")
    return data_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (never skipped: CI installs the server)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: SQLite in a file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleetkey.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store at the newest schema, on each backend."""
    opened = Store(store_url)
    opened.upgrade()
    yield opened
    opened.close()


SITE_SERIAL = "100000000001"


def add_site_fleet(
    fleetkey: Fleetkey,
    data: Path,
    *,
    phones: int,
    tz: str = "Europe/Berlin",
    window: str = "22:00-05:00",
) -> None:
    """Through the CLI: site 100000000001 and ``phones`` VVX 500s (MACs 0004f2000000, …)."""
    fleetkey("sites", "add", SITE_SERIAL, "--name", "HQ", "--tz", tz, "--window", window)
    csv = data.parent / "phones.csv"
    rows = "".join(f"0004f2{i:06x},{SITE_SERIAL},VVX_500\n" for i in range(phones))
    csv.write_text("mac,site,model\n" + rows)
    fleetkey("phones", "import", str(csv))


def issue_site_license(fleetkey: Fleetkey, expires: date) -> None:
    """Through the CLI: a corporate-directory site license for 100000000001, posted."""
    fleetkey(
        "issue",
        "site",
        "--serial",
        SITE_SERIAL,
        "--features",
        "corporate-directory",
        "--expires",
        expires.isoformat(),
    )

"""Opening the database: a SQLite file and its -wal and -shm are created owner-only (0600).

The database holds the phones' Digest HA1, as good as their passwords for HTTP Digest.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from fleetkey.errors import DatabaseError
from fleetkey.store.database import sqlite_file
from fleetkey.store.store import Store


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual 022, under which SQLite alone would create its files 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestSqliteFiles:
    def test_the_database_and_its_wal_and_shm_are_owner_only(self, tmp_path: Path) -> None:
        store = Store(f"sqlite:///{tmp_path / 'fleetkey.db'}")
        try:
            store.upgrade()
            with store.engine.connect() as connection:  # WAL and shared memory exist while open
                connection.execute(text("SELECT 1"))
                found = {path.name: mode(path) for path in tmp_path.iterdir()}
        finally:
            store.close()
        assert found == {"fleetkey.db": 0o600, "fleetkey.db-wal": 0o600, "fleetkey.db-shm": 0o600}

    def test_an_existing_database_file_is_opened_as_it_is(self, tmp_path: Path) -> None:
        path = tmp_path / "fleetkey.db"
        Store(f"sqlite:///{path}").upgrade()
        path.chmod(0o640)  # the operator's choice for a file outside the data directory
        store = Store(f"sqlite:///{path}")
        assert store.revision() is not None
        store.close()
        assert mode(path) == 0o640

    def test_a_missing_directory_is_left_for_sqlite_to_report(self, tmp_path: Path) -> None:
        store = Store(f"sqlite:///{tmp_path / 'gone' / 'fleetkey.db'}")
        with pytest.raises(DatabaseError, match="unable to open database file"):
            store.revision()
        assert not (tmp_path / "gone").exists()

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("sqlite:////srv/fleet/fleetkey.db", Path("/srv/fleet/fleetkey.db")),
            ("sqlite://", None),
            ("sqlite:///:memory:", None),
            ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", None),
        ],
    )
    def test_which_urls_name_a_file(self, url: str, expected: Path | None) -> None:
        assert sqlite_file(url) == expected

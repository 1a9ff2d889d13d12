"""Migrations: from empty and from every earlier revision; models and migrations agree."""

from __future__ import annotations

import pytest

from fleetkey.store import migrate
from fleetkey.store.database import DatabaseError
from fleetkey.store.store import Store


def test_upgrade_from_empty_reaches_head_and_matches_the_models(store_url: str) -> None:
    store = Store(store_url)
    assert store.revision() is None
    assert store.upgrade() == (None, migrate.head_revision())
    assert store.revision() == migrate.head_revision()
    assert migrate.schema_drift(store.engine) == []
    store.close()


@pytest.mark.parametrize("start", migrate.revisions())
def test_upgrade_from_every_revision_reaches_head(store_url: str, start: str) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, start)
    assert store.revision() == start
    store.upgrade()
    assert store.revision() == migrate.head_revision()
    assert migrate.schema_drift(store.engine) == []
    store.close()


def test_upgrade_twice_is_a_no_op(store: Store) -> None:
    head = migrate.head_revision()
    assert store.upgrade() == (head, head)


def test_empty_database_is_refused_until_upgraded(store_url: str) -> None:
    store = Store(store_url)
    with pytest.raises(DatabaseError, match="is at schema none, fleetkey needs") as caught:
        store.require_current()
    assert caught.value.hint is not None
    assert "fleetkey db upgrade" in caught.value.hint
    store.close()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u@h/db", "mysql is not supported"),
        ("not a url", "is not valid"),
    ],
)
def test_unsupported_urls_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(DatabaseError, match=fragment):
        Store(url)


def test_unreachable_postgresql_is_a_clear_error() -> None:
    store = Store("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(
        DatabaseError, match=r"cannot open postgresql\+psycopg://nobody@127\.0\.0\.1:1"
    ):
        store.revision()
    store.close()

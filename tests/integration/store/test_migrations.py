"""Migrations: from empty and from every earlier revision; models and migrations agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fleetkey.errors import DatabaseError
from fleetkey.store import fetches, historytables, migrate, phonestate, statecheck
from fleetkey.store.schema import epoch_micros
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


def test_the_head_read_from_the_revision_files_is_alembics() -> None:
    # the schema check reads it without Alembic (start-up time); Alembic walks the scripts
    assert migrate.head_revision() == migrate.revisions()[-1]


def test_a_version_table_with_two_revisions_is_refused_by_name(store: Store) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    with pytest.raises(DatabaseError, match=r"records 2 schema revisions at once \("):
        store.revision()


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


_OLD_FETCH = (
    "INSERT INTO fetches (at, mac, path, protocol, method, status, bytes, duration_ms) "
    "VALUES (:at, :mac, '/x', 'http', 'GET', 200, 1, 0.5)"
)


def test_fetch_times_written_as_text_before_0004_read_back_the_same_after_it(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fleetkey.db'}")
    migrate.upgrade(store.engine, "0003")
    written = {  # SQLAlchemy's SQLite text, and the moment it means
        "2026-03-01 02:00:00.000000": datetime(2026, 3, 1, 2, 0, tzinfo=UTC),
        "2026-03-01 02:00:00.999999": datetime(2026, 3, 1, 2, 0, 0, 999999, tzinfo=UTC),
        "1999-12-31 23:59:59.5": datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        "2038-01-19 03:14:08": datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
    }
    with store.engine.begin() as connection:
        for n, text in enumerate(written):
            connection.execute(sa.text(_OLD_FETCH), {"at": text, "mac": f"0004f2{n:06x}"})
    store.upgrade()
    with store.transaction() as session:
        read = {r.mac: r.at for r in fetches.query(session, limit=None)}
        since = fetches.query(session, limit=None, since=datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    assert read == {f"0004f2{n:06x}": moment for n, moment in enumerate(written.values())}
    assert sorted(r.mac for r in since) == ["0004f2000000", "0004f2000001", "0004f2000003"]
    with store.engine.connect() as connection:
        kinds = connection.execute(sa.text("SELECT DISTINCT typeof(at) FROM fetches")).all()
    assert kinds == [("integer",)]
    store.close()


def test_downgrading_0004_writes_fetch_times_back_as_the_same_text(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fleetkey.db'}")
    migrate.upgrade(store.engine, "0003")
    texts = [
        "2026-03-01 02:00:00.000042",
        "1969-12-31 23:59:59.999999",
        "1970-01-01 00:00:00.000000",
    ]
    with store.engine.begin() as connection:
        for text in texts:
            connection.execute(sa.text(_OLD_FETCH), {"at": text, "mac": None})
    store.upgrade()
    migrate.downgrade(store.engine, "0003")
    with store.engine.connect() as connection:
        back = connection.execute(sa.text("SELECT at FROM fetches ORDER BY id")).scalars().all()
    assert back == texts
    store.close()


def test_0011_fills_the_per_phone_state_from_the_records_already_stored(store_url: str) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, "0010")
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    insert = sa.text(
        "INSERT INTO fetches (at, mac, path, protocol, method, status, bytes, digest, "
        "remote_addr, user_agent, duration_ms) "
        "VALUES (:at, :mac, :path, 'http', 'GET', :status, 1, :digest, '127.0.0.2', NULL, 1.0)"
    )
    sqlite = store_url.startswith("sqlite")
    rows = [
        ("0004f2000001", 0, "/000000000000-license.cfg", 200, "aa" * 32),
        ("0004f2000001", 5, "/000000000000-license.cfg", 404, None),
        ("0004f2000002", 3, "/0004f2000002-license.cfg", 304, "bb" * 32),
        ("0004f2000002", 1, "/sip.ld", 200, None),
    ]
    with store.engine.begin() as connection:
        for mac, second, path, status, digest in rows:
            moment = at + timedelta(seconds=second)
            value = epoch_micros(moment) if sqlite else moment
            connection.execute(
                insert,
                {"at": value, "mac": mac, "path": path, "status": status, "digest": digest},
            )
    store.upgrade()
    with store.transaction() as session:
        first = phonestate.seen(session, "0004f2000001")
        request, served = phonestate.file_fetches(
            session, "0004f2000001", "000000000000-license.cfg"
        )
        second = phonestate.seen(session, "0004f2000002")
    assert first is not None
    assert first.at == at + timedelta(seconds=5)
    assert (request and request.status, served and served.digest) == (404, "aa" * 32)
    assert second is not None
    assert second.at == at + timedelta(seconds=3)
    with store.engine.connect() as connection:
        assert statecheck.check(connection).differences == []
    store.close()


def test_0013_gives_the_records_already_stored_their_day(store_url: str) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, "0012")
    at = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO fetches (at, mac, path, protocol, method, status, bytes, "
                "duration_ms) VALUES (:at, '0004f2000001', '/x', 'http', 'GET', 200, 1, 1.0)"
            ),
            {"at": epoch_micros(at) if store_url.startswith("sqlite") else at},
        )
    store.upgrade()
    with store.engine.connect() as connection:
        day = connection.scalar(sa.text("SELECT day FROM fetches"))
    assert day == (at.date() - datetime(1970, 1, 1, tzinfo=UTC).date()).days
    with store.transaction() as session:
        found = fetches.query(session, mac="0004f2000001", limit=None)
    assert [r.at for r in found] == [at]
    store.close()


LEGACY_RECORD = (
    "SELECT id, at, mac, path, protocol, method, status, bytes, digest, remote_addr, "
    "user_agent, duration_ms, identified_by, day FROM fetches ORDER BY id"
)


def test_0017_keeps_each_path_and_user_agent_once_and_loses_nothing(store_url: str) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, "0016")
    sqlite = store_url.startswith("sqlite")
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    agents = ["FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application", None, "é/1.0"]
    paths = ["/000000000000-license.cfg", "/0004f2000001.cfg", "/x y/ünï.cfg", "/sip.ld"]
    rows = [
        {
            "at": epoch_micros(at + timedelta(seconds=n)) if sqlite else at + timedelta(seconds=n),
            "mac": None if n % 5 == 4 else f"0004f2{n % 3:06x}",
            "path": paths[n % 4],
            "status": (200, 404, 304)[n % 3],
            "digest": "aa" * 32 if n % 4 == 0 else None,
            "agent": agents[n % 3],
            "day": 20513,
        }
        for n in range(40)
    ]
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO fetches (at, mac, path, protocol, method, status, bytes, digest, "
                "remote_addr, user_agent, duration_ms, identified_by, day) VALUES (:at, :mac, "
                ":path, 'tftp', 'GET', :status, 7, :digest, '10.0.0.1', :agent, 1.5, 'name', :day)"
            ),
            rows,
        )
        before = connection.execute(sa.text(LEGACY_RECORD)).all()
    store.upgrade()
    with store.engine.connect() as connection:
        after = connection.execute(
            sa.text(
                "SELECT f.id, f.at, f.mac, p.text, f.protocol, f.method, f.status, f.bytes, "
                "f.digest, f.remote_addr, a.text, f.duration_ms, f.identified_by, f.day "
                "FROM fetches f JOIN fetch_texts p ON p.id = f.path_id "
                "LEFT JOIN fetch_texts a ON a.id = f.agent_id ORDER BY f.id"
            )
        ).all()
        kept = connection.scalar(sa.text("SELECT count(*) FROM fetch_texts"))
        columns = {c["name"] for c in sa.inspect(connection).get_columns("fetches")}
    assert len(before) == 40
    assert after == before
    assert kept == len(paths) + 2  # each distinct text once
    assert {"path", "user_agent"}.isdisjoint(columns)
    with store.transaction() as session:
        read = fetches.query(session, limit=None)
    assert [(r.path, r.user_agent) for r in read] == [(r["path"], r["agent"]) for r in rows]
    migrate.downgrade(store.engine, "0016")
    with store.engine.connect() as connection:
        assert connection.execute(sa.text(LEGACY_RECORD)).all() == before
    store.close()


def _storage_options(connection: sa.Connection) -> dict[str, list[str]]:
    rows = connection.execute(
        sa.text(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN "
            "('licenses', 'sites', 'rollouts', 'phone_files', 'phones')"
        )
    )
    return {name: sorted(options or []) for name, options in rows}


def test_0018_has_postgresql_analyze_the_small_tables_and_vacuum_the_state_often(
    store_url: str,
) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, "0018")
    if not store_url.startswith("postgresql"):
        assert store.revision() == "0018"  # SQLite plans without statistics: nothing to do
        migrate.downgrade(store.engine, "0017")
        store.close()
        return
    with store.engine.connect() as connection:
        options = _storage_options(connection)
        # analyzed at the upgrade: a table never analyzed has reltuples -1
        unanalyzed = connection.scalar(
            sa.text("SELECT count(*) FROM pg_class WHERE relname = 'licenses' AND reltuples < 0")
        )
    small = ["autovacuum_analyze_scale_factor=0", "autovacuum_analyze_threshold=0"]
    churned = [
        "autovacuum_analyze_scale_factor=0.02",
        "autovacuum_vacuum_insert_scale_factor=0.02",
        "autovacuum_vacuum_scale_factor=0.02",
    ]
    assert options == {
        "licenses": small,
        "sites": small,
        "rollouts": small,
        "phone_files": churned,
        "phones": churned,
    }
    assert unanalyzed == 0
    assert _order_indexes(store) == {"ix_phones_firmware_order", "ix_phones_model_order"}
    migrate.downgrade(store.engine, "0017")
    with store.engine.connect() as connection:
        assert all(not found for found in _storage_options(connection).values())
    assert _order_indexes(store) == set()
    store.close()


def _order_indexes(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        indexes = sa.inspect(connection).get_indexes("phones")
    return {i["name"] for i in indexes if i["name"] and i["name"].endswith("_order")}


RECORD = (
    "SELECT id, at, mac, path_id, protocol, method, status, bytes, digest, remote_addr, "
    "agent_id, duration_ms, identified_by, day FROM fetches ORDER BY id"
)


def test_0019_partitions_postgresql_s_fetch_table_by_day_keeping_every_record(
    store_url: str,
) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, "0018")
    postgresql = store.engine.dialect.name == "postgresql"
    at = datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC)
    rows = [
        {
            "at": at + timedelta(seconds=n) if postgresql else epoch_micros(at) + n * 1_000_000,
            "mac": None if n % 5 == 4 else f"0004f2{n % 3:06x}",
            "path": n % 4 + 1,
            "status": (200, 404, 304)[n % 3],
            "digest": "aa" * 32 if n % 4 == 0 else None,
            "agent": None if n % 3 == 1 else n % 3 + 5,
            "day": None if n == 7 else epoch_micros(at + timedelta(seconds=n)) // 86_400_000_000,
        }
        for n in range(12)  # across midnight: two days, one record without its day
    ]
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO fetches (at, mac, path_id, protocol, method, status, bytes, digest, "
                "remote_addr, agent_id, duration_ms, identified_by, day) VALUES (:at, :mac, "
                ":path, 'tftp', 'GET', :status, 7, :digest, '10.0.0.1', :agent, 1.5, 'name', "
                ":day)"
            ),
            rows,
        )
        before = [tuple(r) for r in connection.execute(sa.text(RECORD))]
    store.upgrade()
    with store.engine.connect() as connection:
        after = [tuple(r) for r in connection.execute(sa.text(RECORD))]
        partitions = historytables.partition_days(connection)
    day_of_7 = epoch_micros(at + timedelta(seconds=7)) // 86_400_000_000
    # every column kept; on PostgreSQL the record without a day gets its time's (a key column)
    assert len(before) == 12
    assert after == [(*r[:-1], day_of_7) if r[0] == 8 and postgresql else r for r in before]
    if postgresql:
        assert {day_of_7 - 1, day_of_7} <= partitions
    else:
        assert partitions == set()
    assert migrate.schema_drift(store.engine) == []
    fetches.insert_records(store.engine, [fetches.FetchRecord("/x.cfg", "http", 200, 1, 1.0, at)])
    with store.engine.connect() as connection:
        added = [tuple(r) for r in connection.execute(sa.text(RECORD))][len(after) :]
    assert [r[0] for r in added] == [len(before) + 1]  # the ids go on
    migrate.downgrade(store.engine, "0018")
    with store.engine.connect() as connection:
        assert [tuple(r) for r in connection.execute(sa.text(RECORD))] == after + added
        assert not historytables.partitioned(connection)
        key = sa.inspect(connection).get_pk_constraint("fetches")["constrained_columns"]
    assert key == ["id"]
    store.close()

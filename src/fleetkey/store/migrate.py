"""Schema migrations with Alembic, driven from code: upgrade, current revision, drift check.

Every store command checks the schema first (``Store.require_current``), so that check must
not load Alembic (a sixth of a second, with Mako and Pygments): the revision a database is at
is read from Alembic's version table with one query, and the newest revision fleetkey ships
from the revision files' text. Upgrading, downgrading and comparing load Alembic.
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, inspect, text

from fleetkey.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS: Final = Path(__file__).parent / "migrations"
VERSION_TABLE: Final = "alembic_version"  # Alembic's default; migrations/env.py keeps it
_ANNOTATION: Final = r"(?:\s*:[^=\n]+)?"  # ``down_revision: str | None = …`` too
_REVISION = re.compile(rf"^revision{_ANNOTATION}\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(rf"^down_revision{_ANNOTATION}\s*=\s*(?:None|[\"']([^\"']+)[\"'])", re.MULTILINE)
_CURRENT = text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608  # a constant name


def _config(connection: Any = None) -> Config:
    from alembic.config import Config  # start-up: see the module docstring

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest revision: the one no revision file names as its ``down_revision``."""
    named: dict[str, str] = {}
    below = set()
    for path in sorted((MIGRATIONS / "versions").glob("[0-9]*.py")):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN.search(source)
        if revision is None or down is None:  # pragma: no cover  # a malformed revision file
            raise RuntimeError(f"{path.name} does not say its revision and down_revision")
        if revision.group(1) in named:  # two changes each took the next number
            raise RuntimeError(
                f"revision {revision.group(1)} is in {named[revision.group(1)]} and {path.name}"
            )
        named[revision.group(1)] = path.name
        if down.group(1) is not None:
            below.add(down.group(1))
    heads = sorted(set(named) - below)
    if len(heads) != 1:  # pragma: no cover  # the package ships one line of revisions
        raise RuntimeError(f"the migrations have {len(heads)} heads: {heads}")
    return heads[0]


def revisions() -> list[str]:
    """Every revision, oldest first (as Alembic walks them)."""
    from alembic.script import ScriptDirectory  # start-up: see the module docstring

    script = ScriptDirectory.from_config(_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command  # start-up: see the module docstring

    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)
    _forget_texts(engine)


def downgrade(engine: Engine, revision: str) -> None:
    """Back to ``revision``: every migration has its way back."""
    from alembic import command  # start-up: see the module docstring

    with engine.begin() as connection:
        command.downgrade(_config(connection), revision)
    _forget_texts(engine)


def _forget_texts(engine: Engine) -> None:
    """The ids of fetch texts remembered for ``engine`` may name other rows after a migration."""
    from fleetkey.store import historytables, texts  # start-up: see the module docstring

    texts.forget(engine)
    historytables.forget(engine)  # and the days whose partitions the writer made


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated), as Alembic records it."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        found = list(connection.execute(_CURRENT).scalars())
    if len(found) > 1:
        raise DatabaseError(
            f"the database records {len(found)} schema revisions at once ({', '.join(found)})",
            hint="it was migrated by something other than fleetkey",
        )
    return found[0] if found else None


# PostgreSQL's (lower(model), model) and (lower(firmware), firmware) in its own ordering
# (migration 0018; SQLite's indexes of 0014 serve): not declared by the models either
_ORDER_INDEXES = frozenset({"ix_phones_model_order", "ix_phones_firmware_order"})


def _modelled(_item: object, name: str | None, kind: str, _reflected: bool, _other: object) -> bool:
    """Whether the drift check compares this object: not the indexes a migration makes per
    database, which the models do not declare (``DIALECT_INDEXES``), nor the fetch table's
    partitions on PostgreSQL (``store/historytables.py``)."""
    from fleetkey.store.historytables import is_partition
    from fleetkey.store.schema import DIALECT_INDEXES

    if kind == "table" and is_partition(name):
        return False
    return not (kind == "index" and (name in DIALECT_INDEXES or name in _ORDER_INDEXES))


def _partition_key(diff: Any) -> bool:
    """PostgreSQL's partitioned fetch table: ``day``, in its primary key, is NOT NULL there
    (migration 0019), nullable in the model and on SQLite."""
    change = diff[0] if isinstance(diff, list) and diff else diff
    return (
        isinstance(change, tuple)
        and change[0] == "modify_nullable"
        and change[2:4] == ("fetches", "day")
    )


def schema_drift(engine: Engine) -> list[Any]:
    """Differences between the models and the database (empty when they agree)."""
    from alembic.autogenerate import compare_metadata  # start-up: see the module docstring
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import SAWarning

    from fleetkey.store.schema import Base

    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite's reflection skips indexes on expressions, saying so; they are not compared
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _modelled}
        )
        return [d for d in compare_metadata(context, Base.metadata) if not _partition_key(d)]

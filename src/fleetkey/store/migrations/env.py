"""Alembic environment: fleetkey always passes an open connection (see store/migrate.py)."""

from __future__ import annotations

from alembic import context

from fleetkey.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover  # only `fleetkey db …` and the tests drive alembic
    raise RuntimeError("run migrations through `fleetkey db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

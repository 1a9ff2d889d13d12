"""The store as the CLI and servers use it: an engine, transactions, the schema check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fleetkey.errors import DatabaseError
from fleetkey.store import migrate
from fleetkey.store.database import open_engine, session_factory


class Store:
    """One database: SQLite by default, PostgreSQL to share a fleet between servers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        self._sessions = session_factory(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end, or rolls back on any error."""
        with self._sessions.begin() as session:
            yield session

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate to the newest schema; (revision before, revision after)."""
        before = self.revision()
        try:
            migrate.upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise DatabaseError(f"upgrading {self.safe_url} failed: {exc}") from exc
        return before, migrate.head_revision()

    def downgrade_to_empty(self) -> None:
        """Undo every migration (a failed ``init`` on a database that was empty)."""
        try:
            migrate.downgrade(self.engine, "base")
        except SQLAlchemyError as exc:
            raise DatabaseError(f"undoing the schema of {self.safe_url} failed: {exc}") from exc

    def revision(self) -> str | None:
        try:
            return migrate.current_revision(self.engine)
        except SQLAlchemyError as exc:
            raise DatabaseError(
                f"cannot open {self.safe_url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from exc

    def require_current(self) -> None:
        """Raise DatabaseError unless the schema is at the newest revision."""
        current, head = self.revision(), migrate.head_revision()
        if current != head:
            raise DatabaseError(
                f"{self.safe_url} is at schema {current or 'none'}, fleetkey needs {head}",
                hint="run `fleetkey db upgrade` (or `fleetkey init`)",
            )

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

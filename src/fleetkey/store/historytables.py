"""Tables of the fetch history's summaries: texts kept once and each day's boots (a part of
``store/schema.py``, which re-exports them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fleetkey.store.schema import Base


class FetchTextRow(Base):
    """A request path or User-Agent that fetch records name, kept once (store/texts.py):
    never deleted, so an id a record holds always names its text."""

    __tablename__ = "fetch_texts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(1024), unique=True)


class BootDayRow(Base):
    """A day (UTC) of boots in the raw fetch records, tallied once the day is over
    (store/bootdays.py): what the boot-cost measure reads instead of the newest records."""

    __tablename__ = "boot_days"

    # UTC days since the epoch, as fetches.day
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    boots: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    spans_ms: Mapped[str] = mapped_column(Text)  # JSON {"<boot length, ms>": boots}
    firmware: Mapped[int] = mapped_column(BigInteger)  # boots left out: they downloaded an image

"""Values as words for people: the CLI's tables and the dashboard's pages say a detail, a list
or a moment the same way, and never as a Python repr."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime


def moment_text(at: datetime | None) -> str:
    """A moment as tables show it: UTC, to the second, ``2026-05-01 02:00:00``."""
    return "" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


def plain(value: object) -> str:
    """Any JSON-like value as words for a table: never a Python repr.

    None is ``-``, booleans ``yes``/``no``, lists ``a, b``, mappings ``key: value, …`` (nested
    ones in parentheses; a value stays a word of its own, so a MAC is never folded), times
    :func:`moment_text`.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return moment_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_nested(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(plain(item) for item in value) or "none"
    return str(value)


def _nested(value: object) -> str:
    text = plain(value)
    return f"({text})" if isinstance(value, Mapping | list | tuple) and "," in text else text

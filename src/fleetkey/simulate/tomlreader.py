"""Reading values out of a parsed TOML document, each rejection naming the file, the table and
the key, and what was expected (``scenario.toml: [[sites]] 2: phones must be at least 1``)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from fleetkey.errors import InputError


class TomlReader:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> InputError:
        return InputError(f"{self.name}: {where}: {message}")

    def known(self, table: dict[str, Any], where: str, keys: set[str]) -> None:
        unknown = sorted(set(table) - keys)
        if unknown:
            raise self.fail(
                where, f"unknown key {unknown[0]!r}; expected {', '.join(sorted(keys))}"
            )

    def table(self, doc: dict[str, Any], key: str, required: bool = False) -> dict[str, Any]:
        value = doc.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"[{key}]", "missing" if value is None else "must be a table")
        return value

    def array(self, doc: dict[str, Any], key: str) -> list[Any]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            raise self.fail(f"[[{key}]]", "must be an array of tables")
        return value

    def moment(self, table: dict[str, Any], key: str, where: str) -> datetime:
        value = table.get(key)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.fail(
                where, f"{key} must be a date-time with an offset (2027-01-01T00:00:00Z)"
            )
        return value.astimezone(UTC)

    def clock(self, table: dict[str, Any], key: str, where: str, default: Any) -> Any:
        value = table.get(key, default)
        if isinstance(value, time) and value.tzinfo is None:
            return value
        if isinstance(value, str):
            try:
                parsed = time.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                return parsed
        raise self.fail(where, f"{key} must be a local time HH:MM, not {value!r}")

    def number(
        self, table: dict[str, Any], key: str, where: str, kind: type, default: Any,
        low: float, high: float | None = None,
    ) -> Any:  # fmt: skip
        value = table.get(key, default)
        if value is None:
            raise self.fail(where, f"{key} is missing")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not isinstance(value, int))
        ):
            raise self.fail(where, f"{key} must be a{'n integer' if kind is int else ' number'}, "
                            f"not {value!r}")  # fmt: skip
        if value < low or (high is not None and value > high):
            limit = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise self.fail(where, f"{key} must be {limit}, not {value!r}")
        return kind(value)

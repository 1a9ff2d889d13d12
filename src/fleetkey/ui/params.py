"""The dashboard's query parameters and form fields, read once and checked.

A page's parameters are few and optional; a bad one is answered ``400`` with a page that names
the parameter, what it got and what it takes (never a silent default, never data for a
filter the operator did not ask for). Forms are ``application/x-www-form-urlencoded``, at most
a few kilobytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from fleetkey.core.features import FeatureCatalog
from fleetkey.core.naming import normalize_mac, normalize_site_serial
from fleetkey.errors import FleetkeyError, InputError
from fleetkey.ui.phonestate import PhoneFilter, Seen

PAGE_SIZES: Final = (25, 50, 100, 200)
FORM_BYTES: Final = 8 * 1024
TEXT_CHARS: Final = 100  # a search or a model name; longer is not one


def bad(name: str, message: str) -> InputError:
    """The error for query parameter or form field ``name`` (answered 400 naming it)."""
    return InputError(f"{name}: {message}", field=name)


@dataclass(frozen=True, slots=True)
class Query:
    """A request's query parameters: each name at most once."""

    values: Mapping[str, str]

    @classmethod
    def of(cls, pairs: list[tuple[str, str]], known: frozenset[str]) -> Query:
        values: dict[str, str] = {}
        for name, value in pairs:
            if name not in known:
                raise bad(name, f"not a parameter of this page ({_names(known)})")
            if name in values:
                raise bad(name, "given more than once")
            values[name] = value
        return cls(values)

    def text(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        if not value:
            return None
        if len(value) > TEXT_CHARS or not value.isprintable():
            raise bad(name, f"expected printable text up to {TEXT_CHARS} characters")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in allowed:
            raise bad(name, f"got {value!r}, expected one of {', '.join(allowed)}")
        return value

    def site(self, name: str = "site") -> str | None:
        return self._checked(name, normalize_site_serial)

    def mac(self, name: str) -> str | None:
        return self._checked(name, normalize_mac)

    def number(self, name: str, default: int, allowed: tuple[int, ...]) -> int:
        value = self.text(name)
        if value is None:
            return default
        if not value.isdigit() or int(value) not in allowed:
            raise bad(name, f"got {value!r}, expected one of {', '.join(map(str, allowed))}")
        return int(value)

    def _checked(self, name: str, normalize: object) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return normalize(value)  # type: ignore[operator,no-any-return]
        except FleetkeyError as exc:
            raise bad(name, exc.message) from exc


PHONE_PARAMETERS: Final = frozenset(
    {"q", "site", "model", "firmware", "seen", "current", "feature", "license", "after", "size"}
)
MAX_ROW_ID: Final = 2**63 - 1


def row_id(text: str, name: str = "id") -> int:
    """A store row's id (a license, a rollout, an audit event) from a path or a parameter."""
    if not text.isdigit() or not 0 < int(text) <= MAX_ROW_ID:
        raise bad(name, f"got {text[:40]!r}, expected a number from 1 to {MAX_ROW_ID}")
    return int(text)


def phone_filter(query: Query, catalog: FeatureCatalog) -> PhoneFilter:
    """The phone table's filters from its query parameters."""
    current = query.choice("current", ("yes", "no"))
    seen = query.choice("seen", tuple(s.value for s in Seen))
    feature = query.text("feature")
    slot = None
    if feature is not None:
        try:
            slot = catalog.slot_of(feature)
        except FleetkeyError as exc:
            raise bad("feature", exc.message) from exc
    license_text = query.text("license")
    return PhoneFilter(
        search=query.text("q"),
        site=query.site(),
        model=query.text("model"),
        firmware=query.text("firmware"),
        seen=Seen(seen) if seen is not None else None,
        current=None if current is None else current == "yes",
        feature=slot,
        license_id=row_id(license_text, "license") if license_text is not None else None,
    )


def form_fields(body: bytes, known: frozenset[str], limit: int = FORM_BYTES) -> dict[str, str]:
    """An urlencoded form's fields, each at most once, only the ones named."""
    if len(body) > limit:
        raise bad("form", f"larger than {limit} bytes")
    try:
        text = body.decode("ascii")
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad("form", "not an urlencoded form") from exc
    fields: dict[str, str] = {}
    for name, values in pairs.items():
        if name not in known:
            raise bad(name, f"not a field of this form ({_names(known)})")
        if len(values) != 1:
            raise bad(name, "given more than once")
        fields[name] = values[0]
    return fields


def _names(known: frozenset[str]) -> str:
    return ", ".join(sorted(known)) or "none"

"""Library values in words for people (never a Python repr) and license keys as JSON and tables.

How tables are laid out, printed as CSV and paged is cli/tables.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from rich.table import Table
from rich.text import Text

from fleetkey.cli.tables import Column, Kind
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import LicenseKey
from fleetkey.core.terms import NEVER, Term, format_term, term_covers, term_to_json
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.core.words import moment_text as moment_text  # in words, as the dashboard's
from fleetkey.core.words import plain as plain
from fleetkey.store.records import days_left

STATUS_STYLE = {
    SignatureStatus.VALID: "green",
    SignatureStatus.INVALID: "bold red",
    SignatureStatus.UNVERIFIABLE: "yellow",
    SignatureStatus.TRUSTED_BY_OPERATOR: "cyan",
}


FEATURE_COLUMNS: Final = (
    Column("slot", Kind.NUMBER),
    Column("feature", Kind.WORDS),
    Column("expires", Kind.ID),
    Column("days left", Kind.NUMBER),
)


def features_text(terms: Mapping[int, Term], catalog: FeatureCatalog, latest: Term | None) -> str:
    """Feature names, one a line, with the term of each that ends before the key's ``latest``:
    ``corporate-directory`` / ``vqmon until 2026-12-31``."""
    lines = [
        catalog.label(slot) + ("" if term == latest else f" until {format_term(term)}")
        for slot, term in sorted(terms.items())
    ]
    return "\n".join(lines) or "none"


def days_text(term: Term | None, on: date) -> Text:
    """Days left as a table cell: ``396``, ``never``, or ``expired`` in red."""
    left = None if term is None else days_left(term, on)
    if left is None:
        return Text("never" if term is NEVER else "-")
    if left < 0:
        return Text("expired", style="red")
    return Text(f"{left:,}", style="yellow" if left <= 30 else "")


def counts_text(counts: Mapping[Any, int]) -> str:
    """``{'2027-12-31': 100}`` as ``2027-12-31: 100``; ``none`` when empty."""
    return ", ".join(f"{key}: {count:,}" for key, count in counts.items()) or "none"


def key_to_json(key: LicenseKey, check: SignatureCheck, catalog: FeatureCatalog) -> dict[str, Any]:
    """One key as ``fleetkey inspect --json`` prints it (see docs/cli.md)."""
    expiry = key.expiry()
    return {
        "serial": key.serial,
        "type": key.type.value,
        "version": key.version,
        "options": key.options_hex,
        "features": [
            {"slot": slot, "name": catalog.name_of(slot), "expires": term_to_json(term)}
            for slot, term in sorted(key.terms().items())
        ],
        "expires": None if expiry is None else term_to_json(expiry),
        "signature": check.status.value,
        "key": check.key_name,
        "signature_detail": check.reason,
        "duration": key.duration_hex,
        "validation": key.validation.hex(),
    }


def term_text(term: Term | None, today: date) -> str:
    text = format_term(term) or "-"
    if term is None or term is NEVER:
        return text
    return text if term_covers(term, today) else f"[red]{text} (expired)[/]"


def key_table(
    key: LicenseKey, check: SignatureCheck, catalog: FeatureCatalog, today: date, title: str
) -> Table:
    style = STATUS_STYLE[check.status]
    caption = f"[{style}]signature {check.status.value}[/]: {check.reason}"
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    table.add_column("slot", justify="right", no_wrap=True)
    table.add_column("feature", overflow="fold")
    table.add_column("expires", no_wrap=True)
    table.add_column("days left", justify="right", no_wrap=True)
    for slot, term in sorted(key.terms().items()):
        table.add_row(
            str(slot), catalog.label(slot), term_text(term, today), days_text(term, today)
        )
    if not key.terms():
        table.add_row("-", "(grants nothing)", "-", "-")
    return table


def key_title(key: LicenseKey, index: int) -> str:
    return (
        f"key {index}: {key.type.value} {key.serial}  Options {key.options_hex}  "
        f"expires {format_term(key.expiry()) or '-'}"
    )

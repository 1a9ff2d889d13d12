"""Turning library values into JSON documents and rich tables (the stable CLI interface)."""

from __future__ import annotations

from datetime import date
from typing import Any

from rich.table import Table

from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import LicenseKey
from fleetkey.core.signing import SignatureCheck, SignatureStatus
from fleetkey.core.terms import NEVER, Term, format_term, term_covers, term_to_json

STATUS_STYLE = {
    SignatureStatus.VALID: "green",
    SignatureStatus.INVALID: "bold red",
    SignatureStatus.UNVERIFIABLE: "yellow",
    SignatureStatus.TRUSTED_BY_OPERATOR: "cyan",
}


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
    table.add_column("slot", justify="right")
    table.add_column("feature")
    table.add_column("expires")
    for slot, term in sorted(key.terms().items()):
        table.add_row(str(slot), catalog.label(slot), term_text(term, today))
    if not key.terms():
        table.add_row("-", "(grants nothing)", "-")
    return table


def key_title(key: LicenseKey, index: int) -> str:
    return (
        f"key {index}: {key.type.value} {key.serial}  Options {key.options_hex}  "
        f"expires {format_term(key.expiry()) or '-'}"
    )

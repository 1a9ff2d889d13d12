"""How ``fleetkey phones show`` shows a phone: what the inventory holds, the features its keys
give it (its own key's and its site's), and the version of each key it last fetched."""

from __future__ import annotations

from datetime import date
from typing import Final

from rich.console import Console
from rich.text import Text

from fleetkey.cli.render import days_text, moment_text
from fleetkey.cli.tables import Cell, Column, Kind, Output, print_fields, print_rows
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.terms import format_term
from fleetkey.store.licensestate import KeyState
from fleetkey.store.records import Phone

FEATURE_COLUMNS: Final = (
    Column("key", Kind.ID),
    Column("license", Kind.NUMBER),
    Column("feature", Kind.WORDS),
    Column("expires", Kind.ID),
    Column("days left", Kind.NUMBER),
)
FETCHED_COLUMNS: Final = (
    Column("file", Kind.ID),
    Column("asked at (UTC)", Kind.ID),
    Column("over", Kind.ID),
    Column("version it got", Kind.WORDS),
)


def print_phone(
    console: Console, phone: Phone, states: list[KeyState], catalog: FeatureCatalog, on: date
) -> None:
    seen = phone.last_seen_at
    print_fields(
        console,
        [
            ("mac", phone.mac),
            ("site", phone.site),
            ("model", phone.model),
            ("firmware", phone.firmware or "-"),
            ("login", f"{phone.prov_user} (password set)" if phone.has_password else "none"),
            ("SIP contact", phone.sip_contact or "-"),
            ("last seen", f"{moment_text(seen)} UTC" if seen else "never"),
            ("last address", phone.last_address or "-"),
            ("User-Agent", phone.last_user_agent or "-"),
        ],
    )
    features = [row for state in states for row in _feature_rows(state, catalog, on)]
    print_rows(console, FEATURE_COLUMNS, features, Output.TABLE, title="keys it should have")
    fetched = [_fetched_row(state) for state in states]
    print_rows(console, FETCHED_COLUMNS, fetched, Output.TABLE, title="what it last fetched")


def _feature_rows(state: KeyState, catalog: FeatureCatalog, on: date) -> list[list[Cell]]:
    """One row per feature of the posted key; one row saying so when none is posted."""
    kind = state.type.value.lower()
    posted = state.posted
    if posted is None:
        return [[kind, "-", Text(f"no {kind} key posted", style="dim"), "-", "-"]]
    if not posted.terms:
        return [[kind, str(posted.id), "(grants nothing)", "-", "-"]]
    return [
        [kind, str(posted.id), catalog.label(slot), format_term(term) or "", days_text(term, on)]
        for slot, term in sorted(posted.terms.items())
    ]


def _fetched_row(state: KeyState) -> list[Cell]:
    request = state.last_request
    if request is None:
        return [state.file_name, "-", "-", Text("never asked for", style="dim")]
    over = f"{request.protocol} {request.status}"
    return [state.file_name, moment_text(request.at), over, _version(state)]


def _version(state: KeyState) -> Text:
    served = state.last_served
    if served is None:
        return Text("never served", style="red")
    known = served.license
    if state.current:
        return Text(
            f"the posted key (license {known.id})" if known else "the posted key", style="green"
        )
    if known is None:
        return Text("a file not in the store", style="yellow")
    return Text(f"license {known.id} ({known.state.value}), not the posted key", style="yellow")

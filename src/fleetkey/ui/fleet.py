"""The dashboard's fleet pages: the overview, sites, the phone table and one phone.

Read-only; each number on these pages links to the filtered phone table or license behind it.
The overview and its live part (``?live=1``, polled by ``live.js``) are the same template.
"""

# no ``from __future__ import annotations``: FastAPI reads the route annotations at runtime

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from fleetkey.core.features import FeatureCatalog
from fleetkey.core.naming import normalize_mac
from fleetkey.core.terms import NEVER, Term, format_term
from fleetkey.errors import FleetkeyError, NotFoundError
from fleetkey.store import fetches, inventory, registry
from fleetkey.store.fetchfilter import FetchFilter
from fleetkey.store.licensestate import KeyState, key_states
from fleetkey.store.records import StoredLicense
from fleetkey.ui import charts, overview, phonestate
from fleetkey.ui.app import UiContext, Viewer
from fleetkey.ui.params import PAGE_SIZES, PHONE_PARAMETERS, Query, bad, phone_filter
from fleetkey.ui.phonestate import Seen

FETCHES_SHOWN: Final = 50
LOG_BYTES: Final = 256 * 1024  # an uploaded log is shown up to this; the rest is said to exist
LIVE: Final = frozenset({"live"})


def feature_rows(states: list[KeyState], catalog: FeatureCatalog, on: date) -> list[dict[str, Any]]:
    """Each feature the phone's posted keys grant: its source, expiry and days left."""
    rows = []
    for state in states:
        if state.posted is None:
            continue
        for slot, term in sorted(state.posted.terms.items()):
            rows.append(
                {
                    "feature": catalog.label(slot),
                    "source": f"{state.type.value.lower()} key {state.posted.id}",
                    "license": state.posted.id,
                    "expires": format_term(term),
                    "days_left": _days(term, on),
                }
            )
    return rows


def _days(term: Term, on: date) -> int | None:
    return None if term is NEVER else (term - on).days


def uploaded_logs(uploads: Path, mac: str) -> list[tuple[str, int]]:
    """The files the phone uploaded (name, bytes), by name: not the server's own hidden
    ones beside them (an upload being written, a log's spare: serve.spares)."""
    folder = uploads / mac
    if not folder.is_dir():
        return []
    return sorted(
        (p.name, p.stat().st_size)
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
    )


def routes(ui: FastAPI, context: UiContext, viewer: Callable[[Request], Viewer]) -> None:
    signed_in = Annotated[Viewer, Depends(viewer)]
    uploads = context.data.root / "uploads"

    @ui.get("/", include_in_schema=False)
    def overview_page(view: signed_in) -> HTMLResponse:
        query = Query.of(list(view.request.query_params.multi_items()), LIVE)
        now = context.clock.now()
        with context.store.transaction() as session:
            found = overview.overview(session, now)
        template = "overview_live.html" if query.text("live") else "overview.html"
        return view.page(
            template,
            nav="overview",
            now=now,
            o=found,
            timeline=charts.timeline(found.expiring, now.date(), overview.TIMELINE_WEEKS),
            rate=charts.rate_chart(found.per_minute, found.capacity_per_s),
            bars={
                r.id: charts.progress_bar(p.states, f"/ui/rollouts/{r.id}")
                for r, p in found.rollouts
            },
            stages=charts.STAGE_COLOURS,
            seen=list(Seen),
        )

    @ui.get("/sites", include_in_schema=False)
    def sites_page(view: signed_in) -> HTMLResponse:
        Query.of(list(view.request.query_params.multi_items()), frozenset())
        now = context.clock.now()
        with context.store.transaction() as session:
            lines = overview.site_lines(session, now)
        return view.page("sites.html", nav="sites", now=now, sites=lines, seen=list(Seen))

    @ui.get("/phones", include_in_schema=False)
    def phones_page(view: signed_in) -> HTMLResponse:
        query = Query.of(list(view.request.query_params.multi_items()), PHONE_PARAMETERS)
        chosen = phone_filter(query, context.data.catalog())
        size = query.number("size", 50, PAGE_SIZES)
        after = query.mac("after")
        now = context.clock.now()
        with context.store.transaction() as session:
            served = _license(session, chosen.license_id)
            lines, total = phonestate.phone_page(session, chosen, now, after=after, limit=size)
            models, firmware = phonestate.choices(session)
            sites = inventory.sites(session)
        kept = {k: v for k, v in query.values.items() if k not in ("after",) and v}
        return view.page(
            "phones.html",
            nav="phones",
            now=now,
            lines=lines,
            total=total,
            size=size,
            kept=kept,
            more=len(lines) == size,
            models=models,
            firmware=firmware,
            sites=sites,
            site_names={site.serial: site.name for site in sites},
            seen=list(Seen),
            features=list(context.data.catalog()),
            served=served,
        )

    @ui.get("/phones/{mac}", include_in_schema=False)
    def phone_page(mac: str, view: signed_in) -> HTMLResponse:
        Query.of(list(view.request.query_params.multi_items()), frozenset())
        found_mac = _mac(mac)
        now = context.clock.now()
        catalog = context.data.catalog()
        with context.store.transaction() as session:
            phone = inventory.phone(session, found_mac)
            states = key_states(session, phone)
            history, older = fetches.newest(session, FetchFilter(mac=found_mac), FETCHES_SHOWN)
        return view.page(
            "phone.html",
            nav="phones",
            now=now,
            phone=phone,
            states=states,
            features=feature_rows(states, catalog, now.date()),
            history=history,
            older=older,
            logs=uploaded_logs(uploads, found_mac),
        )

    @ui.get("/phones/{mac}/logs/{name}", include_in_schema=False)
    def log_page(mac: str, name: str, view: signed_in) -> HTMLResponse:
        found_mac = _mac(mac)
        files = dict(uploaded_logs(uploads, found_mac))
        if name not in files:  # only a name listed from the phone's folder: no path tricks
            raise NotFoundError(f"phone {found_mac} uploaded no file {name!r}")
        with (uploads / found_mac / name).open("rb") as handle:
            head = handle.read(LOG_BYTES)
        return view.page(
            "log.html",
            nav="phones",
            mac=found_mac,
            name=name,
            size=files[name],
            text=head.decode("utf-8", errors="replace"),
            cut=files[name] > LOG_BYTES,
        )


def _license(session: Session, license_id: int | None) -> StoredLicense | None:
    """The key the ``license`` filter names (400 naming the parameter when there is none)."""
    if license_id is None:
        return None
    try:
        return registry.get(session, license_id)
    except NotFoundError as exc:
        raise bad("license", exc.message) from exc


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except FleetkeyError as exc:
        raise bad("mac", exc.message) from exc

"""The dashboard's operations pages: licenses, rollouts, alerts and the audit trail, and the
actions it offers (pause, resume or cancel a rollout; silence an alert).

An action is a POST of a form with the session's CSRF token; it changes the store through the
same functions as the CLI (``rollouts.move``, ``alerts.ack``), so the audit trail records it
the same way, with ``dashboard@<address>`` as the actor.
"""

# no ``from __future__ import annotations``: FastAPI reads the route annotations at runtime

from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Final

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.naming import license_place
from fleetkey.core.terms import format_term
from fleetkey.store import alerts, audit, load, registry, rollouts, schedule
from fleetkey.store.records import StoredLicense
from fleetkey.store.rollouts import ACTIVE, RolloutState, TargetState
from fleetkey.store.schema import LicenseRow, RolloutTargetRow
from fleetkey.ui import charts
from fleetkey.ui.app import UiContext, Viewer
from fleetkey.ui.params import Query, bad, form_fields, row_id

TARGETS_SHOWN: Final = 200
AUDIT_SHOWN: Final = 100
MOVES: Final = {
    "pause": RolloutState.PAUSED,
    "resume": RolloutState.RUNNING,
    "cancel": RolloutState.CANCELLED,
}
SEVERITIES: Final = ("critical", "warning", "info")
ACTION_FIELDS: Final = frozenset({"csrf"})
ACK_FIELDS: Final = frozenset({"csrf", "key", "until"})


def chain(session: Session, key: StoredLicense) -> tuple[list[StoredLicense], list[int]]:
    """The keys ``key`` succeeds (newest first), and the ids of the keys that succeed it."""
    before = []
    seen = {key.id}
    current = key
    while current.succeeds_id is not None and current.succeeds_id not in seen:
        current = registry.get(session, current.succeeds_id)
        seen.add(current.id)
        before.append(current)
    after = list(session.scalars(select(LicenseRow.id).where(LicenseRow.succeeds_id == key.id)))
    return before, after


def waves(session: Session, rollout_id: int) -> list[tuple[int, int, int]]:
    """(wave, phones, confirmed) of a rollout, by wave."""
    confirmed = func.sum(case((RolloutTargetRow.state == TargetState.CONFIRMED.value, 1), else_=0))
    rows = session.execute(
        select(RolloutTargetRow.wave, func.count(), confirmed)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .group_by(RolloutTargetRow.wave)
        .order_by(RolloutTargetRow.wave)
    )
    return [(int(w), int(n), int(c or 0)) for w, n, c in rows]


def phones_in(session: Session, rollout_id: int, state: str) -> list[tuple[str, str, int, str]]:
    rows = session.execute(
        select(
            RolloutTargetRow.mac,
            RolloutTargetRow.site_serial,
            RolloutTargetRow.attempts,
            RolloutTargetRow.reason,
        )
        .where(RolloutTargetRow.rollout_id == rollout_id, RolloutTargetRow.state == state)
        .order_by(RolloutTargetRow.mac)
        .limit(TARGETS_SHOWN)
    )
    return [(m, s, int(a), r or "") for m, s, a, r in rows]


def _query(view: Viewer, *names: str) -> Query:
    return Query.of(list(view.request.query_params.multi_items()), frozenset(names))


def routes(ui: FastAPI, context: UiContext, viewer: Callable[[Request], Viewer]) -> None:
    signed_in = Annotated[Viewer, Depends(viewer)]

    @ui.get("/licenses", include_in_schema=False)
    def licenses_page(view: signed_in) -> HTMLResponse:
        query = _query(view, "state", "type", "serial")
        state = query.choice("state", tuple(s.value for s in LicenseState))
        kind = query.choice("type", ("phone", "site"))
        serial = query.text("serial")
        now = context.clock.now()
        with context.store.transaction() as session:
            found = registry.listing(
                session,
                today=now.date(),
                states=(LicenseState(state),) if state is not None else None,
            )
        if kind is not None:
            found = [k for k in found if k.type.value.lower() == kind]
        if serial is not None:
            found = [k for k in found if k.serial == serial.lower()]
        return view.page(
            "licenses.html", nav="licenses", today=now.date(), keys=found[::-1], query=query
        )

    @ui.get("/licenses/{license_id}", include_in_schema=False)
    def license_page(license_id: str, view: signed_in) -> HTMLResponse:
        _query(view)
        key_id = row_id(license_id)
        today = context.clock.now().date()
        catalog = context.data.catalog()
        with context.store.transaction() as session:
            key = registry.get(session, key_id)
            before, after = chain(session, key)
        terms = [
            (catalog.label(slot), format_term(term), None if term is None else term)
            for slot, term in sorted(key.terms.items())
        ]
        return view.page(
            "license.html",
            nav="licenses",
            today=today,
            key=key,
            terms=terms,
            before=before,
            after=after,
            place="/".join(license_place(key.type, key.serial)),
            site_type=LicenseType.SITE,
            days=_days_left(key.expires_on, today),
        )

    @ui.get("/rollouts", include_in_schema=False)
    def rollouts_page(view: signed_in) -> HTMLResponse:
        _query(view)
        with context.store.transaction() as session:
            found = [
                (r, rollouts.progress(session, r.id, failures=0)) for r in rollouts.listing(session)
            ]
        return view.page(
            "rollouts.html",
            nav="rollouts",
            items=found[::-1],
            bars={r.id: charts.progress_bar(p.states, f"/ui/rollouts/{r.id}") for r, p in found},
        )

    @ui.get("/rollouts/{rollout_id}", include_in_schema=False)
    def rollout_page(rollout_id: str, view: signed_in) -> HTMLResponse:
        query = _query(view, "state", "live")
        state = query.choice("state", tuple(s.value for s in TargetState))
        number = row_id(rollout_id)
        now = context.clock.now()
        with context.store.transaction() as session:
            found = rollouts.get(session, number)
            progress = rollouts.progress(session, number, failures=TARGETS_SHOWN)
            wait = schedule.waiting(session, found, progress, now)
            by_wave = waves(session, number)
            planned = load.scheduled(session, number)
            span = load.run_span(session, number)
            actual = (
                load.measured_rate(session, span[0], span[1] + timedelta(seconds=1), found.slot_s)
                if span is not None
                else []
            )
            listed = phones_in(session, number, state) if state is not None else []
        return view.page(
            "rollout_live.html" if query.text("live") else "rollout.html",
            nav="rollouts",
            now=now,
            r=found,
            p=progress,
            wait=wait.text() if wait is not None else None,
            active=found.state in ACTIVE,
            bar=charts.progress_bar(progress.states, f"/ui/rollouts/{number}", width=480),
            chart=charts.wave_chart(by_wave),
            load=charts.plan_chart(planned, actual, found.capacity, found.headroom, found.slot_s),
            state=state,
            listed=listed,
            states=[s.value for s in TargetState],
        )

    @ui.post("/rollouts/{rollout_id}/{action}", include_in_schema=False)
    async def move_rollout(rollout_id: str, action: str, view: signed_in) -> Response:
        fields = form_fields(await view.request.body(), ACTION_FIELDS)
        if (refused := view.csrf_refused(fields)) is not None:
            return refused
        if action not in MOVES:
            raise bad("action", f"got {action[:40]!r}, expected one of {', '.join(MOVES)}")
        number = row_id(rollout_id)

        def act() -> None:
            with context.store.transaction() as session:
                rollouts.move(session, context.clock, view.actor, number, MOVES[action])

        await run_in_threadpool(act)
        return RedirectResponse(f"/ui/rollouts/{number}", status_code=303)

    @ui.get("/alerts", include_in_schema=False)
    def alerts_page(view: signed_in) -> HTMLResponse:
        query = _query(view, "severity", "all")
        severity = query.choice("severity", SEVERITIES)
        every = query.choice("all", ("yes", "no")) == "yes"
        with context.store.transaction() as session:
            found = alerts.listing(session, include_resolved=every)
        if severity is not None:
            found = [a for a in found if a.severity == severity]
        return view.page("alerts.html", nav="alerts", items=found, severity=severity, every=every)

    @ui.post("/alerts/ack", include_in_schema=False)
    async def ack_alert(view: signed_in) -> Response:
        fields = form_fields(await view.request.body(), ACK_FIELDS)
        if (refused := view.csrf_refused(fields)) is not None:
            return refused
        key = fields.get("key", "").strip()
        if not key or len(key) > 200:
            raise bad("key", "expected the alert's key (up to 200 characters)")
        until = _date(fields.get("until", "").strip())

        def act() -> None:
            with context.store.transaction() as session:
                alerts.ack(session, context.clock, view.actor, key, until)

        await run_in_threadpool(act)
        return RedirectResponse("/ui/alerts", status_code=303)

    @ui.get("/audit", include_in_schema=False)
    def audit_page(view: signed_in) -> HTMLResponse:
        query = _query(view, "before", "verify")
        before_text = query.text("before")
        before = row_id(before_text, "before") if before_text is not None else None
        check = query.choice("verify", ("yes",)) == "yes"
        with context.store.transaction() as session:
            events = audit.events(session, limit=AUDIT_SHOWN, before=before)
            # walking the chain reads every event and every audited row: asked for, not on
            # each visit (4 s with 100,000 phones on a loaded machine, bench/ui.py)
            verdict = audit.verify(session) if check else None
        return view.page(
            "audit.html",
            nav="audit",
            events=events[::-1],
            verdict=verdict,
            shown=AUDIT_SHOWN,
            before=before,
        )


def _date(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise bad("until", f"got {text[:40]!r}, expected a date as YYYY-MM-DD") from exc


def _days_left(expires_on: date | None, today: date) -> int | None:
    return None if expires_on is None else (expires_on - today).days

"""The admin API: sites and phones (add, update, remove), licenses (issue, post, revoke),
fetches, status; /metrics.

Bearer-token authentication (``Authorization: Bearer <token>``; the token comes from
``fleetkey init`` or ``fleetkey token`` and the data directory keeps only its hash). The
OpenAPI description is at ``/api/openapi.json`` and browsable at ``/api/docs``. Every change
goes through the same store functions as the CLI, so it is audited the same way. Errors are
answered as ``fleetkey.api.problems`` says: one body shape, a status per error class.
"""

# no ``from __future__ import annotations``: FastAPI reads the route annotations at runtime
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from fleetkey.api import docs, problems
from fleetkey.api.inventory import inventory_routes
from fleetkey.authority.datadir import DataDir
from fleetkey.authority.keyring import Keyring
from fleetkey.authority.tokens import token_matches
from fleetkey.clock import Clock, today
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.ops import alerts as alerting
from fleetkey.ops import licensing, posting
from fleetkey.store import alerts, fetches, registry, rollouts, schedule
from fleetkey.store.records import fetch_json, license_json
from fleetkey.store.store import Store

ACTOR = "admin API"
BEARER = HTTPBearer(auto_error=False)
# ids are 64-bit in the database: a larger number in a path names nothing (422, not a crash)
RowId = Annotated[int, Path(ge=1, le=problems.MAX_ROW_ID)]


@dataclass(frozen=True, slots=True)
class ApiContext:
    data: DataDir
    store: Store
    clock: Clock
    passphrase: bytes | None  # to sign licenses issued through the API
    status: Callable[[], dict[str, Any]]  # the running server's counters
    metrics: Callable[[], bytes]  # Prometheus text exposition
    health: Callable[[], tuple[bool, dict[str, Any]]] = lambda: (True, {})  # for /healthz


class LicenseIn(BaseModel):
    type: Literal["phone", "site"]
    serial: str = Field(description="the phone's MAC or the site serial")
    features: list[str] = Field(default_factory=list, examples=[["corporate-directory"]])
    expires: str | None = Field(None, description="YYYY-MM-DD or never, for every feature")
    per_feature: list[str] = Field(default_factory=list, description="NAME=DATE")
    post: bool = Field(True, description="serve it to phones now (write it into the tree)")
    force: bool = Field(
        False,
        description="issue an expired key, or post one that takes something from phones "
        "(shorter than the posted key, a feature ended earlier or dropped); audited",
    )
    default_site: bool = Field(
        False, description="also make it the tree's default 000000000000-license.cfg (site keys)"
    )


class PostIn(BaseModel):
    accept_unverified: str | None = Field(
        None,
        description="post a key whose signature is invalid or unverifiable (e.g. a vendor "
        "file), for this reason; the audit trail keeps it with the actor",
        max_length=500,
    )
    force: bool = Field(
        False,
        description="post a key that takes something from phones (expired, shorter than the "
        "key it replaces, a feature ended earlier or dropped); audited with what was lost",
    )
    default_site: bool = Field(
        False, description="also make it the tree's default 000000000000-license.cfg (site keys)"
    )
    dry_run: bool = Field(False, description="say what posting would change; change nothing")


class RollbackIn(BaseModel):
    serial: str = Field(description="the site serial or the phone's MAC")
    type: Literal["phone", "site"] | None = Field(
        None, description="needed only when the serial has posted keys of both types"
    )
    accept_unverified: str | None = Field(None, max_length=500)
    force: bool = False


class TrustIn(BaseModel):
    reason: str = Field(description="why the operator trusts its signature", max_length=500)


class AckIn(BaseModel):
    key: str = Field(description="the alert's key", max_length=200)
    until: date | None = Field(None, description="silenced to the end of this day (UTC)")


def create_app(context: ApiContext) -> FastAPI:  # one nested function per route
    app = FastAPI(
        title="fleetkey admin API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,  # api/docs.py serves it with local assets
        redoc_url=None,
    )
    docs.install(app, "fleetkey admin API")

    problems.install(app)

    def operator(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        if credentials is None or not token_matches(
            context.data.api_token, credentials.credentials
        ):
            raise HTTPException(
                401,
                "a valid bearer token is required (fleetkey init or fleetkey token make one)",
                headers={"WWW-Authenticate": 'Bearer realm="fleetkey"'},
            )

    guarded = [Depends(operator)]

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return PlainTextResponse(
            context.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    def healthz(request: Request) -> Response:
        """For load balancers (no token): 200 while the server should be given phones, 503
        with the reasons when not (serve/health.py); it takes no query."""
        if request.url.query:
            raise HTTPException(400, f"/healthz takes no query, got {request.url.query[:100]!r}")
        healthy, document = context.health()
        return JSONResponse(document, status_code=200 if healthy else 503)

    @app.get("/api/status", dependencies=guarded, tags=["status"])
    def status() -> dict[str, Any]:
        """The running server: requests, rejections, fetch-record writing, what it serves."""
        return {"at": context.clock.now().isoformat(), **context.status()}

    app.include_router(inventory_routes(context.store, context.clock, ACTOR, guarded))

    @app.get("/api/licenses", dependencies=guarded, tags=["licenses"])
    def list_licenses(
        state: LicenseState | None = None,
        expiring_within: Annotated[int | None, Query(ge=0, le=problems.MAX_DAYS)] = None,
    ) -> list[dict[str, Any]]:
        with context.store.transaction() as session:
            found = registry.listing(
                session,
                today=today(context.clock),
                expiring_within=expiring_within,
                states=(state,) if state is not None else None,
            )
        return [license_json(item) for item in found]

    @app.get("/api/licenses/{license_id}", dependencies=guarded, tags=["licenses"])
    def get_license(license_id: RowId) -> dict[str, Any]:
        with context.store.transaction() as session:
            return license_json(registry.get(session, license_id))

    @app.get("/api/licenses/{license_id}/file", dependencies=guarded, tags=["licenses"])
    def license_file(license_id: RowId) -> Response:
        """The license file's bytes, as phones get them."""
        with context.store.transaction() as session:
            stored = registry.get(session, license_id)
            body = registry.content(session, license_id)
        return Response(
            body,
            media_type="application/xml",
            headers={"content-disposition": problems.attachment(stored.file_name)},
        )

    @app.post("/api/licenses", dependencies=guarded, tags=["licenses"], status_code=201)
    def issue(order: LicenseIn) -> dict[str, Any]:
        """Sign a license with the active key; posted (served) unless ``post`` is false."""
        issued = licensing.issue_license(
            context.data,
            context.store,
            context.clock,
            ACTOR,
            licensing.LicenseOrder(
                LicenseType.PHONE if order.type == "phone" else LicenseType.SITE,
                order.serial,
                order.features,
                order.expires,
                order.per_feature,
            ),
            passphrase=context.passphrase,
            target=None,
            write=order.post,
            force=order.force,
            default_site=order.default_site,
        )
        return {
            "license": license_json(issued.stored),
            "files": [str(path) for path in issued.files],
            "warnings": issued.warnings,
        }

    @app.post("/api/licenses/{license_id}/post", dependencies=guarded, tags=["licenses"])
    def post(license_id: RowId, body: PostIn | None = None) -> dict[str, Any]:
        """Serve an issued (or superseded) key in its place. Refused 409 ``unsafe-post`` when
        it takes something from phones, unless ``force``; one whose signature is not valid
        only with a reason. ``dry_run`` says what it would change."""
        order = body if body is not None else PostIn.model_validate({})
        if order.dry_run:
            preview = posting.preview_post(
                context.data,
                context.store,
                context.clock,
                license_id,
                default_site=order.default_site,
            )
            return preview.to_json(context.data.catalog(), dry_run=True)
        done = posting.post_license(
            context.data,
            context.store,
            context.clock,
            ACTOR,
            license_id,
            accept_unverified=order.accept_unverified,
            force=order.force,
            default_site=order.default_site,
        )
        return done.to_json(context.data.catalog())

    @app.post("/api/licenses/rollback", dependencies=guarded, tags=["licenses"])
    def rollback(order: RollbackIn) -> dict[str, Any]:
        """Post again the key the posted key of ``serial`` replaced; judged as a post is."""
        done = posting.rollback_license(
            context.data,
            context.store,
            context.clock,
            ACTOR,
            order.serial,
            key_type=LicenseType(order.type.title()) if order.type else None,
            accept_unverified=order.accept_unverified,
            force=order.force,
        )
        return done.to_json(context.data.catalog())

    @app.post("/api/licenses/{license_id}/trust", dependencies=guarded, tags=["licenses"])
    def trust(license_id: RowId, order: TrustIn) -> dict[str, Any]:
        """Vouch for an unverifiable key's signature (a vendor's), for a reason; audited."""
        stored = posting.trust_license(
            context.store, context.clock, ACTOR, license_id, order.reason
        )
        return license_json(stored)

    @app.post("/api/licenses/{license_id}/revoke", dependencies=guarded, tags=["licenses"])
    def revoke(license_id: RowId) -> dict[str, Any]:
        stored, removed = posting.revoke_license(
            context.data, context.store, context.clock, ACTOR, license_id
        )
        return {
            "license": license_json(stored),
            "removed_file": str(removed[0]) if removed else None,
            "removed": [str(path) for path in removed],
        }

    @app.get("/api/fetches", dependencies=guarded, tags=["fetches"])
    def list_fetches(
        mac: str | None = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """What phones fetched, oldest first: the digest proves which version each got."""
        moment = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
        with context.store.transaction() as session:
            found = fetches.query(session, mac=mac, since=moment, limit=limit)
        return [fetch_json(r) for r in found]

    @app.get("/api/alerts", dependencies=guarded, tags=["operations"])
    def list_alerts(all: bool = False) -> list[dict[str, Any]]:  # the query name
        """Alerts as last evaluated: open ones, or ``all=true`` with the resolved."""
        with context.store.transaction() as session:
            return [a.to_json() for a in alerts.listing(session, include_resolved=all)]

    @app.post("/api/alerts/check", dependencies=guarded, tags=["operations"])
    def check_alerts() -> dict[str, Any]:
        """Evaluate now: what fired, what resolved, and every open alert."""
        trusted = Keyring(context.data.keys).trusted()
        result, open_alerts = alerting.check(
            context.data, context.store, context.clock, trusted, alerting.AlertSettings()
        )
        return {
            "fired": result.fired,
            "resolved": result.resolved,
            "open": [a.to_json() for a in open_alerts],
        }

    @app.post("/api/alerts/ack", dependencies=guarded, tags=["operations"])
    def ack_alert(order: AckIn) -> dict[str, Any]:
        """Silence an open alert to the end of ``until`` (UTC), or until it resolves."""
        with context.store.transaction() as session:
            return alerts.ack(session, context.clock, ACTOR, order.key, order.until).to_json()

    @app.get("/api/rollouts", dependencies=guarded, tags=["operations"])
    def list_rollouts() -> list[dict[str, Any]]:
        """Every rollout with its phones by state."""
        now = context.clock.now()
        with context.store.transaction() as session:
            return [
                rollouts.rollout_json(r, p, schedule.waiting(session, r, p, now))
                for r in rollouts.listing(session)
                for p in [rollouts.progress(session, r.id)]
            ]

    @app.get("/api/rollouts/{rollout_id}", dependencies=guarded, tags=["operations"])
    def get_rollout(rollout_id: RowId) -> dict[str, Any]:
        """One rollout: state, phones by state, every failure with its reason, what it waits
        for."""
        with context.store.transaction() as session:
            found = rollouts.get(session, rollout_id)
            progress = rollouts.progress(session, rollout_id)
            wait = schedule.waiting(session, found, progress, context.clock.now())
            return rollouts.rollout_json(found, progress, wait)

    return app

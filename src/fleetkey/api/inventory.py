"""The admin API's inventory routes: sites (listed, added, read, changed, removed by serial
or name) and phones (listed, read, removed), through the same store functions as the CLI."""

# no ``from __future__ import annotations``: FastAPI reads the route annotations at runtime
from typing import Any

from fastapi import APIRouter
from fastapi.params import Depends
from pydantic import BaseModel, Field

from fleetkey.clock import Clock
from fleetkey.core.rollout.windows import Window
from fleetkey.store import inventory
from fleetkey.store.records import Site, phone_json, site_json
from fleetkey.store.store import Store


class SiteIn(BaseModel):
    serial: str = Field(description="12 hex digits", examples=["100000000001"])
    name: str
    timezone: str = Field(examples=["Europe/Berlin"])
    window: str = Field(
        description="maintenance window, local HH:MM-HH:MM", examples=["22:00-05:00"]
    )
    contact: str | None = None


class SiteChangesIn(BaseModel):
    """What to change of a site: members left out are kept; ``"contact": null`` clears it."""

    name: str | None = None
    timezone: str | None = Field(None, examples=["Europe/Berlin"])
    window: str | None = Field(None, description="local HH:MM-HH:MM", examples=["23:00-04:00"])
    contact: str | None = None


def inventory_routes(
    store: Store, clock: Clock, actor: str, guarded: list[Depends]
) -> APIRouter:  # one nested function per route, as in app.py
    router = APIRouter()

    @router.get("/api/sites", dependencies=guarded, tags=["inventory"])
    def list_sites() -> list[dict[str, Any]]:
        with store.transaction() as session:
            return [site_json(site) for site in inventory.sites(session)]

    @router.post("/api/sites", dependencies=guarded, tags=["inventory"], status_code=201)
    def add_site(site: SiteIn) -> dict[str, Any]:
        window = Window.parse(site.window)
        with store.transaction() as session:
            added = inventory.add_site(
                session,
                clock,
                actor,
                Site(site.serial, site.name, site.timezone, window, site.contact),
            )
        return site_json(added)

    @router.get("/api/sites/{site}", dependencies=guarded, tags=["inventory"])
    def get_site(site: str) -> dict[str, Any]:
        """One site, named by its serial or its name."""
        with store.transaction() as session:
            return site_json(inventory.site(session, site))

    @router.patch("/api/sites/{site}", dependencies=guarded, tags=["inventory"])
    def update_site(site: str, body: SiteChangesIn) -> dict[str, Any]:
        """Change a site's name, time zone, window or contact (audited when anything changes)."""
        given = body.model_fields_set
        changes = inventory.SiteChanges(
            body.name,
            body.timezone,
            Window.parse(body.window) if body.window is not None else None,
            (body.contact or "") if "contact" in given else None,
        )
        with store.transaction() as session:
            done = inventory.update_site(session, clock, actor, site, changes)
        return done.to_json()

    @router.delete("/api/sites/{site}", dependencies=guarded, tags=["inventory"])
    def remove_site(site: str, force: bool = False) -> dict[str, Any]:
        """Remove a site: 409 while it has phones or posted keys, unless ``force=true`` (its
        phones go with it; its keys stay recorded and posted)."""
        with store.transaction() as session:
            done = inventory.remove_site(session, clock, actor, site, force=force)
        return done.to_json()

    @router.get("/api/phones", dependencies=guarded, tags=["inventory"])
    def list_phones(site: str | None = None) -> list[dict[str, Any]]:
        with store.transaction() as session:
            return [phone_json(p) for p in inventory.phones(session, site)]

    @router.get("/api/phones/{mac}", dependencies=guarded, tags=["inventory"])
    def get_phone(mac: str) -> dict[str, Any]:
        with store.transaction() as session:
            return phone_json(inventory.phone(session, mac))

    @router.delete("/api/phones/{mac}", dependencies=guarded, tags=["inventory"])
    def remove_phone(mac: str) -> dict[str, Any]:
        """Remove a phone from the inventory; its posted key stays recorded and posted."""
        with store.transaction() as session:
            done = inventory.remove_phones(session, clock, actor, [mac])
        return done.to_json()

    return router

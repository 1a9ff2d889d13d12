"""Who is asking, as HTTP and TFTP both need it: the unknown-MAC policy and phone sightings.

A request names a phone by the MAC in its User-Agent ``(SN:…)``, by its credentials, or by the
file it asks for (``<mac>-license.cfg``). What happens to a MAC the inventory does not know is
the operator's choice:

- ``serve`` (default): serve it like any other phone;
- ``refuse``: answer 403 (TFTP: access violation) to every request that names it;
- ``register``: add it to the inventory, at the site of the ``/<site-serial>/`` path prefix or
  else the configured registration site, and serve it.

Requests that name no phone (a shared master configuration asked for without a tagged
User-Agent) are served under every policy; per-device authentication is the control for those.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from fleetkey.clock import Clock
from fleetkey.core.useragent import PhoneAgent
from fleetkey.store import sightings
from fleetkey.store.sightings import NewPhone, Sighting
from fleetkey.store.store import Store

log = logging.getLogger(__name__)

ACTOR = "fleetkey serve"


class UnknownPolicy(enum.StrEnum):
    SERVE = "serve"
    REFUSE = "refuse"
    REGISTER = "register"


@dataclass(frozen=True, slots=True)
class FlushResult:
    updated: int
    registered: list[str]


class Sightings:
    """The newest request of each phone since the last flush, and phones to register.

    Filled on the event loop (a dict assignment per request), emptied by ``flush`` on a worker
    thread: the two swap whole dicts, which is atomic under the GIL.
    """

    def __init__(self, policy: UnknownPolicy, register_site: str | None = None) -> None:
        self.policy = policy
        self.register_site = register_site
        self._seen: dict[str, tuple[datetime, str | None, str | None, PhoneAgent | None]] = {}
        self._new: dict[str, NewPhone] = {}
        self.registered = 0

    def watches(self, mac: str, known: bool) -> bool:
        """Whether a sighting of ``mac`` would change anything: it is in the inventory (as the
        caller's view has it) or queued to be registered. Other MACs are not looked up: a
        sighting of them would only cost a batch lookup that finds nothing."""
        return known or mac in self._new

    def seen(
        self,
        mac: str,
        known: bool,
        at: datetime,
        address: str | None,
        user_agent: str | None,
        agent: PhoneAgent | None,
    ) -> None:
        """A request from ``mac`` was answered; ``known``: it is in the caller's inventory
        view. Kept for the next flush only when it can change something (``watches``)."""
        if self.watches(mac, known):
            self._seen[mac] = (at, address, user_agent, agent)

    def admit(self, mac: str, known: bool, site: str | None, agent: PhoneAgent | None) -> bool:
        """Whether a request naming ``mac`` may be answered; queues a registration."""
        if known or self.policy is UnknownPolicy.SERVE:
            return True
        if self.policy is UnknownPolicy.REFUSE:
            return False
        target = site or self.register_site
        if target is not None and mac not in self._new:
            self._new[mac] = NewPhone(
                mac,
                target,
                agent.model if agent else None,
                agent.firmware if agent else None,
            )
        return True

    def flush(self, store: Store, clock: Clock) -> FlushResult:
        """Write what was collected (blocking: call it off the event loop)."""
        seen, self._seen = self._seen, {}
        new, self._new = self._new, {}
        # list() copies in C, holding the GIL: a write the event loop makes to the old dict
        # right after the swap cannot break the iteration below
        latest = list(seen.items())
        newcomers = list(new.values())
        rows = [
            Sighting(
                mac,
                at,
                address,
                user_agent,
                agent.model if agent else None,
                agent.firmware if agent else None,
            )
            for mac, (at, address, user_agent, agent) in latest
        ]
        try:
            with store.transaction() as session:
                registered = sightings.register(session, clock, ACTOR, newcomers)
                updated = sightings.record(session, rows) if rows else 0
        except BaseException:  # keep them for the next flush; newer sightings win
            self._seen = seen | self._seen
            self._new = new | self._new
            raise
        if registered:
            self.registered += len(registered)
            log.info("registered %d new phones", len(registered))
        return FlushResult(updated, registered)

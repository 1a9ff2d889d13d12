"""What each site's phones last fetched of their site license, summed up per site.

The alerts about phones (``core/alerts.py``: not fetched since posted, booted with an expired
license) need, per site, which phones are behind its posted license and why, and which
booted with an expired one: counts and the first MACs. At 100,000 phones, reading every
phone's newest request into Python and walking it took seconds, so the store answers
:class:`Question` set-wise (one query a site for the phones behind, one for the fleet for
the expired ones) and gives a :class:`SiteFetches` per site. :func:`summarize` computes the
same from per-phone facts: the definition, which the store's answer must equal (tested on
SQLite and PostgreSQL).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Protocol

from fleetkey.core.license import LicenseState, LicenseType

SAMPLE: Final = 10  # MACs named in an alert's details
BOOTED_SINCE: Final = "booted since, did not get it"
NO_BOOT_SINCE: Final = "no boot since"


@dataclass(frozen=True, slots=True)
class Posted:
    """A site's posted site license, which its phones should have fetched."""

    license_id: int
    digest: str
    posted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Question:
    """What to find: per site its posted license, and per license digest the moment from
    which a fetch of it is a boot with an expired license (the day after it expires, UTC)."""

    posted: Mapping[str, Posted]
    expired_from: Mapping[str, datetime]


@dataclass(frozen=True, slots=True)
class Sample:
    """How many phones, and the first ``SAMPLE`` of their MACs in order."""

    count: int = 0
    macs: tuple[str, ...] = ()

    def add(self, mac: str) -> Sample:
        """This sample with ``mac``, which sorts after every MAC in it."""
        return Sample(self.count + 1, (*self.macs, mac) if len(self.macs) < SAMPLE else self.macs)


@dataclass(frozen=True, slots=True)
class SiteFetches:
    """A site's phones behind its posted license (by why) and booted with an expired one."""

    serial: str
    behind: Mapping[str, Sample] = field(default_factory=dict)  # why -> phones
    expired: Sample = Sample()


class LicenseLike(Protocol):
    """The fields of a license the question reads (``core.alerts.LicenseFacts`` has them)."""

    @property
    def id(self) -> int: ...
    @property
    def type(self) -> LicenseType: ...
    @property
    def serial(self) -> str: ...
    @property
    def state(self) -> LicenseState: ...
    @property
    def posted_at(self) -> datetime | None: ...
    @property
    def expires_on(self) -> date | None: ...
    @property
    def digest(self) -> str: ...


def question(licenses: Sequence[LicenseLike]) -> Question:
    """Each site's posted site license and each digest's first expired moment; of licenses
    sharing a digest, the last one listed counts (as a mapping by digest keeps it)."""
    posted = {
        f.serial: Posted(f.id, f.digest, f.posted_at)
        for f in licenses
        if f.type is LicenseType.SITE and f.state is LicenseState.POSTED
    }
    by_digest = {f.digest: f for f in licenses}
    expired_from = {
        digest: datetime.combine(f.expires_on + timedelta(days=1), time(), UTC)
        for digest, f in by_digest.items()
        if f.expires_on is not None
    }
    return Question(posted, expired_from)


def behind_why(posted: Posted, at: datetime | None) -> str:
    """Why a phone whose newest request (at ``at``; None: none) did not get ``posted``."""
    since = at is not None and posted.posted_at is not None and at >= posted.posted_at
    return BOOTED_SINCE if since else NO_BOOT_SINCE


def summarize(
    asked: Question,
    sites: Iterable[tuple[str, Sequence[str]]],
    last: Mapping[str, tuple[datetime, str | None]],
) -> list[SiteFetches]:
    """Per site (serial, its MACs in order), from each phone's newest site-license request
    (``last``: MAC -> time, digest): the definition the store's set-wise answer equals."""
    found = []
    for serial, macs in sites:
        current = asked.posted.get(serial)
        behind: dict[str, Sample] = {}
        expired = Sample()
        for mac in sorted(macs):
            at, digest = last.get(mac, (None, None))
            expires = asked.expired_from.get(digest) if digest is not None else None
            if at is not None and expires is not None and at >= expires:
                expired = expired.add(mac)
            if current is None or (at is not None and digest == current.digest):
                continue
            why = behind_why(current, at)
            behind[why] = behind.get(why, Sample()).add(mac)
        found.append(SiteFetches(serial, behind, expired))
    return found

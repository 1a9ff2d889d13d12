"""Each site's phones against its posted site license, set-wise (``core/sitefetches.py``).

The alerts asked, per phone, for its site, its MAC and its newest site-license request, and
walked them in Python: 100,000 phones cost 3-16 s on a loaded machine (docs/store.md). Here
the database does the per-phone work, in three queries for the fleet: each site's phones
counted (the ``(site, mac)`` index); the phones behind their site's posted license (without
a request, or whose newest request got another digest), with whether each booted since the
post; the phones that booted with an expired license (a request of a license's digest at or
after the day after it expires). Only phones behind or expired come back: a fleet that has
its licenses reads a few rows. ``core.sitefetches.summarize`` is the definition these equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

from sqlalchemy import ColumnElement, and_, case, func, literal, null, or_, select
from sqlalchemy.orm import Session

from fleetkey.core.sitefetches import (
    SAMPLE,
    Posted,
    Question,
    Sample,
    SiteFetches,
    behind_why,
)
from fleetkey.store.phonestate import REQUEST
from fleetkey.store.schema import PhoneFileRow, PhoneRow

DIGESTS_A_QUERY: Final = 200  # license digests compared in one expired-phones query
SITES_A_QUERY: Final = 200  # sites in one behind-phones query


def phones_by_site(session: Session) -> dict[str, int]:
    """How many phones each site has, counted by the database (the ``(site, mac)`` index); a
    site without phones is absent."""
    rows = session.execute(
        select(PhoneRow.site_serial, func.count()).group_by(PhoneRow.site_serial)
    )
    return {site: int(count) for site, count in rows}


def _request(name: str) -> ColumnElement[bool]:
    """The join of a phone to its newest request for license file ``name``."""
    return and_(
        PhoneFileRow.mac == PhoneRow.mac,
        PhoneFileRow.file_name == name.lower(),
        PhoneFileRow.kind == REQUEST,
    )


def answer(session: Session, name: str, asked: Question, sites: Iterable[str]) -> list[SiteFetches]:
    """Per site of ``sites``, its phones behind its posted license and booted expired, from
    each phone's newest request for ``name`` (the per-phone state, ``phone_files``)."""
    wanted = list(sites)
    posted = {serial: asked.posted[serial] for serial in wanted if serial in asked.posted}
    behind = _behind(session, name, posted)
    expired = _expired(session, name, asked.expired_from)
    return [
        SiteFetches(serial, behind.get(serial, {}), expired.get(serial, Sample()))
        for serial in wanted
    ]


def _behind(
    session: Session, name: str, posted: Mapping[str, Posted]
) -> dict[str, dict[str, Sample]]:
    """Per site, its phones without a request for ``name`` or whose newest got another digest
    than its posted license's, by why: one query for ``SITES_A_QUERY`` sites (a join the
    database plans as a whole: one query a site took 125 ms each on PostgreSQL)."""
    serials = sorted(posted)
    counts: dict[tuple[str, str], int] = {}
    firsts: dict[tuple[str, str], list[str]] = {}
    for start in range(0, len(serials), SITES_A_QUERY):
        chunk = serials[start : start + SITES_A_QUERY]
        digest = case({s: posted[s].digest for s in chunk}, value=PhoneRow.site_serial)
        since = case(
            {s: literal(posted[s].posted_at, PhoneFileRow.at.type)
             for s in chunk if posted[s].posted_at is not None},
            value=PhoneRow.site_serial,
        ) if any(posted[s].posted_at is not None for s in chunk) else null()  # fmt: skip
        rows = session.execute(
            select(PhoneRow.site_serial, PhoneRow.mac, PhoneFileRow.at >= since)
            .outerjoin(PhoneFileRow, _request(name))
            .where(
                PhoneRow.site_serial.in_(chunk),
                or_(PhoneFileRow.digest.is_(None), PhoneFileRow.digest != digest),
            )
            .order_by(PhoneRow.site_serial, PhoneRow.mac)
        )
        for site, mac, booted in rows:  # in MAC order: the first SAMPLE of each are the sample
            key = site, behind_why(posted[site], posted[site].posted_at if booted else None)
            counts[key] = counts.get(key, 0) + 1
            first = firsts.setdefault(key, [])
            if len(first) < SAMPLE:
                first.append(mac)
    found: dict[str, dict[str, Sample]] = {}
    for (site, why), count in counts.items():
        found.setdefault(site, {})[why] = Sample(count, tuple(firsts[site, why]))
    return found


def _expired(
    session: Session, name: str, expired_from: Mapping[str, datetime]
) -> dict[str, Sample]:
    """Per site, the phones whose newest request got a license's digest on or after the day
    after it expired."""
    found: dict[str, tuple[int, list[str]]] = {}
    digests = sorted(expired_from)
    for start in range(0, len(digests), DIGESTS_A_QUERY):
        chunk = digests[start : start + DIGESTS_A_QUERY]
        bound = case(
            *((PhoneFileRow.digest == d, literal(expired_from[d], PhoneFileRow.at.type))
              for d in chunk),
        )  # fmt: skip
        rows = session.execute(
            select(PhoneRow.site_serial, PhoneRow.mac)
            .join(PhoneFileRow, _request(name))
            .where(PhoneFileRow.digest.in_(chunk), PhoneFileRow.at >= bound)
        )
        for site, mac in rows:
            count, macs = found.get(site, (0, []))
            macs.append(mac)
            found[site] = (count + 1, macs)
    return {
        site: Sample(count, tuple(sorted(macs)[:SAMPLE])) for site, (count, macs) in found.items()
    }

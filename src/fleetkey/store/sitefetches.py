"""Each site's phones against its posted site license, set-wise (``core/sitefetches.py``).

The alerts asked, per phone, for its site, its MAC and its newest site-license request, and
walked them in Python: 100,000 phones cost 3-16 s on a loaded machine (docs/store.md). Here
the database does the per-phone work: each site's phones counted in one query (the
``(site, mac)`` index), the phones behind a site's posted license in one query a site (a phone
without a request, or whose newest request got another digest: how many and the first MACs,
with whether it booted since the post), and the phones that booted with an expired license
in one query for the fleet (a request of a license's digest at or after the day after it
expires). Only phones behind or expired come back: a fleet that has its licenses reads a few
rows. ``core.sitefetches.summarize`` is the definition these equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, case, false, func, literal, or_, select
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
    expired = _expired(session, name, asked.expired_from)
    return [
        SiteFetches(
            serial,
            _behind(session, name, serial, asked.posted[serial]) if serial in asked.posted else {},
            expired.get(serial, Sample()),
        )
        for serial in sites
    ]


def _behind(session: Session, name: str, serial: str, posted: Posted) -> dict[str, Sample]:
    since: ColumnElement[Any] = (
        false() if posted.posted_at is None else PhoneFileRow.at >= posted.posted_at
    )
    rows = session.execute(
        select(PhoneRow.mac, since)
        .outerjoin(PhoneFileRow, _request(name))
        .where(
            PhoneRow.site_serial == serial,
            or_(PhoneFileRow.digest.is_(None), PhoneFileRow.digest != posted.digest),
        )
        .order_by(PhoneRow.mac)
    )
    counts: dict[str, int] = {}
    firsts: dict[str, list[str]] = {}
    for mac, booted in rows:  # in MAC order: the first SAMPLE of each why are the sample
        why = behind_why(posted, posted.posted_at if booted else None)
        counts[why] = counts.get(why, 0) + 1
        first = firsts.setdefault(why, [])
        if len(first) < SAMPLE:
            first.append(mac)
    return {why: Sample(count, tuple(firsts[why])) for why, count in counts.items()}


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

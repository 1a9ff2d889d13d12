"""What an emulator run tells: per phone, installed keys, effective features with provenance,
reboots with their reasons, check-syncs with what each did, and fetches; and a summary over
the fleet."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetkey.core.codec import serialize_keys
from fleetkey.core.license import LicenseKey
from fleetkey.core.terms import format_term
from fleetkey.emulate.fleet import Fleet
from fleetkey.emulate.phone import EmulatedPhone
from fleetkey.emulate.words import answer_word


def installed_key_json(key: LicenseKey | None) -> dict[str, Any] | None:
    """A key in an emulated phone's flash: what it grants until when, and which file it was."""
    if key is None:
        return None
    return {
        "serial": key.serial,
        "type": key.type.value,
        "expires": format_term(key.expiry()),
        "slots": list(key.granted_slots()),
        "file_digest": hashlib.sha256(serialize_keys([key])).hexdigest(),
    }


def emulated_phone_json(
    phone: EmulatedPhone, now: datetime, protocol: str = "http"
) -> dict[str, Any]:
    """One emulated phone in the ``--report`` document (not the inventory's ``phone_json``).
    A fetch's ``method`` and ``answer`` are the protocol's words (``WRQ``, ``ACK``); its
    ``status`` the HTTP status every transport maps answers to."""
    engine = phone.engine
    return {
        "mac": engine.config.mac,
        "address": phone.address,
        "state": engine.state.phase.value,
        "booted_with_expired": engine.state.booted_with_expired,
        "installed": {
            "phone": installed_key_json(engine.installed.phone),
            "site": installed_key_json(engine.installed.site),
        },
        "features": [
            {
                "slot": g.slot,
                "expires": format_term(g.expires),
                "source": g.source.value,
                "serial": g.serial,
            }
            for g in engine.features(now)
        ],
        "reboots": [
            {
                "at": r.at.isoformat(),
                "reason": r.reason.value,
                "requested_at": r.requested_at.isoformat(),
            }
            for r in engine.reboots
        ],
        "check_syncs": [
            {"at": c.at.isoformat(), "reboot": c.reboot, "outcome": c.outcome.value}
            for c in engine.check_syncs
        ],
        "boots": [
            {"at": at.isoformat(), "reason": reason, "features": list(features)}
            for at, reason, features in phone.timeline
        ],
        "fetches": [
            {
                "at": f.at.isoformat(),
                "method": f.method,
                "name": f.name,
                "status": f.status,
                "answer": answer_word(protocol, f.status),
                "bytes": f.bytes,
                "digest": f.digest,
                **({"said": f.said} if f.said else {}),  # what the server said refusing it
            }
            for f in phone.fetches
        ],
        "master": phone.master[0] if phone.master else None,
        "firmware": {
            "installed": phone.flash.image,
            "downloads": phone.image_downloads,
            "bytes": phone.image_bytes,
        },
        "errors": phone.errors[-20:],
    }


def summary(fleet: Fleet, real_s: float) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    site_keys: Counter[str] = Counter()
    for phone in fleet.phones:
        reasons.update(r.reason.value for r in phone.engine.reboots)
        outcomes.update(c.outcome.value for c in phone.engine.check_syncs)
        site = phone.engine.installed.site
        site_keys[(format_term(site.expiry()) or "none") if site else "none"] += 1
    # a boot every request of which failed is no boot: the phone kept nothing of it
    booted = sum(1 for p in fleet.phones if p.boots_done > 0 and not _failed(p))
    requests = sum(fleet.requests.values())
    return {
        "phones": len(fleet.phones),
        "booted": booted,
        "boots": sum(p.boots_done for p in fleet.phones),
        "reboots_by_reason": dict(reasons),
        "check_syncs_by_outcome": dict(outcomes),
        "requests": requests,
        "answers_by_status": {str(k): v for k, v in sorted(fleet.requests.items())},
        "protocol": fleet.protocol,
        "answers": dict(sorted(fleet.answers.items())),  # in the protocol's own words
        "site_license_expiry": dict(site_keys),
        "phones_with_errors": sum(1 for p in fleet.phones if p.errors),
        "phones_failed": sum(1 for p in fleet.phones if _failed(p)),
        "firmware_downloads": sum(p.image_downloads for p in fleet.phones),
        "firmware_bytes": sum(p.image_bytes for p in fleet.phones),
        "all_booted_after_s": (
            round(fleet.all_booted_after_s, 3) if fleet.all_booted_after_s is not None else None
        ),
        "real_seconds": round(real_s, 3),
        "requests_per_s": round(requests / real_s, 1) if real_s else 0.0,
        "virtual_now": fleet.clock.now().isoformat(),
    }


def report(fleet: Fleet, real_s: float) -> dict[str, Any]:
    now = fleet.clock.now()
    return {
        "summary": summary(fleet, real_s),
        "phones": [emulated_phone_json(p, now, fleet.protocol) for p in fleet.phones],
    }


def _failed(phone: EmulatedPhone) -> bool:
    """No request of the phone got a useful answer (a 404 is one: phones expect them)."""
    return not any(f.status < 400 or f.status == 404 for f in phone.fetches)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why every phone failed: ``line`` says it; ``statuses`` are the answers they got (401:
    the server wants logins; 403: it refused them), for the caller's hint."""

    line: str
    statuses: frozenset[int] = frozenset()


def all_failed(fleet: Fleet) -> Failure | None:
    """Why, in one line, when every phone that tried failed; None when any phone got answers
    (or none tried: the run was stopped first)."""
    tried = [p for p in fleet.phones if p.fetches or p.errors]
    if not tried or not all(_failed(p) for p in tried):
        return None
    reasons: Counter[str] = Counter()
    statuses: set[int] = set()
    for phone in tried:
        statuses.update(f.status for f in phone.fetches)
        if phone.errors:
            reasons[phone.errors[0].split(": ", 1)[-1]] += 1
        elif phone.fetches:
            answered = sorted({answer_word(fleet.protocol, f.status) for f in phone.fetches})
            reasons[
                f"every answer was {answered[0]}"
                if len(answered) == 1
                else "the answers were " + ", ".join(answered)
            ] += 1
        else:
            reasons["no request was made"] += 1
    reason, count = reasons.most_common(1)[0]
    phones = len(tried)
    line = f"all {phones:,} phones failed: {reason}" + (
        f" ({count:,} of them)" if count != phones else ""
    )
    return Failure(line, frozenset(statuses))

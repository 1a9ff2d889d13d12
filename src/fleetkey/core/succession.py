"""What posting a key changes for the phones of its serial: the judgement made before a key is
served in place of the one posted now (the store's posted key of that type and serial, never a
file).

A successor takes something from phones, and is posted only when the operator forces it, when:

- it is already expired: phones refuse an expired key (R5) and keep whatever they hold, and the
  key they are served now would no longer be served;
- it lasts less than the key it replaces (R7: the latest term over its granted slots is
  earlier): phones that installed the old key ignore it;
- it ends a feature earlier than the key it replaces does: phones that adopt it lose those days;
- it drops a feature the key it replaces grants: phones that adopt it lose the feature.

Other findings are notes, said but not refused: a successor that lasts exactly as long (R7 tie:
phones adopt it but gain no time), one posted less than :data:`LEAD_DAYS` before the current key
ends (vendor guidance: post a month ahead), and one posted after the current key ended (R8:
phones that booted with the lapsed key fetch it only after a check-sync or configuration poll).

Pure: terms in, findings out; the caller names the features (``label``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from fleetkey.core.terms import NEVER, Term, encode_term, format_term, term_covers

LEAD_DAYS: Final = 30  # TB 44210: post a successor at least one month before the expiry


class Change(enum.StrEnum):
    """What happens to one feature when the successor replaces the posted key."""

    ADDED = "added"
    DROPPED = "dropped"
    SHORTENED = "shortened"
    EXTENDED = "extended"
    SAME = "same"


@dataclass(frozen=True, slots=True)
class FeatureChange:
    slot: int
    before: Term | None  # None: not granted by the posted key (or no key is posted)
    after: Term | None  # None: not granted by the successor

    @property
    def change(self) -> Change:
        if self.before is None:
            return Change.ADDED
        if self.after is None:
            return Change.DROPPED
        before, after = encode_term(self.before), encode_term(self.after)
        if after < before:
            return Change.SHORTENED
        return Change.EXTENDED if after > before else Change.SAME


@dataclass(frozen=True, slots=True)
class Succession:
    """The successor's terms against the posted key's, on ``today``."""

    today: date
    after: Mapping[int, Term]
    before: Mapping[int, Term] | None  # None: nothing of that type and serial is posted

    @property
    def features(self) -> list[FeatureChange]:
        old = self.before or {}
        slots = sorted(set(old) | set(self.after))
        return [FeatureChange(slot, old.get(slot), self.after.get(slot)) for slot in slots]

    @property
    def latest(self) -> Term | None:
        """The successor's duration (R7): its latest term; None when it grants nothing."""
        return _latest(self.after)

    @property
    def replaced_latest(self) -> Term | None:
        return _latest(self.before) if self.before is not None else None

    @property
    def expired(self) -> bool:
        """No feature of the successor is valid today (a key granting nothing is expired)."""
        latest = self.latest
        return latest is None or not term_covers(latest, self.today)

    @property
    def shorter(self) -> bool:
        """R7: phones holding the posted key keep it and ignore the successor."""
        old = self.replaced_latest
        return old is not None and _rank(self.latest) < _rank(old)

    def losses(self, label: Callable[[int], str], replaced: str = "the posted key") -> list[str]:
        """Why posting it takes something from phones, one sentence each; [] when nothing.

        ``label`` names a slot's feature; ``replaced`` names the posted key in the sentences.
        """
        found = []
        latest, old = self.latest, self.replaced_latest
        if self.expired:
            ended = f"expired on {format_term(latest)}" if latest else "grants no feature"
            kept = f", and {replaced} would no longer be served" if self.before is not None else ""
            found.append(f"it {ended}: phones refuse an expired key (R5){kept}")
        if self.shorter and not self.expired:
            found.append(
                f"it lasts until {format_term(latest)}, {replaced} until {format_term(old)}: "
                f"phones that installed {replaced} ignore it (R7)"
            )
        for item in self.features:
            name = label(item.slot)
            if item.change is Change.DROPPED:
                found.append(f"{name} (until {format_term(item.before)}) would be dropped")
            elif item.change is Change.SHORTENED:
                lost = _days_lost(item.before, item.after)
                found.append(
                    f"{name} would end on {format_term(item.after)} instead of "
                    f"{format_term(item.before)}" + (f" ({lost:,} days lost)" if lost else "")
                )
        return found

    def notes(self, replaced: str = "the posted key") -> list[str]:
        """What the operator should hear that takes nothing from phones."""
        old = self.replaced_latest
        if old is None or self.expired or self.shorter:
            return []
        found = []
        if _rank(self.latest) == _rank(old):
            found.append(
                f"it lasts exactly as long as {replaced} ({format_term(old)}): phones adopt it "
                "(R7 tie) but gain no time"
            )
        if old is not NEVER:
            left = (old - self.today).days
            if left < 0:
                found.append(
                    f"{replaced} ended on {format_term(old)}: phones that booted with it fetch "
                    "this key only after a check-sync or a configuration poll (R8); plan a "
                    "rollout (fleetkey rollout plan)"
                )
            elif left < LEAD_DAYS:
                found.append(
                    f"{replaced} ends on {format_term(old)}, in {left} day(s): less than the "
                    f"{LEAD_DAYS} days ahead the vendor advises; roll it out soon"
                )
        return found


def _latest(terms: Mapping[int, Term]) -> Term | None:
    return max(terms.values(), key=encode_term, default=None)


def _rank(term: Term | None) -> int:
    return 0 if term is None else encode_term(term)


def _days_lost(before: Term | None, after: Term | None) -> int | None:
    """Days between two dated terms; None when either is missing or never (no count)."""
    if isinstance(before, date) and isinstance(after, date):
        return (before - after).days
    return None

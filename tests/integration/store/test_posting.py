"""Posting judged against the store's posted key, rollback, operator trust and silenced alerts,
on SQLite and PostgreSQL: what is refused changes nothing, what is done is audited."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.alerts import Alert
from fleetkey.core.codec import parse_license_file, serialize_keys
from fleetkey.core.license import LicenseKey, LicenseState, LicenseType
from fleetkey.core.terms import NEVER, Term
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.errors import ConflictError, InputError, NotFoundError, UnsafePostError
from fleetkey.store import alerts, audit, posting, registry
from fleetkey.store.records import LicenseOrigin
from fleetkey.store.store import Store
from fleetkey.testing import make_license, trusted_keys_for

from tests.helpers import VENDOR_FILE

CLOCK = FixedClock()  # 2026-01-01
SITE = "100000000001"


def label(slot: int) -> str:
    return {0: "corporate-directory", 1: "conference-management"}.get(slot, f"slot-{slot}")


def issued(store: Store, terms: dict[int, Term], serial: str = SITE) -> int:
    key = make_license(serial=serial, type=LicenseType.SITE, terms=terms)
    with store.transaction() as session:
        return registry.record(
            session, CLOCK, "t", key, trusted_keys_for().check(key),
            content=serialize_keys([key]), file_name="000000000000-license.cfg",
        ).id  # fmt: skip


def post(store: Store, license_id: int, **options: object) -> posting.Judgement:
    with store.transaction() as session:
        return posting.post(session, CLOCK, "op", license_id, label=label, **options)  # type: ignore[arg-type]


def state(store: Store, license_id: int) -> LicenseState:
    with store.transaction() as session:
        return registry.get(session, license_id).state


def last_event(store: Store) -> audit.AuditEvent:
    with store.transaction() as session:
        return audit.events(session, limit=1)[0]


class TestPostingIsJudged:
    def test_a_shorter_successor_is_refused_naming_what_is_lost(self, store: Store) -> None:
        first = issued(store, {0: date(2027, 6, 30), 1: NEVER})
        post(store, first)
        second = issued(store, {0: date(2026, 1, 20)})
        with pytest.raises(UnsafePostError) as caught:
            post(store, second)
        assert caught.value.losses == [
            f"it lasts until 2026-01-20, license {first} until never: phones that installed "
            f"license {first} ignore it (R7)",
            "corporate-directory would end on 2026-01-20 instead of 2027-06-30 (526 days lost)",
            "conference-management (until never) would be dropped",
        ]
        assert caught.value.field == "force"
        assert (state(store, first), state(store, second)) == (
            LicenseState.POSTED,
            LicenseState.ISSUED,
        )
        forced = post(store, second, force=True)
        assert forced.license.state is LicenseState.POSTED
        event = last_event(store)
        assert (event.action, event.details["forced"]) == ("license.post", caught.value.losses)

    def test_an_expired_key_is_refused_even_with_nothing_posted(self, store: Store) -> None:
        old = issued(store, {0: date(2025, 12, 31)})
        with pytest.raises(UnsafePostError, match="it expired on 2025-12-31: phones refuse"):
            post(store, old)
        assert state(store, old) is LicenseState.ISSUED

    def test_a_longer_successor_with_the_same_features_needs_nothing(self, store: Store) -> None:
        post(store, issued(store, {0: date(2026, 1, 20)}))
        judgement = post(store, issued(store, {0: date(2027, 1, 20)}))
        assert judgement.losses == []
        assert judgement.notes == [
            "license 1 ends on 2026-01-20, in 19 day(s): less than the 30 days ahead the "
            "vendor advises; roll it out soon"
        ]

    def test_the_judgement_is_against_the_same_serial_only(self, store: Store) -> None:
        post(store, issued(store, {0: NEVER}, serial="100000000002"))
        assert post(store, issued(store, {0: date(2026, 6, 30)})).losses == []

    def test_a_dry_run_judges_without_changing_anything(self, store: Store) -> None:
        first = issued(store, {0: date(2027, 6, 30)})
        post(store, first)
        second = issued(store, {0: date(2026, 6, 30)})
        head = last_event(store).seq
        with store.transaction() as session:
            judgement = posting.judge(session, CLOCK, second, label)
        assert judgement.replaced is not None
        assert judgement.replaced.id == first
        assert len(judgement.losses) == 2
        assert (last_event(store).seq, state(store, second)) == (head, LicenseState.ISSUED)


def test_a_batch_is_judged_serial_by_serial_against_the_posted_keys(store: Store) -> None:
    post(store, issued(store, {0: date(2027, 6, 30)}))
    wanted = [(SITE, {0: date(2027, 1, 1)}), ("100000000002", {0: date(2025, 6, 30)}),
              ("100000000003", {0: NEVER})]  # fmt: skip
    with store.transaction() as session:
        found = posting.judge_terms_batch(session, CLOCK, LicenseType.SITE, wanted, label)
        alone = posting.judge_terms_batch(
            session, CLOCK, LicenseType.SITE, wanted, label, posting=False
        )
        one = posting.judge_terms(session, CLOCK, LicenseType.SITE, SITE, wanted[0][1], label)
        none = posting.judge_terms(session, CLOCK, LicenseType.SITE, "100000000003", {0: NEVER})
    assert found == {
        SITE: [
            "it lasts until 2027-01-01, license 1 until 2027-06-30: phones that installed "
            "license 1 ignore it (R7)",
            "corporate-directory would end on 2027-01-01 instead of 2027-06-30 (180 days lost)",
        ],
        "100000000002": ["it expired on 2025-06-30: phones refuse an expired key (R5)"],
    }
    assert (one, none) == (found[SITE], [])
    assert list(alone) == ["100000000002"]


class TestRollback:
    def test_rollback_posts_the_previous_key_and_a_second_goes_further_back(
        self, store: Store
    ) -> None:
        ids = [issued(store, {0: date(2026 + n, 6, 30)}) for n in range(3)]
        for key_id in ids:
            post(store, key_id)
        with store.transaction() as session:
            with pytest.raises(UnsafePostError, match="rolling back to license 2"):
                posting.rollback(session, CLOCK, "op", LicenseType.SITE, SITE)
            back = posting.rollback(session, CLOCK, "op", LicenseType.SITE, SITE, force=True)
        assert (back.license.id, back.replaced.id if back.replaced else None) == (ids[1], ids[2])
        event = last_event(store)
        assert (event.action, event.subject, event.details["replaces"]) == (
            "license.rollback",
            f"license {ids[1]}",
            ids[2],
        )
        with store.transaction() as session:
            posting.rollback(session, CLOCK, "op", LicenseType.SITE, SITE, force=True)
            posted = registry.posted(session, LicenseType.SITE, SITE)
            assert posted is not None
            assert (posted.id, posted.succeeds_id) == (ids[0], None)  # the chain is kept
            with pytest.raises(ConflictError, match="there is no previous key to post again"):
                posting.rollback(session, CLOCK, "op", LicenseType.SITE, SITE)
        assert post(store, ids[2]).license.state is LicenseState.POSTED  # a roll forward
        with store.transaction() as session:
            assert registry.get(session, ids[2]).succeeds_id == ids[1]

    def test_a_revoked_previous_key_is_never_served_again(self, store: Store) -> None:
        first, second = (issued(store, {0: date(2027, 6, 30)}) for _ in range(2))
        post(store, first)
        post(store, second)
        with store.transaction() as session:
            registry.revoke(session, CLOCK, "op", first)
        with (
            pytest.raises(ConflictError, match=f"license {first}, which license {second} "),
            store.transaction() as session,
        ):
            posting.rollback(session, CLOCK, "op", LicenseType.SITE, SITE)
        assert state(store, second) is LicenseState.POSTED

    def test_nothing_posted_is_nothing_to_roll_back(self, store: Store) -> None:
        with (
            pytest.raises(NotFoundError, match="no Site key for 100000000009 is posted"),
            store.transaction() as session,
        ):
            posting.rollback(session, CLOCK, "op", LicenseType.SITE, "100000000009")


def vendor_key(store: Store) -> int:
    data = VENDOR_FILE.read_bytes()
    key: LicenseKey = parse_license_file(data).keys[0]
    with store.transaction() as session:
        return registry.record(
            session, CLOCK, "t", key, trusted_keys_for().check(key), content=data,
            file_name="000000000000-license.cfg", origin=LicenseOrigin.IMPORTED,
        ).id  # fmt: skip


class TestTrust:
    def test_an_operator_vouches_for_a_vendor_key_once(self, store: Store) -> None:
        key_id = vendor_key(store)
        with store.transaction() as session:
            trusted = posting.trust(session, CLOCK, "alice", key_id, " the reseller's file ")
        assert trusted.signature is SignatureStatus.TRUSTED_BY_OPERATOR
        event = last_event(store)
        assert (event.action, event.actor) == ("license.trust", "alice")
        assert event.details | {"audited_rows": None} == {
            "serial": "100000001007", "type": "Site", "was": "unverifiable",
            "reason": "the reseller's file", "audited_rows": None,
        }  # fmt: skip
        judgement = post(store, key_id, force=True)  # no reason needed now; expired: forced
        assert judgement.license.signature is SignatureStatus.TRUSTED_BY_OPERATOR
        assert "accepted_unverified" not in last_event(store).details
        with (
            pytest.raises(ConflictError, match="trusted by an operator already"),
            store.transaction() as session,
        ):
            posting.trust(session, CLOCK, "alice", key_id, "again")

    @pytest.mark.parametrize("reason", ["", "=cmd", "x" * 501])
    def test_the_reason_is_real_text(self, store: Store, reason: str) -> None:
        key_id = vendor_key(store)
        with pytest.raises(InputError), store.transaction() as session:
            posting.trust(session, CLOCK, "alice", key_id, reason)
        with store.transaction() as session:
            assert registry.get(session, key_id).signature is SignatureStatus.UNVERIFIABLE

    def test_only_an_unverifiable_signature_can_be_vouched_for(self, store: Store) -> None:
        key_id = issued(store, {0: NEVER})
        with (
            pytest.raises(ConflictError, match="verifies against a trusted key already"),
            store.transaction() as session,
        ):
            posting.trust(session, CLOCK, "alice", key_id, "why not")


def alert(key: str = "bad-signature:4") -> Alert:
    return Alert(key, "bad-file", "critical", "Site 100000001007", "unverifiable")


class TestSilencedAlerts:
    def test_a_silence_lasts_until_its_day_ends_then_the_alert_fires_again(
        self, store: Store
    ) -> None:
        clock = FixedClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
        with store.transaction() as session:
            alerts.sync(session, clock, [alert()], ["webhook:http://x"])
            acked = alerts.ack(session, clock, "bob", "bad-signature:4", date(2026, 3, 5))
        assert acked.to_json()["acked"] == {
            "at": "2026-03-01T12:00:00+00:00",
            "by": "bob",
            "until": "2026-03-06T00:00:00+00:00",
        }
        with store.transaction() as session:
            assert alerts.due(session, clock.now()) == []  # the queued "fired" is silenced
            assert alerts.sync(session, clock, [alert()]).fired == []
        clock.advance(timedelta(days=4, hours=12))  # 2026-03-06 00:00: the silence is over
        with store.transaction() as session:
            assert alerts.sync(session, clock, [alert()], ["webhook:http://x"]).fired == [
                "bad-signature:4"
            ]
            assert [d.event for d in alerts.due(session, clock.now())] == ["fired", "fired"]
            assert alerts.listing(session)[0].silenced is False
        assert last_event(store).action == "alert.ack"

    def test_a_silence_until_resolved_ends_with_the_alert(self, store: Store) -> None:
        with store.transaction() as session:
            alerts.sync(session, CLOCK, [alert()])
            alerts.ack(session, CLOCK, "bob", "bad-signature:4", None)
            assert alerts.listing(session)[0].silenced
            assert alerts.sync(session, CLOCK, []).resolved == ["bad-signature:4"]
            with pytest.raises(ConflictError, match="there is nothing to silence"):
                alerts.ack(session, CLOCK, "bob", "bad-signature:4", None)
            assert alerts.sync(session, CLOCK, [alert()]).fired == ["bad-signature:4"]
            assert not alerts.listing(session)[0].silenced

    @pytest.mark.parametrize(
        ("key", "until", "error", "says"),
        [
            ("nope", None, NotFoundError, "no alert has the key 'nope'"),
            ("x" * 300, None, NotFoundError, "no alert has the key"),
            ("bad-signature:4", date(2025, 12, 31), InputError, "that day has passed"),
            ("bad-signature:4", date.max, InputError, "past the year 9999"),
        ],
    )
    def test_bad_acks_change_nothing(
        self, store: Store, key: str, until: date | None, error: type[Exception], says: str
    ) -> None:
        with store.transaction() as session:
            alerts.sync(session, CLOCK, [alert()])
        with pytest.raises(error, match=says), store.transaction() as session:
            alerts.ack(session, CLOCK, "bob", key, until)
        with store.transaction() as session:
            assert not alerts.listing(session)[0].silenced

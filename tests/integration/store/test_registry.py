"""License keys in the store: record, post, succession, revocation, expiry listing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.codec import parse_license_file, serialize_keys
from fleetkey.core.license import LicenseKey, LicenseState, LicenseType
from fleetkey.core.terms import NEVER
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.errors import ConflictError, InputError, NotFoundError
from fleetkey.store import audit, posting, registry
from fleetkey.store.records import LicenseOrigin
from fleetkey.store.store import Store
from fleetkey.testing import make_license, trusted_keys_for

from tests.helpers import VENDOR_FILE

CLOCK = FixedClock()
TODAY = date(2026, 1, 1)


def site_key(expires: date) -> LicenseKey:
    return make_license(serial="100000000001", type=LicenseType.SITE, expires=expires)


def record(store: Store, key: LicenseKey, *, post: bool) -> int:
    data = serialize_keys([key])
    with store.transaction() as session:
        stored = registry.record(
            session,
            CLOCK,
            "tester",
            key,
            trusted_keys_for().check(key),
            content=data,
            file_name="000000000000-license.cfg",
        )
        if post:
            posting.post(session, CLOCK, "tester", stored.id)
    return stored.id


class TestSuccession:
    def test_posting_a_successor_supersedes_the_previous_key(self, store: Store) -> None:
        first = record(store, site_key(date(2026, 6, 30)), post=True)
        second = record(store, site_key(date(2027, 6, 30)), post=True)
        with store.transaction() as session:
            assert registry.get(session, first).state is LicenseState.SUPERSEDED
            newer = registry.get(session, second)
            assert newer.state is LicenseState.POSTED
            assert newer.succeeds_id == first
            assert registry.posted(session, LicenseType.SITE, "100000000001") == newer
            actions = [e.action for e in audit.events(session)]
        assert actions == ["license.issued", "license.post"] * 2

    def test_issued_key_is_not_served_until_posted(self, store: Store) -> None:
        key_id = record(store, site_key(date(2026, 6, 30)), post=False)
        with store.transaction() as session:
            assert registry.posted(session, LicenseType.SITE, "100000000001") is None
            posting.post(session, CLOCK, "tester", key_id)
        with store.transaction() as session:
            posted = registry.posted(session, LicenseType.SITE, "100000000001")
            assert posted is not None
            assert posted.id == key_id
            with pytest.raises(InputError, match="only an issued or superseded key can be"):
                posting.post(session, CLOCK, "tester", key_id)

    def test_stored_content_is_the_file_served(self, store: Store) -> None:
        key = site_key(date(2026, 6, 30))
        key_id = record(store, key, post=True)
        with store.transaction() as session:
            data = registry.content(session, key_id)
            stored = registry.get(session, key_id)
        assert parse_license_file(data).keys == (key,)
        assert stored.digest == registry.file_digest(data)
        assert stored.terms == {0: date(2026, 6, 30)}
        assert stored.signature == "valid"

    def test_revoke(self, store: Store) -> None:
        key_id = record(store, site_key(date(2026, 6, 30)), post=True)
        with store.transaction() as session:
            assert registry.revoke(session, CLOCK, "t", key_id).state is LicenseState.REVOKED
            assert registry.posted(session, LicenseType.SITE, "100000000001") is None
        with pytest.raises(InputError, match="already revoked"), store.transaction() as session:
            registry.revoke(session, CLOCK, "t", key_id)
        with (
            pytest.raises(NotFoundError, match="license 999 is not in the store"),
            store.transaction() as session,
        ):
            registry.revoke(session, CLOCK, "t", 999)


class TestListing:
    def test_expiring_within_counts_days_and_skips_never(self, store: Store) -> None:
        soon = record(store, site_key(date(2026, 1, 31)), post=False)
        record(store, site_key(date(2026, 3, 31)), post=False)
        record(store, make_license(expires=NEVER), post=False)
        with store.transaction() as session:
            found = registry.listing(session, today=TODAY, expiring_within=30)
            everything = registry.listing(session, today=TODAY)
            with pytest.raises(InputError, match="0 or more"):
                registry.listing(session, today=TODAY, expiring_within=-1)
        assert [item.id for item in found] == [soon]
        assert [item.expires_on for item in everything][-1] is None

    def test_state_filter(self, store: Store) -> None:
        record(store, site_key(date(2026, 6, 30)), post=True)
        record(store, site_key(date(2027, 6, 30)), post=True)
        with store.transaction() as session:
            superseded = registry.listing(session, today=TODAY, states=(LicenseState.SUPERSEDED,))
        assert len(superseded) == 1


def test_vendor_file_is_stored_unverifiable(store: Store) -> None:
    data = VENDOR_FILE.read_bytes()
    (key,) = parse_license_file(data).keys
    check = trusted_keys_for().check(key)
    assert check.status is SignatureStatus.UNVERIFIABLE
    with store.transaction() as session:
        stored = registry.record(
            session,
            CLOCK,
            "t",
            key,
            check,
            content=data,
            file_name="000000000000-license.cfg",
            origin=LicenseOrigin.IMPORTED,
        )
        assert registry.find_by_digest(session, registry.file_digest(data)) == [stored]
    assert stored.signature == "unverifiable"
    assert stored.signing_key is None
    assert stored.expires_on == date(2015, 3, 16)
    assert stored.origin is LicenseOrigin.IMPORTED


def test_batch_record_supersedes_posted_keys(store: Store) -> None:
    old = make_license(serial="0004f2000001", expires=date(2026, 6, 30))
    old_id = record(store, old, post=True)
    keys = [make_license(serial=f"0004f2{i:06x}") for i in range(1, 2501)]
    entries = [(k, serialize_keys([k]), f"{k.serial}-license.cfg") for k in keys]
    with store.transaction() as session:
        assert (
            registry.record_many(session, CLOCK, "t", entries, signing_key="k", post=True) == 2500
        )
    with store.transaction() as session:
        assert registry.get(session, old_id).state is LicenseState.SUPERSEDED
        newer = registry.posted(session, LicenseType.PHONE, "0004f2000001")
        assert newer is not None
        assert newer.succeeds_id == old_id
        assert len(registry.listing(session, today=TODAY, states=(LicenseState.POSTED,))) == 2500
        assert audit.events(session, limit=1)[0].details["superseded"] == 1


def vendor_key() -> tuple[LicenseKey, bytes]:
    data = VENDOR_FILE.read_bytes()
    return parse_license_file(data).keys[0], data


def tampered(key: LicenseKey) -> LicenseKey:
    """``key`` with every granted term stretched to never: its signature no longer holds."""
    return replace(key, words=tuple(0xFFFF if word else 0 for word in key.words))


class TestOnlyValidKeysAreServed:
    def test_an_unverifiable_key_is_never_posted_without_a_reason(self, store: Store) -> None:
        valid = record(store, make_license(serial="0004f2000001", type=LicenseType.SITE), post=True)
        key, data = vendor_key()
        with store.transaction() as session:
            stored = registry.record(
                session, CLOCK, "t", key, trusted_keys_for().check(key), content=data,
                file_name="000000000000-license.cfg", origin=LicenseOrigin.IMPORTED,
            )  # fmt: skip
        with (
            pytest.raises(ConflictError, match="has an unverifiable signature") as caught,
            store.transaction() as session,
        ):
            posting.post(session, CLOCK, "t", stored.id, force=True)
        assert caught.value.field == "accept_unverified"
        with store.transaction() as session:
            assert registry.get(session, valid).state is LicenseState.POSTED
            assert registry.get(session, stored.id).state is LicenseState.ISSUED

    def test_a_tampered_key_is_never_posted_without_a_reason(self, store: Store) -> None:
        valid = record(store, site_key(date(2026, 6, 30)), post=True)
        forged = record(store, tampered(site_key(date(2026, 6, 30))), post=False)
        with store.transaction() as session:
            assert registry.get(session, forged).signature is SignatureStatus.INVALID
        with (
            pytest.raises(ConflictError, match=f"license {forged} .* has an invalid signature"),
            store.transaction() as session,
        ):
            posting.post(session, CLOCK, "t", forged)
        with store.transaction() as session:
            assert registry.posted(session, LicenseType.SITE, "100000000001") == registry.get(
                session, valid
            )

    def test_an_accepted_unverified_key_is_posted_with_who_and_why_audited(
        self, store: Store
    ) -> None:
        key, data = vendor_key()
        with store.transaction() as session:
            stored = registry.record(
                session, CLOCK, "t", key, trusted_keys_for().check(key), content=data,
                file_name="000000000000-license.cfg", origin=LicenseOrigin.IMPORTED,
            )  # fmt: skip
        with store.transaction() as session:
            reason = " vendor file, ticket 42 "
            posted = posting.post(
                session, CLOCK, "alice@cli", stored.id, accept_unverified=reason, force=True
            ).license  # it expired in 2015: forced
            event = audit.events(session, limit=1)[0]
        assert posted.state is LicenseState.POSTED
        assert (event.action, event.actor) == ("license.post", "alice@cli")
        assert event.details["accepted_unverified"] == {
            "signature": "unverifiable",
            "reason": "vendor file, ticket 42",
        }

    @pytest.mark.parametrize(
        ("reason", "says"), [("  ", "is empty"), ("x" * 501, "at most 500"), ("=1", "formula")]
    )
    def test_the_reason_is_real_text(self, store: Store, reason: str, says: str) -> None:
        forged = record(store, tampered(site_key(date(2026, 6, 30))), post=False)
        with pytest.raises(InputError, match=says), store.transaction() as session:
            posting.post(session, CLOCK, "t", forged, accept_unverified=reason)


class TestKeysAreFoundByTheKey:
    def test_the_same_key_in_other_bytes_is_found(self, store: Store) -> None:
        key = site_key(date(2026, 6, 30))
        key_id = record(store, key, post=False)
        other = make_license(serial="100000000001", type=LicenseType.SITE)
        with store.transaction() as session:
            found = registry.stored_keys(session, [key, other, tampered(key)])
        assert {k: v.id for k, v in found.items()} == {key: key_id}
        # a file with a comment around the same key still holds the same key
        assert parse_license_file(
            serialize_keys([key]).replace(b"<licenses>", b"<!-- x --><licenses>")
        ).keys == (key,)

    def test_a_huge_id_is_not_in_the_store(self, store: Store) -> None:
        with (
            pytest.raises(NotFoundError, match="is not in the store"),
            store.transaction() as session,
        ):
            registry.get(session, 10**30)

    def test_a_horizon_past_the_calendar_is_an_input_error(self, store: Store) -> None:
        with pytest.raises(InputError, match="past the year 9999"), store.transaction() as s:
            registry.listing(s, today=TODAY, expiring_within=10**7)

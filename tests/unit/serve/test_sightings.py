"""Which sightings a server keeps for the flush: only those that can change the inventory."""

from __future__ import annotations

from fleetkey.serve.identity import Sightings, UnknownPolicy

KNOWN = "0004f2000001"
STRANGER = "0004f2999999"


def test_a_phone_in_the_inventory_is_watched_under_every_policy() -> None:
    for policy in UnknownPolicy:
        assert Sightings(policy).watches(KNOWN, known=True)


def test_a_mac_the_inventory_does_not_know_is_not_watched_when_served_or_refused() -> None:
    for policy in (UnknownPolicy.SERVE, UnknownPolicy.REFUSE):
        sightings = Sightings(policy, register_site="100000000001")
        sightings.admit(STRANGER, False, None, None)
        assert not sightings.watches(STRANGER, known=False)


def test_a_mac_queued_for_registration_is_watched_until_it_is_registered() -> None:
    sightings = Sightings(UnknownPolicy.REGISTER, register_site="100000000001")
    assert not sightings.watches(STRANGER, known=False)  # not asked for yet
    assert sightings.admit(STRANGER, False, None, None)
    assert sightings.watches(STRANGER, known=False)  # its first sighting goes with it


def test_without_a_registration_site_nothing_is_queued_and_the_stranger_is_not_watched() -> None:
    sightings = Sightings(UnknownPolicy.REGISTER)
    assert sightings.admit(STRANGER, False, None, None)
    assert not sightings.watches(STRANGER, known=False)

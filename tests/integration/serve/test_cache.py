"""The in-memory view servers answer from: what a refresh picks up, and when it does nothing."""

from __future__ import annotations

from fleetkey.core.license import LicenseType
from fleetkey.serve.cache import PostedLicenses
from fleetkey.store import inventory, registry
from fleetkey.store.records import Site
from fleetkey.store.store import Store

from tests.integration.serve.test_content import CLOCK, MAC, SITE_A, post, site_key


def test_refresh_sees_posts_revocations_and_inventory(store: Store) -> None:
    view = PostedLicenses(store)
    view.refresh()
    assert view.license(LicenseType.SITE, SITE_A) is None
    assert not view.is_site(SITE_A)
    with store.transaction() as session:
        inventory.add_site(session, CLOCK, "t", Site(SITE_A, "A", "UTC", "01:00", "04:00"))
        inventory.import_phones(
            session, CLOCK, "t", f"mac,site,model\n{MAC},{SITE_A},VVX_500\n".encode(), source="p"
        )
    license_id = post(store, site_key(SITE_A))
    view.refresh()
    served = view.license(LicenseType.SITE, SITE_A)
    assert served is not None
    assert served.license_id == license_id
    assert view.site_of(MAC) == SITE_A
    assert view.is_site(SITE_A)
    with store.transaction() as session:
        registry.revoke(session, CLOCK, "t", license_id)
    view.refresh()
    assert view.license(LicenseType.SITE, SITE_A) is None


def test_refresh_without_changes_keeps_the_view(store: Store) -> None:
    post(store, site_key(SITE_A))
    view = PostedLicenses(store)
    view.refresh()
    first = view.view
    view.refresh()
    view.refresh()
    assert view.view is first
    assert view.refreshes == 1

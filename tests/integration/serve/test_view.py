"""The in-memory view over the store, on both backends: what phones are served, and when a
refresh picks a change up (posts, successors, revocations, the inventory)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.terms import NEVER
from fleetkey.core.useragent import parse_user_agent
from fleetkey.serve.content import ContentKind
from fleetkey.serve.fetching import Pipeline
from fleetkey.serve.tree import FileTree
from fleetkey.serve.view import LiveView
from fleetkey.store import inventory, phone_import, posting, registry
from fleetkey.store.records import Site
from fleetkey.store.store import Store
from fleetkey.testing import make_license, trusted_keys_for

CLOCK = FixedClock()
MAC = "0004f2000001"
SITE_A, SITE_B = "100000000001", "100000000002"
SITE_FILE = "000000000000-license.cfg"
TAGGED = parse_user_agent(f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC})")


def post(store: Store, key: LicenseKey, *, post: bool = True) -> int:
    name = SITE_FILE if key.type is LicenseType.SITE else f"{key.serial}-license.cfg"
    with store.transaction() as session:
        license_id = registry.record(
            session,
            CLOCK,
            "t",
            key,
            trusted_keys_for().check(key),
            content=serialize_keys([key]),
            file_name=name,
        ).id
        if post:  # forced: these tests set up what is served, they do not judge a post
            posting.post(session, CLOCK, "t", license_id, force=True)
        return license_id


def site_key(serial: str, expires: date = date(2027, 1, 31)) -> LicenseKey:
    return make_license(serial=serial, type=LicenseType.SITE, expires=expires)


@pytest.fixture
def fleet(store: Store, tmp_path: Path) -> tuple[Store, LiveView, Pipeline]:
    """Two sites, one phone at A, a tree with a default site file; the view and pipeline."""
    tree = tmp_path / "provisioning"
    tree.mkdir()
    (tree / SITE_FILE).write_bytes(b"<licenses/>")
    with store.transaction() as session:
        for serial in (SITE_A, SITE_B):
            inventory.add_site(session, CLOCK, "t", Site(serial, serial, "UTC", "01:00", "04:00"))
        csv = f"mac,site,model\n{MAC},{SITE_A},VVX_500\n".encode()
        phone_import.import_phones(session, CLOCK, "t", csv, source="p.csv")
    live = LiveView(store)
    pipeline = Pipeline(live, FileTree(tree), FileTree(tmp_path / "uploads"))
    return store, live, pipeline


def test_a_posted_phone_key_is_served_with_its_digest(
    fleet: tuple[Store, LiveView, Pipeline],
) -> None:
    store, live, pipeline = fleet
    key = make_license(serial=MAC, expires=NEVER)
    license_id = post(store, key)
    assert live.refresh()
    content = pipeline.decide((f"{MAC}-license.cfg",), None, None, 0.0).content
    assert content is not None
    assert (content.kind, content.body, content.license_id, content.size) == (
        ContentKind.PHONE_LICENSE,
        serialize_keys([key]),
        license_id,
        len(serialize_keys([key])),
    )
    assert content.digest == registry.file_digest(serialize_keys([key]))


def test_issued_unposted_and_revoked_keys_are_not_served(
    fleet: tuple[Store, LiveView, Pipeline],
) -> None:
    store, live, pipeline = fleet
    post(store, make_license(serial=MAC), post=False)
    live.refresh()
    assert pipeline.decide((f"{MAC}-license.cfg",), None, None, 0.0).status == 404
    posted = post(store, make_license(serial=MAC))
    live.refresh()
    assert pipeline.decide((f"{MAC}-license.cfg",), None, None, 0.0).status == 200
    with store.transaction() as session:
        registry.revoke(session, CLOCK, "t", posted)
    live.refresh()
    assert pipeline.decide((f"{MAC}-license.cfg",), None, None, 0.0).status == 404


def test_each_phone_gets_its_sites_key_and_a_successor_replaces_it(
    fleet: tuple[Store, LiveView, Pipeline],
) -> None:
    store, live, pipeline = fleet
    post(store, site_key(SITE_A))
    post(store, site_key(SITE_B))
    live.refresh()
    first = pipeline.decide((SITE_FILE,), None, TAGGED, 0.0).content
    assert first is not None
    assert first.body == serialize_keys([site_key(SITE_A)])
    newer = post(store, site_key(SITE_A, date(2028, 1, 31)))
    live.refresh()
    second = pipeline.decide((SITE_FILE,), None, TAGGED, 0.0).content
    assert second is not None
    assert second.license_id == newer
    prefixed = pipeline.decide((SITE_B, SITE_FILE), None, None, 0.0).content
    assert prefixed is not None
    assert prefixed.body == serialize_keys([site_key(SITE_B)])


def test_a_phone_the_inventory_does_not_place_gets_the_tree_default(
    fleet: tuple[Store, LiveView, Pipeline],
) -> None:
    store, live, pipeline = fleet
    post(store, site_key(SITE_A))
    live.refresh()
    stranger = parse_user_agent("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2999999)")
    content = pipeline.decide((SITE_FILE,), None, stranger, 0.0).content
    assert content is not None
    assert (content.kind, content.body) == (
        ContentKind.SITE_LICENSE,
        b"<licenses/>",
    )


def test_a_site_with_no_posted_key_gets_the_file_in_its_place_not_the_default(
    fleet: tuple[Store, LiveView, Pipeline], tmp_path: Path
) -> None:
    store, live, pipeline = fleet
    own = tmp_path / "provisioning" / SITE_A / SITE_FILE
    own.parent.mkdir()
    own.write_bytes(serialize_keys([site_key(SITE_A)]))  # as another server's tree has it
    live.refresh()
    for path in ((SITE_FILE,), (SITE_A, SITE_FILE)):
        content = pipeline.decide(path, None, TAGGED, 0.0).content
        assert content is not None
        assert content.body == own.read_bytes()
    posted = post(store, site_key(SITE_A, date(2028, 1, 31)))  # the store's key comes first
    live.refresh()
    content = pipeline.decide((SITE_FILE,), None, TAGGED, 0.0).content
    assert content is not None
    assert content.license_id == posted


def test_a_phone_added_to_the_inventory_is_placed_at_the_next_refresh(
    fleet: tuple[Store, LiveView, Pipeline],
) -> None:
    store, live, pipeline = fleet
    post(store, site_key(SITE_B))
    live.refresh()
    newcomer = "0004f2000002"
    agent = parse_user_agent(f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{newcomer})")
    assert pipeline.decide((SITE_FILE,), None, agent, 0.0).site is None
    with store.transaction() as session:
        csv = f"mac,site,model\n{MAC},{SITE_A},VVX_500\n{newcomer},{SITE_B},VVX_500\n".encode()
        phone_import.import_phones(session, CLOCK, "t", csv, source="p2.csv")
    assert live.refresh()
    ruling = pipeline.decide((SITE_FILE,), None, agent, 0.0)
    assert ruling.site == SITE_B
    assert ruling.content is not None
    assert ruling.content.body == serialize_keys([site_key(SITE_B)])


def test_a_refresh_without_changes_keeps_the_view(store: Store) -> None:
    post(store, site_key(SITE_A))
    live = LiveView(store)
    assert live.refresh()
    first = live.view
    assert not live.refresh()
    assert not live.refresh()
    assert live.view is first
    assert live.refreshes == 1

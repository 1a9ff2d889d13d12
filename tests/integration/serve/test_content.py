"""The content resolver on both backends: what each phone gets for each path."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.terms import NEVER
from fleetkey.serve.content import ContentKind, ContentResolver, Requester, mac_in_name
from fleetkey.store import inventory, registry
from fleetkey.store.records import Site
from fleetkey.store.store import Store
from fleetkey.testing import make_license, trusted_keys_for

CLOCK = FixedClock()
MAC = "0004f2000001"
SITE_A, SITE_B = "100000000001", "100000000002"


def post(store: Store, key: LicenseKey, *, post: bool = True) -> int:
    data = serialize_keys([key])
    name = (
        "000000000000-license.cfg" if key.type is LicenseType.SITE else f"{key.serial}-license.cfg"
    )
    with store.transaction() as session:
        return registry.record(
            session,
            CLOCK,
            "t",
            key,
            trusted_keys_for().check(key),
            content=data,
            file_name=name,
            post=post,
        ).id


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "provisioning"
    (root / SITE_B).mkdir(parents=True)
    (root / "000000000000.cfg").write_text("<master/>")
    (root / SITE_B / "000000000000.cfg").write_text("<site-b master/>")
    (root / "000000000000-license.cfg").write_bytes(b"<licenses/>")
    (root / "firmware").mkdir()
    (root / "firmware" / "sip.ld").write_bytes(b"\0" * 2_000_000)
    return root


@pytest.fixture
def resolver(store: Store, tree: Path) -> ContentResolver:
    with store.transaction() as session:
        for serial in (SITE_A, SITE_B):
            inventory.add_site(session, CLOCK, "t", Site(serial, serial, "UTC", "01:00", "04:00"))
        csv = f"mac,site,model\n{MAC},{SITE_A},VVX_500\n".encode()
        inventory.import_phones(session, CLOCK, "t", csv, source="p.csv")
    return ContentResolver(store, tree)


def site_key(serial: str, expires: date = date(2027, 1, 31)) -> LicenseKey:
    return make_license(serial=serial, type=LicenseType.SITE, expires=expires)


class TestPhoneLicense:
    def test_posted_key_is_served_from_the_store(self, resolver: ContentResolver) -> None:
        key = make_license(serial=MAC, expires=NEVER)
        license_id = post(resolver.store, key)
        content = resolver.resolve((f"{MAC}-license.cfg",), Requester())
        assert content is not None
        assert content.kind is ContentKind.PHONE_LICENSE
        assert content.body == serialize_keys([key])
        assert content.license_id == license_id
        assert content.digest == registry.file_digest(content.body)
        assert content.size == len(content.body)

    def test_issued_but_unposted_key_is_not_served(self, resolver: ContentResolver) -> None:
        post(resolver.store, make_license(serial=MAC), post=False)
        assert resolver.resolve((f"{MAC}-license.cfg",), Requester()) is None

    def test_revoked_key_is_not_served(self, resolver: ContentResolver) -> None:
        license_id = post(resolver.store, make_license(serial=MAC))
        with resolver.store.transaction() as session:
            registry.revoke(session, CLOCK, "t", license_id)
        assert resolver.resolve((f"{MAC}-license.cfg",), Requester()) is None

    def test_file_in_the_tree_is_the_fallback(self, resolver: ContentResolver, tree: Path) -> None:
        (tree / "0004f2000009-license.cfg").write_bytes(b"<licenses/>")
        content = resolver.resolve(("0004f2000009-license.cfg",), Requester())
        assert content is not None
        assert (content.kind, content.path) == (
            ContentKind.PHONE_LICENSE,
            tree / "0004f2000009-license.cfg",
        )


class TestSiteLicense:
    def test_phone_gets_the_key_of_its_inventory_site(self, resolver: ContentResolver) -> None:
        post(resolver.store, site_key(SITE_A))
        post(resolver.store, site_key(SITE_B))
        content = resolver.resolve(("000000000000-license.cfg",), Requester(mac=MAC))
        assert content is not None
        assert content.body == serialize_keys([site_key(SITE_A)])

    def test_site_prefix_wins(self, resolver: ContentResolver) -> None:
        post(resolver.store, site_key(SITE_B))
        site, rest = resolver.split_site((SITE_B, "000000000000-license.cfg"))
        assert (site, rest) == (SITE_B, ("000000000000-license.cfg",))
        content = resolver.resolve(rest, Requester(mac=MAC, site=site))
        assert content is not None
        assert content.body == serialize_keys([site_key(SITE_B)])

    def test_successor_replaces_what_is_served(self, resolver: ContentResolver) -> None:
        post(resolver.store, site_key(SITE_A, date(2027, 1, 31)))
        newer = post(resolver.store, site_key(SITE_A, date(2028, 1, 31)))
        content = resolver.resolve(("000000000000-license.cfg",), Requester(mac=MAC))
        assert content is not None
        assert content.license_id == newer

    def test_unknown_phone_gets_the_default_site_file(
        self, resolver: ContentResolver, tree: Path
    ) -> None:
        post(resolver.store, site_key(SITE_A))
        content = resolver.resolve(("000000000000-license.cfg",), Requester(mac="0004f2999999"))
        assert content is not None
        assert content.path == tree / "000000000000-license.cfg"
        assert content.kind is ContentKind.SITE_LICENSE


class TestFiles:
    def test_site_subtree_is_preferred(self, resolver: ContentResolver, tree: Path) -> None:
        site, rest = resolver.split_site((SITE_B, "000000000000.cfg"))
        content = resolver.resolve(rest, Requester(site=site))
        assert content is not None
        assert content.path == tree / SITE_B / "000000000000.cfg"
        plain = resolver.resolve(("000000000000.cfg",), Requester())
        assert plain is not None
        assert plain.path == tree / "000000000000.cfg"

    def test_unknown_site_prefix_is_an_ordinary_directory(self, resolver: ContentResolver) -> None:
        assert resolver.split_site(("100000000009", "x.cfg")) == (None, ("100000000009", "x.cfg"))

    def test_large_file_is_streamed_without_digest(
        self, resolver: ContentResolver, tree: Path
    ) -> None:
        content = resolver.resolve(("firmware", "sip.ld"), Requester())
        assert content is not None
        assert (content.size, content.digest, content.body) == (2_000_000, None, None)
        assert content.etag.startswith('"')

    def test_small_file_digest_changes_with_the_file(
        self, resolver: ContentResolver, tree: Path
    ) -> None:
        first = resolver.resolve(("000000000000.cfg",), Requester())
        (tree / "000000000000.cfg").write_text("<master changed='yes'/>")
        os.utime(tree / "000000000000.cfg", ns=(1, 10**18))
        second = resolver.resolve(("000000000000.cfg",), Requester())
        assert first is not None
        assert second is not None
        assert first.digest != second.digest
        assert first.etag != second.etag

    def test_missing_files_and_directories_are_none(self, resolver: ContentResolver) -> None:
        assert resolver.resolve(("nothing.cfg",), Requester()) is None
        assert resolver.resolve(("firmware",), Requester()) is None
        assert resolver.resolve(("firmware", "sip.ld", "x"), Requester()) is None

    def test_symlink_out_of_the_tree_is_not_followed(
        self, resolver: ContentResolver, tree: Path, tmp_path: Path
    ) -> None:
        secret = tmp_path / "secret.txt"
        secret.write_text("keys")
        (tree / "link.cfg").symlink_to(secret)
        (tree / "dirlink").symlink_to(tmp_path)
        assert resolver.resolve(("link.cfg",), Requester()) is None
        assert resolver.resolve(("dirlink", "secret.txt"), Requester()) is None

    def test_symlink_inside_the_tree_is_served(self, resolver: ContentResolver, tree: Path) -> None:
        (tree / "alias.cfg").symlink_to(tree / "000000000000.cfg")
        content = resolver.resolve(("alias.cfg",), Requester())
        assert content is not None


@pytest.mark.parametrize(
    ("name", "mac"),
    [
        ("0004f2000001-license.cfg", "0004f2000001"),
        ("0004F2000001.cfg", "0004f2000001"),
        ("0004f2000001-boot.log", "0004f2000001"),
        ("000000000000-license.cfg", None),
        ("sip.ld", None),
        ("0004f200000-x.cfg", None),
    ],
)
def test_mac_in_name(name: str, mac: str | None) -> None:
    assert mac_in_name(name) == mac

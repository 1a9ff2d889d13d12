"""The fetch pipeline without sockets: every branch of who asks, may they, and what they get."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.useragent import PhoneAgent, parse_user_agent
from fleetkey.serve.addresses import Addresses
from fleetkey.serve.content import Content, ContentKind
from fleetkey.serve.fetching import Pipeline, Ruling, UnknownPolicy, _shape, shape_of
from fleetkey.serve.ftp.session import said_by_name
from fleetkey.serve.layout import Layout
from fleetkey.serve.tree import FileTree
from fleetkey.serve.uploads import Upload
from fleetkey.serve.view import View
from fleetkey.testing import FixedView

SITE_A, SITE_B = "100000000001", "100000000002"
A1, A2, B1 = "0004f2000001", "0004f2000002", "0004f2000003"  # two phones at A, one at B
STRANGER = "0004f2999999"
SITE_FILE = "000000000000-license.cfg"
UNTAGGED = parse_user_agent("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application")


def tagged(mac: str) -> PhoneAgent | None:
    return parse_user_agent(f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{mac})")


def posted(kind: ContentKind, serial: str) -> Content:
    body = f"<licenses><!-- {serial} --></licenses>".encode()
    return Content(
        kind, "x", len(body), f'"{serial}"', datetime(2026, 1, 1, tzinfo=UTC), serial, body
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "provisioning"
    (root / SITE_B).mkdir(parents=True)
    (root / "000000000000.cfg").write_text("<APPLICATION/>")
    (root / SITE_B / "000000000000.cfg").write_text("<APPLICATION site='b'/>")
    (root / SITE_FILE).write_text("<licenses/>")  # the tree's default site file
    (root / "licenses").mkdir()
    return root


def pipeline(
    tree: Path, *, policy: UnknownPolicy = UnknownPolicy.SERVE, logins: bool = False
) -> Pipeline:
    view = View(
        licenses={
            ("Site", SITE_A): posted(ContentKind.SITE_LICENSE, SITE_A),
            ("Site", SITE_B): posted(ContentKind.SITE_LICENSE, SITE_B),
            ("Phone", A1): posted(ContentKind.PHONE_LICENSE, A1),
        },
        phone_sites={A1: SITE_A, A2: SITE_A, B1: SITE_B},
        sites=frozenset({SITE_A, SITE_B}),
    )
    uploads = FileTree(tree.parent / "uploads", kind=ContentKind.UPLOAD)
    return Pipeline(
        FixedView(view),
        FileTree(tree),
        uploads,
        addresses=Addresses(hold_s=120),
        policy=policy,
        register_site=SITE_A,
        logins_required=logins,
    )


def served(ruling_content: Content | None) -> str | None:
    return ruling_content.digest if ruling_content is not None else None


class TestWhoIsAsking:
    def test_the_user_agent_serial_names_the_phone_and_its_site(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((SITE_FILE,), "10.0.0.1", tagged(B1), 0.0)
        assert (ruling.status, ruling.mac, ruling.via, ruling.site) == (200, B1, "agent", SITE_B)
        assert served(ruling.content) == SITE_B

    def test_the_file_name_names_the_phone(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((f"{A1}-license.cfg",), "10.0.0.1", UNTAGGED, 0.0)
        assert (ruling.mac, ruling.via, served(ruling.content)) == (A1, "name", A1)

    def test_the_login_names_the_phone_whatever_the_user_agent_says(self, tree: Path) -> None:
        ruling = pipeline(tree, logins=True).decide((SITE_FILE,), None, tagged(A1), 0.0, login=B1)
        assert (ruling.mac, ruling.via, served(ruling.content)) == (B1, "login", SITE_B)

    def test_an_untagged_phone_is_known_by_the_mac_its_address_named_in_this_boot(
        self, tree: Path
    ) -> None:
        fetch = pipeline(tree)
        first = fetch.decide((f"{B1}.cfg",), "10.0.0.7", UNTAGGED, 100.0)
        assert (first.status, first.via) == (404, "name")
        master = fetch.decide(("000000000000.cfg",), "10.0.0.7", UNTAGGED, 101.0)
        assert (master.mac, master.via) == (B1, "address")
        assert master.content is not None
        assert master.content.body == b"<APPLICATION/>"
        license_ = fetch.decide((SITE_FILE,), "10.0.0.7", UNTAGGED, 130.0)
        assert (license_.mac, license_.via, served(license_.content)) == (B1, "address", SITE_B)

    def test_an_address_is_forgotten_after_the_hold_time(self, tree: Path) -> None:
        fetch = pipeline(tree)
        fetch.decide((f"{B1}.cfg",), "10.0.0.7", UNTAGGED, 100.0)
        late = fetch.decide((SITE_FILE,), "10.0.0.7", UNTAGGED, 221.0)
        assert (late.mac, late.via, late.site) == (None, None, None)
        assert late.content is not None
        assert late.content.body == b"<licenses/>"

    def test_two_phones_of_different_sites_behind_one_address_are_never_guessed(
        self, tree: Path
    ) -> None:
        fetch = pipeline(tree)
        fetch.decide((f"{A1}.cfg",), "192.0.2.9", UNTAGGED, 10.0)
        fetch.decide((f"{B1}.cfg",), "192.0.2.9", UNTAGGED, 11.0)
        ruling = fetch.decide((SITE_FILE,), "192.0.2.9", UNTAGGED, 12.0)
        # not the tree's default file: that is some other site's key for one of them
        assert (ruling.status, ruling.mac, ruling.via, ruling.content) == (
            404,
            None,
            "ambiguous",
            None,
        )
        assert ruling.reason == "phones of several sites share this address: whose site " + (
            "license is unknown"
        )

    def test_a_phone_not_in_the_inventory_behind_the_address_changes_no_site(
        self, tree: Path
    ) -> None:
        fetch = pipeline(tree)
        fetch.decide((f"{A1}.cfg",), "192.0.2.9", UNTAGGED, 10.0)
        fetch.decide(("0004f2abcdee.cfg",), "192.0.2.9", UNTAGGED, 11.0)  # a new phone
        ruling = fetch.decide((SITE_FILE,), "192.0.2.9", UNTAGGED, 12.0)
        assert (ruling.mac, ruling.via, served(ruling.content)) == (None, "ambiguous", SITE_A)

    def test_phones_of_one_site_sharing_an_address_get_their_site_without_a_mac(
        self, tree: Path
    ) -> None:
        fetch = pipeline(tree)
        fetch.decide((f"{A1}.cfg",), "192.0.2.9", UNTAGGED, 10.0)
        fetch.decide((f"{A2}.cfg",), "192.0.2.9", UNTAGGED, 11.0)
        ruling = fetch.decide((SITE_FILE,), "192.0.2.9", UNTAGGED, 12.0)
        assert (ruling.mac, ruling.via, served(ruling.content)) == (None, "ambiguous", SITE_A)

    def test_a_shared_address_names_one_phone_again_once_the_other_is_silent(
        self, tree: Path
    ) -> None:
        fetch = pipeline(tree)
        fetch.decide((f"{A1}.cfg",), "192.0.2.9", UNTAGGED, 10.0)
        fetch.decide((f"{B1}.cfg",), "192.0.2.9", UNTAGGED, 100.0)
        fetch.decide((f"{B1}-phone.cfg",), "192.0.2.9", UNTAGGED, 200.0)
        ruling = fetch.decide((SITE_FILE,), "192.0.2.9", UNTAGGED, 201.0)
        assert (ruling.mac, ruling.via, served(ruling.content)) == (B1, "address", SITE_B)

    def test_nothing_naming_a_phone_gets_the_tree_default(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((SITE_FILE,), None, None, 0.0)
        assert (ruling.status, ruling.mac, ruling.via) == (200, None, None)
        assert ruling.content is not None
        assert ruling.content.kind is ContentKind.SITE_LICENSE


class TestSites:
    def test_a_site_prefix_places_a_phone_the_inventory_does_not(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((SITE_B, SITE_FILE), None, tagged(STRANGER), 0.0)
        assert (ruling.mac, ruling.site, served(ruling.content)) == (STRANGER, SITE_B, SITE_B)

    def test_the_inventory_site_wins_over_a_prefix(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((SITE_B, SITE_FILE), None, tagged(A1), 0.0)
        assert served(ruling.content) == SITE_A

    def test_a_prefix_serves_the_site_subtree_first(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((SITE_B, "000000000000.cfg"), None, None, 0.0)
        assert ruling.content is not None
        assert ruling.content.body == b"<APPLICATION site='b'/>"

    def test_a_prefix_that_is_no_site_is_an_ordinary_directory(self, tree: Path) -> None:
        ruling = pipeline(tree).decide(("100000000009", "000000000000.cfg"), None, None, 0.0)
        assert ruling.status == 404


class TestWhatIsAsked:
    def test_license_names_in_a_license_directory_are_the_stores(self, tree: Path) -> None:
        fetch = pipeline(tree)
        path = ("licenses", SITE_FILE)
        assert fetch.decide(path, None, tagged(A1), 0.0).status == 404  # not named yet
        fetch.layout = Layout(frozenset({(), ("licenses",)}))
        ruling = fetch.decide(path, None, tagged(A1), 0.0)
        assert served(ruling.content) == SITE_A
        phone = fetch.decide(("licenses", f"{A1}-license.cfg"), None, UNTAGGED, 0.0)
        assert served(phone.content) == A1

    def test_the_tree_default_is_found_in_a_license_directory_as_at_the_root(
        self, tree: Path
    ) -> None:
        """A phone the server cannot place asks licenses/000000000000-license.cfg when its
        master says LICENSE_DIRECTORY="licenses": it gets the tree's default (it got a 404)."""
        fetch = pipeline(tree)
        fetch.layout = Layout(frozenset({(), ("licenses",)}))
        ruling = fetch.decide(("licenses", SITE_FILE), None, tagged(STRANGER), 0.0)
        assert (ruling.status, ruling.mac, ruling.site) == (200, STRANGER, None)
        assert ruling.content is not None
        assert ruling.content.body == b"<licenses/>"
        elsewhere = fetch.decide(("other", SITE_FILE), None, tagged(STRANGER), 0.0)
        assert elsewhere.status == 404  # a directory no master names: an ordinary tree path

    def test_a_missing_phone_license_is_a_404(self, tree: Path) -> None:
        ruling = pipeline(tree).decide((f"{A2}-license.cfg",), None, None, 0.0)
        assert (ruling.status, ruling.mac, ruling.reason) == (404, A2, "no such file")

    def test_a_phone_reads_back_what_it_uploaded(self, tree: Path) -> None:
        stored = tree.parent / "uploads" / A1
        stored.mkdir(parents=True)
        (stored / f"{A1}-phone.cfg").write_text("<PHONE_CONFIG/>")
        ruling = pipeline(tree).decide(("overrides", f"{A1}-phone.cfg"), None, None, 0.0)
        assert ruling.content is not None
        assert (ruling.content.kind, ruling.content.body) == (
            ContentKind.UPLOAD,
            b"<PHONE_CONFIG/>",
        )

    def test_uploads_are_accepted_only_for_names_phones_write(self, tree: Path) -> None:
        fetch = pipeline(tree)
        ok = fetch.decide(("logs", f"{A1.upper()}-app.log"), None, None, 0.0, write=True)
        assert (ok.status, ok.upload) == (200, Upload(A1, 4096 * 1024, f"{A1.upper()}-app.log"))
        refused = fetch.decide(("000000000000.cfg",), None, None, 0.0, write=True)
        assert (refused.status, refused.reason) == (
            403,
            "'000000000000.cfg' is not a file phones upload",
        )


class TestUnknownPhones:
    def test_served_by_default(self, tree: Path) -> None:
        ruling = pipeline(tree).decide(("000000000000.cfg",), None, tagged(STRANGER), 0.0)
        assert (ruling.status, ruling.register) == (200, None)

    def test_refused_when_the_policy_says_so_however_they_are_known(self, tree: Path) -> None:
        fetch = pipeline(tree, policy=UnknownPolicy.REFUSE)
        named = fetch.decide((f"{STRANGER}.cfg",), "10.0.0.5", UNTAGGED, 0.0)
        assert (named.status, named.reason) == (403, f"phone {STRANGER} is not in the inventory")
        by_address = fetch.decide(("000000000000.cfg",), "10.0.0.5", UNTAGGED, 1.0)
        assert (by_address.status, by_address.via) == (403, "address")

    def test_registered_at_the_prefix_site_or_the_registration_site(self, tree: Path) -> None:
        fetch = pipeline(tree, policy=UnknownPolicy.REGISTER)
        prefixed = fetch.decide((SITE_B, "000000000000.cfg"), None, tagged(STRANGER), 0.0)
        assert prefixed.register is not None
        assert (prefixed.register.site, prefixed.register.model) == (SITE_B, "VVX_500")
        plain = fetch.decide(("000000000000.cfg",), None, tagged(STRANGER), 0.0)
        assert plain.status == 200
        assert plain.register is not None
        assert plain.register.site == SITE_A


class TestLoginsRequired:
    def test_a_phone_gets_its_own_sites_license_whatever_the_prefix(self, tree: Path) -> None:
        fetch = pipeline(tree, logins=True)
        ruling = fetch.decide((SITE_B, SITE_FILE), None, None, 0.0, login=A1)
        assert (ruling.status, ruling.reason) == (
            403,
            f"that file belongs to another site ({SITE_B})",
        )
        own = fetch.decide((SITE_A, SITE_FILE), None, None, 0.0, login=A1)
        assert served(own.content) == SITE_A

    @pytest.mark.parametrize(
        ("policy", "status", "reason"),
        [
            (UnknownPolicy.SERVE, 200, ""),
            (UnknownPolicy.REGISTER, 200, ""),
            (UnknownPolicy.REFUSE, 403, f"phone {STRANGER} is not in the inventory"),
        ],
    )
    def test_a_phone_the_inventory_does_not_place_is_placed_by_the_site_prefix(
        self, tree: Path, policy: UnknownPolicy, status: int, reason: str
    ) -> None:
        """A shared login's MAC that the inventory lacks: the path's site is its own (as
        without logins), and the unknown policy decides; never "another site's file"."""
        fetch = pipeline(tree, policy=policy, logins=True)
        ruling = fetch.decide((SITE_B, SITE_FILE), None, None, 0.0, login=STRANGER)
        assert (ruling.status, ruling.reason) == (status, reason)
        if status == 200:
            assert served(ruling.content) == SITE_B
        other = fetch.decide((SITE_B, f"{B1}-license.cfg"), None, None, 0.0, login=STRANGER)
        assert (other.status, other.reason) == (403, f"that file belongs to another phone ({B1})")

    @pytest.mark.parametrize(
        "path",
        [
            (f"{B1}-license.cfg",),
            (B1, "phone.cfg"),
            (f"phone{B1}.cfg",),
            ("overrides", f"{B1}-web.cfg"),
        ],
    )
    def test_another_phones_files_are_refused_whatever_their_name(
        self, tree: Path, path: tuple[str, ...]
    ) -> None:
        ruling = pipeline(tree, logins=True).decide(path, None, None, 0.0, login=A1)
        assert (ruling.status, ruling.reason) == (
            403,
            f"that file belongs to another phone ({B1})",
        )
        assert (ruling.mac, ruling.via) == (A1, "login")  # who was refused, for the record

    def test_a_refusal_without_a_login_still_says_who_asked(self, tree: Path) -> None:
        refused = pipeline(tree, logins=True).decide((f"{A2}.cfg",), "10.0.0.1", None, 0.0)
        assert (refused.status, refused.mac, refused.via) == (403, A2, "name")

    def test_without_a_login_only_shared_files_are_served(self, tree: Path) -> None:
        fetch = pipeline(tree, logins=True)
        shared = fetch.decide(("000000000000.cfg",), "10.0.0.1", None, 0.0)
        assert shared.status == 200
        for path in ((SITE_FILE,), (f"{A1}-license.cfg",), (f"{A1}.cfg",)):
            refused = fetch.decide(path, "10.0.0.1", None, 0.0)
            assert (refused.status, refused.reason) == (403, "per-device files need a login here")


def test_a_ruling_is_never_changed_once_made(tree: Path) -> None:
    """HTTP remembers rulings and answers repeats with them: one shared, never mutated."""
    ruling = pipeline(tree).decide((f"{A1}-license.cfg",), None, tagged(A1), 0.0)
    with pytest.raises(AttributeError):
        ruling.mac = A2  # type: ignore[misc]  # what the test shows cannot be done


@pytest.mark.parametrize(
    ("segments", "named"),
    [
        (("0004f2000001-license.cfg",), "0004f2000001"),
        (("0004F2000001.cfg",), "0004f2000001"),
        (("logs", "0004f2000001-boot.log"), "0004f2000001"),
        (("000000000000-license.cfg",), None),
        (("sip.ld",), None),
        (("0004f200000-x.cfg",), None),
    ],
)
def test_the_mac_a_file_name_starts_with_names_the_phone(
    segments: tuple[str, ...], named: str | None
) -> None:
    assert shape_of(segments).named_mac == named


@settings(max_examples=500, deadline=None)
@given(
    mac=st.from_regex(r"[0-9A-Fa-f]{12}", fullmatch=True),
    rest=st.sampled_from(
        ["-license.cfg", ".cfg", "-phone.cfg", "-web.cfg", "-boot.log", "-app.log",
         "-calls.xml", "-directory.xml", "-0004f2abcdef.cfg", ".cfg.bak", "-x", ".0004F2ABCDEF"]
    ),
)  # fmt: skip
def test_a_per_phone_name_has_the_shape_of_any_other_path(mac: str, rest: str) -> None:
    segments = (mac + rest,)
    assert shape_of(segments) == _shape(segments)


def test_a_ruling_said_by_name_changes_only_its_via_whatever_the_field_order() -> None:
    """The FTP session rebuilds a ruling by position (faster than ``_replace``): a field
    added or moved in ``Ruling`` must not shift the others."""
    distinct = {name: f"<{name}>" for name in Ruling._fields}
    ruling = Ruling(**distinct)  # type: ignore[arg-type]
    assert said_by_name(ruling) == ruling._replace(via="name")

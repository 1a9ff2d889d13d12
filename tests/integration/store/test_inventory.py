"""Sites and phones on both backends: adding, importing, and refusing bad input whole."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fleetkey.clock import FixedClock
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import InputError, NotFoundError, RowError
from fleetkey.store import audit, inventory, phone_import
from fleetkey.store.credentials import check_password, digest_ha1
from fleetkey.store.records import Site
from fleetkey.store.schema import AuditRow, PhoneRow
from fleetkey.store.store import Store

CLOCK = FixedClock()
NIGHT = Window.parse("22:00-05:00")
HQ = Site("100000000001", "HQ", "Europe/Berlin", NIGHT, "ops@example.test")


@pytest.fixture
def with_site(store: Store) -> Store:
    with store.transaction() as session:
        inventory.add_site(session, CLOCK, "tester", HQ)
    return store


def counts(store: Store) -> tuple[int, int]:
    with store.transaction() as session:
        phones = session.scalar(select(func.count()).select_from(PhoneRow)) or 0
        events = session.scalar(select(func.count()).select_from(AuditRow)) or 0
    return phones, events


class TestSites:
    def test_site_is_added_listed_and_audited(self, with_site: Store) -> None:
        with with_site.transaction() as session:
            assert inventory.sites(session) == [HQ]
            (event,) = audit.events(session)
        assert (event.action, event.subject, event.actor) == ("site.add", HQ.serial, "tester")

    @pytest.mark.parametrize(
        ("site", "fragment"),
        [
            (Site("1", "X", "Europe/Berlin", NIGHT), "site serial '1' is not valid"),
            (Site("100000000002", "X", "Mars/Olympus", NIGHT), "not an IANA zone"),
            (Site("100000000002", " ", "UTC", NIGHT), "needs a name"),
            (HQ, "site 100000000001 already exists"),
            (Site("100000000002", "x" * 200_000, "UTC", NIGHT), "at most 200 are allowed"),
            (Site("100000000002", "=1+1", "UTC", NIGHT), "would take it for a formula"),
            (Site("100000000002", "X", "UTC", NIGHT, "@SUM(1)"), "would take it for a formula"),
            (Site("100000000002", "a\nb", "UTC", NIGHT), "control character U\\+000A"),
            (Site("100000000002", "X", "Europe/" + "x" * 5000, NIGHT), "not an IANA zone"),
        ],
        ids=[
            "serial",
            "zone",
            "no name",
            "exists",
            "long",
            "formula",
            "contact",
            "newline",
            "path",
        ],
    )
    def test_bad_sites_are_refused_and_nothing_changes(
        self, with_site: Store, site: Site, fragment: str
    ) -> None:
        before = counts(with_site)
        with pytest.raises(InputError, match=fragment), with_site.transaction() as session:
            inventory.add_site(session, CLOCK, "tester", site)
        assert counts(with_site) == before


HEADER = "mac,site,model,firmware,user,password,contact\n"


BAD_CSV = [
    (
        "bad MAC",
        HEADER + "0004f2zz0001,100000000001,VVX,,,,\n",
        "line 2: MAC '0004f2zz0001' is not a MAC address",
    ),
    (
        "duplicate MAC",
        HEADER + "0004f2000001,100000000001,VVX,,,,\n00:04:f2:00:00:01,100000000001,VVX,,,,\n",
        "line 3: MAC 0004f2000001 is already on line 2",
    ),
    (
        "unknown site",
        HEADER + "0004f2000001,100000000009,VVX,,,,\n",
        "line 2: site 100000000009 does not exist",
    ),
    (
        "missing model",
        HEADER + "0004f2000001,100000000001,,,,,\n",
        "line 2: model '' is not a model name: 1-64 printable ASCII characters",
    ),
    (
        "user without password",
        HEADER + "0004f2000001,100000000001,VVX,,dev,,\n",
        "line 2: user and password go together",
    ),
    (
        "bad contact",
        HEADER + "0004f2000001,100000000001,VVX,,,,1001@pbx\n",
        "line 2: contact '1001@pbx' is not a SIP URI",
    ),
    (
        "broadcast MAC",
        HEADER + "ff:ff:ff:ff:ff:ff,100000000001,VVX,,,,\n",
        "line 2: MAC 'ff:ff:ff:ff:ff:ff' is the broadcast address: a phone's MAC is unicast",
    ),
    (
        "multicast MAC",
        HEADER + "01005e0000fb,100000000001,VVX,,,,\n",
        "line 2: MAC '01005e0000fb' is a multicast address",
    ),
    (
        "formula as model",
        HEADER + "0004f2000001,100000000001,=HYPERLINK(1),,,,\n",
        "line 2: model '=HYPERLINK(1)' starts with '=': a spreadsheet would take it for a formula",
    ),
    (
        "formula as user",
        HEADER + "0004f2000001,100000000001,VVX,,@dev,pw,\n",
        "line 2: user '@dev' starts with '@'",
    ),
    (
        "field over the csv limit",
        HEADER + "0004f2000001,100000000001," + "x" * 140_000 + ",,,,\n",
        "p.csv: line 2 cannot be read as CSV: field larger than field limit (131072)",
    ),
    ("short row", HEADER + "0004f2000001,100000000001\n", "line 2: 2 columns, expected 7"),
    (
        "missing column",
        "mac,model\n0004f2000001,VVX\n",
        "columns mac, site, model are required",
    ),
    (
        "unknown column",
        "mac,site,model,colour\n0004f2000001,100000000001,VVX,red\n",
        "is not usable",
    ),
    ("empty file", "", "the file is empty"),
    ("header only", HEADER, "no rows after the header"),
]


class TestPhoneImport:
    def test_import_adds_then_updates(self, with_site: Store) -> None:
        data = (
            HEADER + "0004f2000001,100000000001,VVX_500,5.9.7,dev1,s3cret,sip:1001@pbx.test\n"
            "00:04:F2:00:00:02,100000000001,SPIP_670,,,,\n"
        ).encode()
        with with_site.transaction() as session:
            summary = phone_import.import_phones(session, CLOCK, "tester", data, source="p.csv")
        assert (summary.added, summary.updated) == (2, 0)
        with with_site.transaction() as session:
            again = phone_import.import_phones(session, CLOCK, "tester", data, source="p.csv")
            phone = inventory.phone(session, "0004f2000001")
            row = session.get(PhoneRow, "0004f2000001")
            assert row is not None
            assert row.password_hash is not None
            assert check_password("s3cret", row.password_hash)
            assert row.digest_ha1 == digest_ha1("dev1", "s3cret")
        assert (again.added, again.updated) == (0, 2)
        assert phone.model == "VVX_500"
        assert phone.has_password
        assert phone.sip_contact == "sip:1001@pbx.test"
        with with_site.transaction() as session:
            assert [p.mac for p in inventory.phones(session, "100000000001")] == [
                "0004f2000001",
                "0004f2000002",
            ]

    @pytest.mark.parametrize(
        ("text", "fragment"), [c[1:] for c in BAD_CSV], ids=[c[0] for c in BAD_CSV]
    )
    def test_bad_csv_is_refused_whole(self, with_site: Store, text: str, fragment: str) -> None:
        # a good row rides along: it must not be written either
        with_good = (
            text + "0004f2000099,100000000001,VVX,,,,\n"
            if text.startswith(HEADER) and (text != HEADER)
            else text
        )
        before = counts(with_site)
        with pytest.raises(InputError) as caught, with_site.transaction() as session:
            phone_import.import_phones(session, CLOCK, "tester", with_good.encode(), source="p.csv")
        assert fragment in str(caught.value)
        assert counts(with_site) == before

    def test_bad_encoding_names_the_line(self, with_site: Store) -> None:
        data = HEADER.encode() + b"0004f2000001,100000000001,VVX \xff,,,,\n"
        with (
            pytest.raises(InputError, match="line 2, byte 76 is not UTF-8"),
            with_site.transaction() as session,
        ):
            phone_import.import_phones(session, CLOCK, "tester", data, source="p.csv")
        assert counts(with_site)[0] == 0

    def test_every_bad_row_is_reported(self, with_site: Store) -> None:
        text = HEADER + "bad,100000000001,VVX,,,,\n" + "0004f2000001,100000000009,VVX,,,,\n"
        with (
            pytest.raises(RowError) as caught,
            with_site.transaction() as session,
        ):
            phone_import.import_phones(session, CLOCK, "tester", text.encode(), source="p.csv")
        assert [p.split(":")[0] for p in caught.value.problems] == ["line 2", "line 3"]

    def test_a_password_is_any_printable_text(self, with_site: Store) -> None:
        data = (HEADER + "0004f2000001,100000000001,VVX,,dev,=s3cret,\n").encode()
        with with_site.transaction() as session:
            phone_import.import_phones(session, CLOCK, "tester", data, source="p.csv")
            row = session.get(PhoneRow, "0004f2000001")
            assert row is not None
            assert row.password_hash is not None
            assert check_password("=s3cret", row.password_hash)

    def test_unknown_phone_is_not_found(self, with_site: Store) -> None:
        with (
            pytest.raises(NotFoundError, match="phone 0004f2000042 is not in the"),
            with_site.transaction() as session,
        ):
            inventory.phone(session, "0004f2000042")


def test_large_import_stays_within_parameter_limits(with_site: Store) -> None:
    rows = "".join(f"0004f2{i:06x},100000000001,VVX_500,,,,\n" for i in range(40_000))
    data = (HEADER + rows).encode()
    with with_site.transaction() as session:
        first = phone_import.import_phones(session, CLOCK, "tester", data, source="big.csv")
    with with_site.transaction() as session:
        again = phone_import.import_phones(session, CLOCK, "tester", data, source="big.csv")
    assert (first.added, again.updated) == (40_000, 40_000)
    assert counts(with_site)[0] == 40_000


def test_the_sites_of_some_phones_are_read_a_chunk_at_a_time(with_site: Store) -> None:
    rows = "".join(f"0004f2{i:06x},100000000001,VVX_500,,,,\n" for i in range(2500))
    with with_site.transaction() as session:
        phone_import.import_phones(session, CLOCK, "t", (HEADER + rows).encode(), source="p.csv")
    asked = {f"0004f2{i:06x}" for i in range(0, 5000, 2)}  # 1250 known, 1250 not: two chunks
    with with_site.transaction() as session:
        found = inventory.phone_sites(session, asked)
        assert inventory.phone_sites(session, set()) == {}
    assert found == {f"0004f2{i:06x}": "100000000001" for i in range(0, 2500, 2)}

"""The dashboard's license pre-flight in process: an uploaded file's verdict, posting it as
``licenses import --post`` does (audited as the dashboard), and every malformed upload
refused with its message and nothing changed."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest

from fleetkey.store import audit, registry

from tests.dashboard import SITE_FILE, Dashboard
from tests.dashboard import site_file as signed_site_file
from tests.helpers import SITE_SERIAL, VENDOR_FILE, Fleetkey


def site_file(dashboard: Dashboard, serial: str, days: int, *, ours: bool = True) -> bytes:
    return signed_site_file(dashboard.data, serial, days, ours=ours)


@dataclass(frozen=True)
class Snapshot:
    """What an upload must not change: the keys and their states, the audit trail, the tree."""

    licenses: list[tuple[int, str]]
    events: int
    tree: dict[str, bytes]


def snapshot(dashboard: Dashboard) -> Snapshot:
    with dashboard.store.transaction() as session:
        keys = [(k.id, k.state.value) for k in registry.listing(session, today=date.today())]
        events = len(audit.events(session))
    root = dashboard.data.provisioning
    tree = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return Snapshot(keys, events, tree)


def upload(
    dashboard: Dashboard, content: bytes, name: str = SITE_FILE, csrf: str | None = None
) -> httpx.Response:
    token = dashboard.csrf() if csrf is None else csrf
    return dashboard.ask(
        "POST",
        "/ui/licenses/check",
        data={"csrf": token},
        files={"file": (name, content, "application/octet-stream")},
    )


def post(
    dashboard: Dashboard, content: bytes, name: str = SITE_FILE, **extra: str
) -> httpx.Response:
    fields = {
        "csrf": dashboard.csrf(),
        "name": name,
        "content": base64.urlsafe_b64encode(content).decode(),
    } | extra
    return dashboard.ask("POST", "/ui/licenses/post", data=fields)


@pytest.fixture
def signed_in(dashboard: Dashboard) -> Dashboard:
    dashboard.sign_in()
    return dashboard


class TestVerdict:
    def test_a_longer_successor_is_ready_to_post_and_checking_changes_nothing(
        self, signed_in: Dashboard
    ) -> None:
        before = snapshot(signed_in)
        answer = upload(signed_in, site_file(signed_in, SITE_SERIAL, 400))
        assert answer.status_code == 200
        page = answer.text
        assert "Ready to post" in page
        assert 'href="/ui/licenses/1">license 1</a> (posted' in page
        assert "<td>corporate-directory</td>" in page
        assert re.search(r"<td class=\"\">extended</td>", page)
        assert "data-signature>valid<" in page
        assert snapshot(signed_in) == before

    def test_a_shorter_successor_is_refused_as_phones_would_ignore_it(
        self, signed_in: Dashboard
    ) -> None:
        page = upload(signed_in, site_file(signed_in, SITE_SERIAL, 5)).text
        assert "Not postable from here" in page
        refusals = re.search(r'<ul class="explain" id="refusals">(.*?)</ul>', page, re.S)
        assert refusals
        assert "key 1 (Site 100000000001): corporate-directory would end" in refusals.group(1)
        assert 'id="post"' not in page

    def test_a_vendor_key_needs_a_reason_and_an_expired_one_is_refused(
        self, signed_in: Dashboard, fleetkey: Fleetkey
    ) -> None:
        fleetkey("sites", "add", "100000001007", "--name", "Tokyo", "--tz", "Asia/Tokyo",
                 "--window", "22:00-05:00")  # fmt: skip
        page = upload(signed_in, VENDOR_FILE.read_bytes(), VENDOR_FILE.name).text
        assert "data-signature>unverifiable<" in page
        assert "expired on 2015-03-16" in page
        assert "Not postable from here" in page


class TestPosting:
    def test_posting_supersedes_the_key_writes_the_file_and_audits_the_dashboard(
        self, signed_in: Dashboard
    ) -> None:
        content = site_file(signed_in, SITE_SERIAL, 400)
        answer = post(signed_in, content)
        assert answer.status_code == 303
        new_id = int(answer.headers["location"].rsplit("/", 1)[1])
        with signed_in.store.transaction() as session:
            assert registry.get(session, new_id).state.value == "posted"
            assert registry.get(session, new_id).succeeds_id == 1
            assert registry.get(session, 1).state.value == "superseded"
            events = audit.events(session)
        placed = signed_in.data.provisioning / SITE_SERIAL / SITE_FILE
        assert placed.read_bytes() == content
        assert [(e.action, e.actor) for e in events[-2:]] == [
            ("license.imported", "dashboard@127.0.0.1"),
            ("license.post", "dashboard@127.0.0.1"),
        ]
        assert events[-2].details["source"] == SITE_FILE

    def test_a_vendor_signed_key_posts_only_with_a_reason(self, signed_in: Dashboard) -> None:
        content = site_file(signed_in, SITE_SERIAL, 400, ours=False)
        page = upload(signed_in, content).text
        assert "data-signature>unverifiable<" in page
        assert 'name="reason"' in page
        before = snapshot(signed_in)
        refused = post(signed_in, content)
        assert refused.status_code == 400
        assert "reason: nothing posted: key 1 (Site 100000000001): signature unverifiable" in (
            refused.text
        )
        assert snapshot(signed_in) == before
        assert post(signed_in, content, reason="the vendor's renewal").status_code == 303
        with signed_in.store.transaction() as session:
            last = audit.events(session)[-1]
        assert last.details["accepted_unverified"]["reason"] == "the vendor's renewal"


def too_big(dashboard: Dashboard) -> bytes:
    return b"<licenses>" + b" " * (300 * 1024) + b"</licenses>"


def not_a_license(dashboard: Dashboard) -> bytes:
    return b"<html><body>hello</body></html>"


def wrong_site(dashboard: Dashboard) -> bytes:
    return site_file(dashboard, "100000000009", 400)


def bad_signature(dashboard: Dashboard) -> bytes:
    content = site_file(dashboard, SITE_SERIAL, 400)
    digit = re.search(rb"Validation='(.)", content)
    assert digit
    flipped = b"0" if digit.group(1) != b"0" else b"1"
    return content[: digit.start(1)] + flipped + content[digit.end(1) :]


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (too_big, 413, "the upload is larger than a license file may be (262144 bytes)"),
        (not_a_license, 400, "000000000000-license.cfg is not a license file: "),
        (wrong_site, 200, "key 1 (Site 100000000009): no site 100000000009 in the inventory"),
        (bad_signature, 200, "key 1 (Site 100000000001): its signature does not verify"),
    ],
    ids=["too-big", "not-a-license", "wrong-site", "bad-signature"],
)
def test_a_malformed_upload_says_why_and_changes_nothing(
    signed_in: Dashboard, make: object, status: int, message: str
) -> None:
    content = make(signed_in)  # type: ignore[operator]
    before = snapshot(signed_in)
    checked = upload(signed_in, content)
    assert checked.status_code == status
    assert message.replace("'", "&#39;") in checked.text
    assert 'id="post"' not in checked.text
    posted = post(signed_in, content)
    assert posted.status_code in (400, 409, 413)
    assert snapshot(signed_in) == before


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"csrf": "0" * 32}, "the form&#39;s CSRF token is missing or wrong: nothing was changed"),
        ({}, "the form&#39;s CSRF token is missing or wrong: nothing was changed"),
    ],
    ids=["forged", "missing"],
)
def test_a_forged_form_changes_nothing(
    signed_in: Dashboard, form: dict[str, str], message: str
) -> None:
    content = site_file(signed_in, SITE_SERIAL, 400)
    before = snapshot(signed_in)
    checked = signed_in.ask(
        "POST", "/ui/licenses/check", data=form, files={"file": (SITE_FILE, content)}
    )
    assert checked.status_code == 403
    assert message in checked.text
    fields = form | {"name": SITE_FILE, "content": base64.urlsafe_b64encode(content).decode()}
    posted = signed_in.ask("POST", "/ui/licenses/post", data=fields)
    assert posted.status_code == 403
    assert message in posted.text
    assert snapshot(signed_in) == before


@pytest.mark.parametrize(
    ("send", "status", "message"),
    [
        (lambda d: d.ask("POST", "/ui/licenses/check", data={"csrf": d.csrf()}), 400,
         "form: expected multipart/form-data holding the license file"),
        (lambda d: d.ask("POST", "/ui/licenses/check", data={"csrf": d.csrf()},
                         files={"other": ("x", b"1")}), 400, "other: not a field of this form"),
        (lambda d: d.ask("POST", "/ui/licenses/check", data={"csrf": d.csrf()},
                         files={"file": ("", b"1")}), 400, "file: choose the license file"),
        (lambda d: upload(d, site_file(d, SITE_SERIAL, 400), name="../../api-token"), 400,
         "file name &#39;../../api-token&#39;: expected a file&#39;s name, not a path"),
        (lambda d: d.ask("POST", "/ui/licenses/check", content=b"--x\r\n",
                         headers={"content-type": "multipart/form-data"}), 400,
         "form: not a multipart form fleetkey can read: Missing boundary"),
        (lambda d: d.ask("POST", "/ui/licenses/post", data={"csrf": d.csrf(), "name": SITE_FILE,
                                                            "content": "***"}), 400,
         "content: not the file the pre-flight page carried"),
        (lambda d: d.ask("POST", "/ui/licenses/post", data={"csrf": d.csrf(), "extra": "1"}),
         400, "extra: not a field of this form"),
        (lambda d: d.ask("POST", "/ui/licenses/check", content=b"x" * 300_000,
                         headers={"content-type": "multipart/form-data; boundary=x"}), 413,
         "the upload is larger than a license file may be"),
    ],
    ids=["urlencoded", "unknown-field", "no-file", "path-name", "broken-multipart",
         "bad-base64", "post-extra-field", "huge-body"],
)  # fmt: skip
def test_a_malformed_form_is_refused_by_name(
    signed_in: Dashboard, send: object, status: int, message: str
) -> None:
    before = snapshot(signed_in)
    answer = send(signed_in)  # type: ignore[operator]
    assert message in answer.text, answer.text[:2000]
    assert answer.status_code == status
    assert snapshot(signed_in) == before


def test_the_pages_link_to_the_pre_flight(signed_in: Dashboard, tmp_path: Path) -> None:
    assert 'href="/ui/licenses/check"' in signed_in.get("/ui/licenses").text
    form = signed_in.get("/ui/licenses/check")
    assert form.status_code == 200
    assert 'enctype="multipart/form-data"' in form.text

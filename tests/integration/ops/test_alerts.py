"""Alerts delivered to real local receivers: an HTTP webhook receiver and an aiosmtpd server."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from fleetkey.authority.datadir import DataDir
from fleetkey.authority.keyring import Keyring
from fleetkey.clock import FixedClock
from fleetkey.core.signing import PublicKey
from fleetkey.ops.alerts import AlertSettings, check
from fleetkey.ops.delivery import Deliverer, SmtpSettings, public_key_pem
from fleetkey.store import alerts, capacity, fetches
from fleetkey.store.database import default_url
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store

from tests.helpers import Fleetkey, WebhookReceiver, add_site_fleet, issue_site_license

SITE = "100000000001"


@pytest.fixture
def webhook() -> Iterator[tuple[str, WebhookReceiver]]:
    with WebhookReceiver() as receiver:
        yield receiver.url, receiver


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[int, Mailbox]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, box
    controller.stop()


def fleet(initialized: Path, fleetkey: Fleetkey, expires_in_days: int) -> None:
    add_site_fleet(fleetkey, initialized, phones=3)
    issue_site_license(fleetkey, datetime.now(UTC).date() + timedelta(days=expires_in_days))


def test_alerts_fire_once_retry_with_backoff_and_resolve_over_webhook_and_mail(
    initialized: Path,
    fleetkey: Fleetkey,
    webhook: tuple[str, WebhookReceiver],
    mailbox: tuple[int, Mailbox],
) -> None:
    fleet(initialized, fleetkey, expires_in_days=20)
    url, receiver = webhook
    smtp_port, box = mailbox
    receiver.answers.extend([500, 503, 500])  # the first event's first try fails
    data = DataDir(initialized)
    store = Store(default_url(initialized))
    clock = FixedClock(datetime.now(UTC))
    trusted = Keyring(data.keys).trusted()
    settings = AlertSettings(channels=[f"webhook:{url}", "mail:ops@example.org"])
    deliverer = Deliverer(data, SmtpSettings("127.0.0.1", smtp_port, "fleetkey@example.org"))
    try:
        first, _ = check(data, store, clock, trusted, settings)
        assert first.fired == [
            f"lead-time:Site:{SITE}:1:30d",
            f"not-fetched:{SITE}:1",
            f"storm:{SITE}:1",
        ]
        report = deliverer.deliver_due(store, clock)
        assert (report.sent, report.retrying, report.failed) == (3, 3, 0)  # mail 3, webhook 0
        assert report.errors[0].startswith(f"webhook:{url}: HTTP 500")
        again, open_alerts = check(data, store, clock, trusted, settings)
        assert (again.fired, again.resolved) == ([], [])  # deduplicated
        assert len(open_alerts) == 3
        assert deliverer.deliver_due(store, clock).sent == 0  # not due before the backoff
        clock.advance(timedelta(seconds=31))
        assert deliverer.deliver_due(store, clock).sent == 3
        issue_site_license(fleetkey, clock.now().date() + timedelta(days=400))
        successor, _ = check(data, store, clock, trusted, settings)
        assert successor.resolved == [
            f"lead-time:Site:{SITE}:1:30d",
            f"not-fetched:{SITE}:1",
            f"storm:{SITE}:1",
        ]
        assert successor.fired == [f"not-fetched:{SITE}:2"]
        assert deliverer.deliver_due(store, clock).sent == 8
        with store.transaction() as session:
            states = {state for *_, state, _, _ in alerts.deliveries(session)}
    finally:
        store.close()
    assert states == {"sent"}
    public = PublicKey.from_pem(public_key_pem(data))
    delivered = [(h, b) for h, b, status in receiver.received if status == 200]
    keys = [h["idempotency-key"] for h, _ in delivered]
    assert len(keys) == len(set(keys)) == 7  # one per event
    retried = [h["idempotency-key"] for h, _, status in receiver.received if status != 200]
    assert set(retried) <= set(keys)  # a retry carries the same idempotency key
    for headers, body in delivered:
        stamp, signature = (
            part.split("=", 1)[1] for part in headers["fleetkey-signature"].split(",")
        )
        public.verify(base64.b64decode(signature), f"{stamp}.".encode() + body)
        document = json.loads(body)
        assert document["idempotency_key"] == headers["idempotency-key"]
    events = sorted((json.loads(b)["event"], json.loads(b)["alert"]["kind"]) for _, b in delivered)
    assert events.count(("resolved", "lead-time")) == 1
    subjects = sorted(message_from_bytes(m)["Subject"] for m in box.messages)
    assert len(subjects) == 7
    assert f"[fleetkey] warning: Site {SITE}: lead-time" in subjects
    assert f"[fleetkey] resolved: Site {SITE}: lead-time" in subjects


def test_the_storm_forecast_weighs_a_license_lapse_against_that_storms_capacity(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    """A firmware-change capacity, newer but of another storm, is not the lapse's: the
    forecast compared against it (any kind, the newest)."""
    fleet(initialized, fleetkey, expires_in_days=20)
    data = DataDir(initialized)
    store = Store(default_url(initialized))
    clock = FixedClock(datetime.now(UTC))
    try:
        with store.transaction() as session:
            capacity.record(session, clock, "http://x", 800.0, {"storm": "license-lapse"})
            capacity.record(session, clock, "http://x", 0.01, {"storm": "firmware-change"})
        _, found = check(data, store, clock, Keyring(data.keys).trusted(), AlertSettings())
    finally:
        store.close()
    storm = next(a for a in found if a.kind == "storm")
    assert storm.details["capacity"] == 800.0
    assert storm.severity == "warning"  # 3 phones are far under 800 requests/s


def test_the_storm_forecast_counts_on_the_capacity_over_what_the_sites_phones_boot_over(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    """The site's phones boot over HTTP: a newer measurement over FTP is not theirs (issue 23's
    leftover: the newest of any protocol was taken), and the alert says which it took."""
    fleet(initialized, fleetkey, expires_in_days=20)
    data = DataDir(initialized)
    store = Store(default_url(initialized))
    clock = FixedClock(datetime.now(UTC))
    booted = [
        FetchRecord("/000000000000-license.cfg", "http", 200, 1, 1.0, clock.now(), mac=mac)
        for mac in ("0004f2000000", "0004f2000001", "0004f2000002")
    ]
    try:
        fetches.insert_records(store.engine, booted)
        with store.transaction() as session:
            capacity.record(session, clock, "http://x", 800.0, {"storm": "license-lapse"})
            capacity.record(session, clock, "ftp://x", 0.01, {"storm": "license-lapse"})
        _, found = check(data, store, clock, Keyring(data.keys).trusted(), AlertSettings())
        configured = AlertSettings(capacity=0.02)  # one given for all: taken as it is
        _, given = check(data, store, clock, Keyring(data.keys).trusted(), configured)
    finally:
        store.close()
    storm = next(a for a in found if a.kind == "storm")
    assert (storm.details["capacity"], storm.severity) == (800.0, "warning")
    assert storm.details["capacity_over"] == "over http, as 3 of the 3 phones boot"
    assert "800 req/s (over http, as 3 of the 3 phones boot)" in storm.message
    storm = next(a for a in given if a.kind == "storm")
    assert (storm.details["capacity"], storm.details["capacity_over"]) == (0.02, None)


def test_a_broken_or_misnamed_license_file_in_the_tree_is_flagged(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    fleet(initialized, fleetkey, expires_in_days=400)
    tree = initialized / "provisioning"
    (tree / "0004f2aaaaaa-license.cfg").write_bytes(b"<licenses><broken")
    site_file = (tree / SITE / "000000000000-license.cfg").read_bytes()
    (tree / "0004f2bbbbbb-license.cfg").write_bytes(site_file)  # a site key in a phone file
    found = json.loads(fleetkey("alerts", "--json").output)
    bad = {a["subject"]: a["message"] for a in found["alerts"] if a["kind"] == "bad-file"}
    assert bad["0004f2aaaaaa-license.cfg"].startswith(
        "posted file 0004f2aaaaaa-license.cfg: does not parse"
    )
    assert (
        bad["0004f2bbbbbb-license.cfg"]
        == "posted file 0004f2bbbbbb-license.cfg: key 0 (Site 100000000001): a Site key in "
        "0004f2bbbbbb-license.cfg"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smtp", "nohost"], "--smtp 'nohost' is not HOST:PORT"),
        (["--smtp", "h:99999"], "is not HOST:PORT"),
        (["--mail-to", "ops@example.org"], "--mail-to needs --smtp HOST:PORT"),
        (["--webhook", "ftp://x"], "is not an http:// or https:// URL"),
        (["--stages", "30,x"], "is not a comma-separated list of days"),
        (["--stages", "-1"], "stages are days before expiry"),
    ],
)
def test_bad_alert_options_are_refused_and_nothing_is_recorded(
    initialized: Path, fleetkey: Fleetkey, args: list[str], message: str
) -> None:
    fleet(initialized, fleetkey, expires_in_days=20)
    result = fleetkey("alerts", *args, code=2 if "stages" in args[0] else 1)
    assert message in result.output
    store = Store(default_url(initialized))
    try:
        with store.transaction() as session:
            assert alerts.listing(session, include_resolved=True) == []
    finally:
        store.close()

"""Delivering alert events: signed webhooks and e-mail, with retries and idempotency keys.

Webhook: ``POST`` of a JSON document to the URL, with ``Idempotency-Key`` (the same for every
retry of one event, so a receiver can drop duplicates) and ``Fleetkey-Signature: t=<unix
time>,ed25519=<base64>`` over ``<t>.<body>``, signed with the data directory's webhook key
(``keys/webhook-ed25519.pem``, made on first use; ``fleetkey alerts webhook-key`` prints the
public half). A 2xx answer is success (``post_signed``, which ``audit anchor --webhook`` uses
too); anything else or no answer is tried again with exponential backoff (30 s, 1 min, 2 min,
… up to an hour), 8 times in all. E-mail: one message per event over SMTP, with a
``Message-ID`` made from the same idempotency key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Final

import httpx

from fleetkey.authority.datadir import DataDir
from fleetkey.authority.files import atomic_write
from fleetkey.clock import Clock
from fleetkey.core.signing import Algorithm, SigningKey
from fleetkey.errors import WebhookError
from fleetkey.store import alerts
from fleetkey.store.alerts import Delivery
from fleetkey.store.store import Store

WEBHOOK_KEY: Final = "webhook-ed25519.pem"
TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    sender: str = "fleetkey@localhost"


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def webhook_key(data: DataDir) -> SigningKey:
    """The key webhooks are signed with; made on first use, readable by its owner only."""
    path = data.keys / WEBHOOK_KEY
    if path.is_file():
        return SigningKey.from_pem(path.read_bytes(), None, source=str(path))
    key = SigningKey.generate(Algorithm.ED25519)
    data.keys.mkdir(parents=True, exist_ok=True)
    atomic_write(path, key.to_pem(None), mode=0o600)
    return key


def idempotency_key(delivery: Delivery) -> str:
    """One value per event (alert key, event, first fired), whatever the channel or retry."""
    source = f"{delivery.alert.key}|{delivery.event}|{delivery.alert.first_at.isoformat()}"
    return hashlib.sha256(source.encode()).hexdigest()[:32]


def document(delivery: Delivery) -> dict[str, Any]:
    return {
        "event": delivery.event,
        "alert": delivery.alert.to_json(),
        "idempotency_key": idempotency_key(delivery),
    }


def signature_header(key: SigningKey, body: bytes, unix_time: int) -> str:
    signed = key.sign(f"{unix_time}.".encode() + body)
    return f"t={unix_time},ed25519={base64.b64encode(signed).decode()}"


def post_signed(
    url: str,
    document: Mapping[str, Any],
    key: SigningKey,
    unix_time: int,
    *,
    user_agent: str,
    headers: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> None:
    """POST ``document`` as JSON (sorted keys) to ``url`` with ``Fleetkey-Signature`` made by
    ``key`` at ``unix_time``; returns on a 2xx answer, else raises WebhookError.

    ``headers`` are sent too (``Idempotency-Key``); ``client`` is reused when given (one per
    round of deliveries), else one request is made with ``TIMEOUT_S``.
    """
    body = json.dumps(document, sort_keys=True).encode()
    sent = {
        "Content-Type": "application/json",
        **(headers or {}),
        "Fleetkey-Signature": signature_header(key, body, unix_time),
        "User-Agent": user_agent,
    }
    try:
        if client is None:
            answer = httpx.post(url, content=body, headers=sent, timeout=TIMEOUT_S)
        else:
            answer = client.post(url, content=body, headers=sent)
    except httpx.HTTPError as exc:
        raise WebhookError(f"{type(exc).__name__}: {exc}", url=url) from exc
    if not 200 <= answer.status_code < 300:
        raise WebhookError(
            f"HTTP {answer.status_code} from {url}", url=url, status=answer.status_code
        )


class Deliverer:
    def __init__(self, data: DataDir, smtp: SmtpSettings | None = None) -> None:
        self._data = data
        self._smtp = smtp
        self._key: SigningKey | None = None

    def deliver_due(self, store: Store, clock: Clock) -> DeliveryReport:
        """Try every delivery whose time has come, once; record each outcome."""
        report = DeliveryReport()
        with store.transaction() as session:
            waiting = alerts.due(session, clock.now())
        with httpx.Client(timeout=TIMEOUT_S) as client:
            for delivery in waiting:
                error = self._send(client, delivery, clock)
                with store.transaction() as session:
                    if error is None:
                        alerts.sent(session, delivery.id, clock.now())
                        report.sent += 1
                        continue
                    state = alerts.not_sent(session, delivery, clock.now(), error)
                report.errors.append(f"{delivery.channel}: {error}")
                if state == "failed":
                    report.failed += 1
                else:
                    report.retrying += 1
        return report

    def _send(self, client: httpx.Client, delivery: Delivery, clock: Clock) -> str | None:
        kind, _, target = delivery.channel.partition(":")
        try:
            if kind == "webhook":
                return self._webhook(client, target, delivery, clock)
            if kind == "mail":
                return self._mail(target, delivery)
        except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        return f"unknown channel {delivery.channel!r}"

    def _webhook(
        self, client: httpx.Client, url: str, delivery: Delivery, clock: Clock
    ) -> str | None:
        if self._key is None:
            self._key = webhook_key(self._data)
        try:
            post_signed(
                url,
                document(delivery),
                self._key,
                int(clock.now().timestamp()),
                user_agent="fleetkey-alerts",
                headers={"Idempotency-Key": idempotency_key(delivery)},
                client=client,
            )
        except WebhookError as exc:
            return str(exc)
        return None

    def _mail(self, address: str, delivery: Delivery) -> str | None:
        if self._smtp is None:
            return "no SMTP server configured (--smtp HOST:PORT)"
        alert = delivery.alert
        message = EmailMessage()
        message["From"] = self._smtp.sender
        message["To"] = address
        prefix = "resolved" if delivery.event == "resolved" else alert.severity
        message["Subject"] = f"[fleetkey] {prefix}: {alert.subject}: {alert.kind}"
        message["Message-ID"] = f"<{idempotency_key(delivery)}@fleetkey>"
        message.set_content(
            f"{alert.message}\n\nevent: {delivery.event}\nalert: {alert.key}\n"
            f"first seen: {alert.first_at.isoformat()}\n\n"
            + json.dumps(alert.details, indent=2, sort_keys=True)
            + "\n"
        )
        with smtplib.SMTP(self._smtp.host, self._smtp.port, timeout=TIMEOUT_S) as smtp:
            smtp.send_message(message)
        return None


def public_key_pem(data: DataDir) -> bytes:
    return webhook_key(data).public.to_pem()

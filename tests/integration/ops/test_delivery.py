"""One signed webhook POST for alerts and audit anchors, against a real local receiver."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from fleetkey.errors import WebhookError
from fleetkey.ops.delivery import post_signed
from fleetkey.testing import signing_key_for

from tests.helpers import WebhookReceiver, free_port

AT = 1_764_417_600  # 2025-11-29 12:00 UTC


class TestPostSigned:
    def test_the_document_goes_as_sorted_json_signed_over_time_and_body(self) -> None:
        key = signing_key_for()
        with WebhookReceiver() as receiver:
            post_signed(
                receiver.url,
                {"seq": 7, "head": "ab"},
                key,
                AT,
                user_agent="fleetkey-test",
                headers={"Idempotency-Key": "k1"},
            )
        ((headers, body, status),) = receiver.received
        assert status == 200
        assert body == b'{"head": "ab", "seq": 7}'
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == "fleetkey-test"
        assert headers["idempotency-key"] == "k1"
        stamp, signature = headers["fleetkey-signature"].removeprefix("t=").split(",ed25519=")
        assert stamp == str(AT)
        key.public.verify(base64.b64decode(signature), f"{AT}.".encode() + body)

    def test_a_given_client_is_used_and_any_2xx_is_success(self) -> None:
        with WebhookReceiver() as receiver, httpx.Client(timeout=5) as client:
            receiver.answers.extend([204, 202])
            for n in range(2):
                post_signed(
                    receiver.url, {"n": n}, signing_key_for(), AT, user_agent="t", client=client
                )
        assert [json.loads(body)["n"] for _, body, _ in receiver.received] == [0, 1]

    @pytest.mark.parametrize("status", [301, 400, 404, 500, 503])
    def test_an_answer_that_is_not_2xx_is_a_webhook_error_naming_status_and_url(
        self, status: int
    ) -> None:
        with WebhookReceiver() as receiver:
            receiver.answers.append(status)
            with pytest.raises(WebhookError) as raised:
                post_signed(receiver.url, {}, signing_key_for(), AT, user_agent="t")
        assert str(raised.value) == f"HTTP {status} from {receiver.url}"
        assert (raised.value.url, raised.value.status) == (receiver.url, status)
        assert len(receiver.received) == 1  # tried once: retrying is the caller's

    def test_no_answer_is_a_webhook_error_without_a_status(self) -> None:
        url = f"http://127.0.0.1:{free_port()}/nobody"
        with pytest.raises(WebhookError, match=r"^ConnectError: ") as raised:
            post_signed(url, {}, signing_key_for(), AT, user_agent="t")
        assert (raised.value.url, raised.value.status) == (url, None)
        assert isinstance(raised.value.__cause__, httpx.ConnectError)

"""The check-sync client against a real SIP peer: Kamailio as a UAS, with and without digest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from fleetkey.core.sip import Contact
from fleetkey.ops.notifier import Notifier, NotifyResult

from tests.helpers import Peer, free_port, start_kamailio


def running(tmp_path_factory: pytest.TempPathFactory, challenge: bool) -> Iterator[Peer]:
    started, process = start_kamailio(tmp_path_factory.mktemp("kamailio"), challenge)
    yield started
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def open_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    yield from running(tmp_path_factory, challenge=False)


@pytest.fixture(scope="module")
def challenging_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    yield from running(tmp_path_factory, challenge=True)


@pytest.fixture(params=["open_peer", "challenging_peer"])
def peer(request: pytest.FixtureRequest) -> Peer:
    chosen: Peer = request.getfixturevalue(request.param)
    return chosen


def notify(contact: Contact, *, credentials: tuple[str, str] | None = None,
           reboot: bool = True, t1: float = 0.5) -> NotifyResult:  # fmt: skip
    async def send() -> NotifyResult:
        async with Notifier(credentials=credentials, t1=t1) as notifier:
            return await notifier.notify(contact, reboot=reboot)

    return asyncio.run(send())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_answers_check_sync_200_and_logs_it(peer: Peer, transport: str) -> None:
    challenging = peer.challenging
    before = len(peer.lines("notify"))
    result = notify(peer.contact(transport), credentials=("1001", "secret"))
    assert result.ok, result
    assert result.status == 200
    assert result.sends == (2 if challenging else 1)
    logged = peer.lines("notify")[before:]
    assert len(logged) == 1
    assert logged[0]["proto"] == transport
    assert logged[0]["event"] == "[check-sync;reboot=true]"
    assert logged[0]["ruri"] == f"sip:0004f2000001@127.0.0.1:{peer.port}"
    if challenging:
        assert logged[0]["user"] == "[1001]"
        assert logged[0]["cseq"] == "2"  # the authorized retry: same call, next CSeq
        challenge = peer.lines("challenge")[-1]
        assert challenge["callid"] == logged[0]["callid"]
        assert challenge["cseq"] == "1"


def test_without_reboot_the_event_is_plain_check_sync(peer: Peer) -> None:
    before = len(peer.lines("notify"))
    assert notify(peer.contact(), credentials=("1001", "secret"), reboot=False).ok
    assert peer.lines("notify")[before:][0]["event"] == "[check-sync]"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("credentials", [None, ("1001", "wrong")], ids=["none", "wrong"])
def test_a_refused_challenge_is_reported_as_401_not_success(
    challenging_peer: Peer, transport: str, credentials: tuple[str, str] | None
) -> None:
    peer = challenging_peer
    before = len(peer.lines("notify"))
    result = notify(peer.contact(transport), credentials=credentials)
    assert not result.ok
    assert result.status == 401
    assert result.reason == "401 Unauthorized"
    assert peer.lines("notify")[before:] == []


def test_no_listener_over_udp_gives_up_after_timer_f_with_retransmissions() -> None:
    silent = Contact.parse(f"sip:p@127.0.0.1:{free_port()}")
    began = time.monotonic()
    result = notify(silent, t1=0.05)  # Timer F = 64 x T1 = 3.2 s
    elapsed = time.monotonic() - began
    assert result.status is None
    assert result.reason == f"no answer over UDP in 3.2 s ({result.sends} sends)"
    # at 0, .05, .15, .35, .75, 1.55 and 3.15 s: doubling from T1. The seventh is due one T1
    # before Timer F, so on a loaded machine it may come after F gave up: six or seven
    assert result.sends in (6, 7)
    assert 3.0 <= elapsed < 6.0


def test_no_listener_over_tcp_is_reported_at_once() -> None:
    result = notify(Contact.parse(f"sip:p@127.0.0.1:{free_port()};transport=tcp"))
    assert result.status is None
    assert result.reason.startswith("TCP connection failed: ConnectionRefusedError")

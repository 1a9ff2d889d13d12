"""How an emulated phone's loop waits for what a check-sync decided."""

from __future__ import annotations

import asyncio

import pytest

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.engine import Action, CheckConfig, DeviceEngine, Reason
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.signing import Algorithm, SignatureCheck, TrustedKeys
from fleetkey.emulate.booting import RememberedVerdicts
from fleetkey.emulate.phone import EmulatedPhone
from fleetkey.testing import make_license, signing_key_for, trusted_keys_for


def idle_phone() -> EmulatedPhone:
    return EmulatedPhone(DeviceEngine(PhoneConfig("0004f2000001"), TrustedKeys()), "127.10.1.1")


class TestNextDecided:
    """The phone loop's wait: for actions decided on a check-sync, or for its next timer."""

    def test_queued_actions_come_at_once_even_when_a_timer_is_due(self) -> None:
        async def scenario() -> list[Action] | None:
            phone = idle_phone()
            phone.decided.put_nowait([CheckConfig(Reason.CHECK_SYNC, ())])
            return await phone.next_decided(0.0)

        assert asyncio.run(scenario()) == [CheckConfig(Reason.CHECK_SYNC, ())]

    def test_none_once_the_timeout_passed(self) -> None:
        assert asyncio.run(idle_phone().next_decided(0.01)) is None

    @pytest.mark.parametrize("first", ["actions", "stop"])
    @pytest.mark.parametrize("turns", [0, 1, 3])
    def test_a_stop_is_never_lost_when_actions_arrive_at_the_same_moment(
        self, turns: int, first: str
    ) -> None:
        """Actions queued and a stop sent in the same loop turn, in either order, after the
        wait has run ``turns`` turns (0: not yet started): the wait always ends with
        CancelledError, and the actions stay queued (Python 3.11's wait_for returned the
        actions when they came first, and the phone's loop went on for ever: issue 17)."""

        async def scenario() -> int:
            phone = idle_phone()
            waiting = asyncio.ensure_future(phone.next_decided(30.0))
            for _ in range(turns):
                await asyncio.sleep(0)
            if first == "actions":
                phone.decided.put_nowait([])
                waiting.cancel()
            else:
                waiting.cancel()
                phone.decided.put_nowait([])
            with pytest.raises(asyncio.CancelledError):
                await waiting
            return phone.decided.qsize()

        assert asyncio.run(scenario()) == 1


class TestRememberedVerdicts:
    def test_each_distinct_key_is_checked_once_and_keeps_its_verdict(self) -> None:
        trusted = trusted_keys_for(Algorithm.ED25519)
        checked: list[LicenseKey] = []

        class Counting:
            def check(self, key: LicenseKey) -> SignatureCheck:
                checked.append(key)
                return trusted.check(key)

        remembered = RememberedVerdicts(Counting())
        site = make_license(serial="100000000001", type=LicenseType.SITE)
        other = make_license(signer=signing_key_for(Algorithm.RSA2048))  # not trusted here
        verdicts = [remembered.check(k) for k in (site, other, site, other, site)]
        assert checked == [site, other]
        expected = [trusted.check(k).status for k in (site, other, site, other, site)]
        assert [v.status for v in verdicts] == expected
        assert verdicts[0].status != verdicts[1].status  # one it trusts, one it cannot verify

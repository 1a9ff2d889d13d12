"""FTP logins: per-device from the inventory's credentials, the shared factory login, never
anonymous; failures counted per address and refused at once beyond the limit."""

from __future__ import annotations

import pytest

from fleetkey.serve.ftp.logins import (
    FAILURES_PER_ADDRESS,
    Logins,
    SharedLogin,
    parse_shared_login,
)
from fleetkey.serve.view import Credential, View
from fleetkey.store.credentials import hash_password
from fleetkey.testing import FixedView

MAC = "0004f2a1b2c3"
OTHER = "0004f2000002"


@pytest.fixture(scope="module")
def view() -> FixedView:
    return FixedView(
        View(
            credentials={
                "vvx": (Credential(MAC, hash_password("right"), None),),
                "shared-op": (
                    Credential(OTHER, hash_password("theirs"), None),
                    Credential(MAC, hash_password("mine"), None),
                ),
                "digest-only": (Credential(MAC, None, "ha1"),),
            }
        )
    )


def test_a_phones_own_login_names_it(view: FixedView) -> None:
    logins = Logins(view, None)
    assert logins.check("vvx", "right", "10.0.0.1").mac == MAC
    assert logins.check("vvx", "right", "10.0.0.1").mac == MAC  # remembered, same answer
    assert logins.outcomes == {"device": 2}


def test_a_login_several_phones_share_is_the_phone_whose_password_it_is(
    view: FixedView,
) -> None:
    logins = Logins(view, None)
    assert logins.check("shared-op", "mine", "10.0.0.1").mac == MAC
    assert logins.check("shared-op", "theirs", "10.0.0.1").mac == OTHER


@pytest.mark.parametrize(
    ("user", "password", "outcome", "reason"),
    [
        ("vvx", "wrong", "wrong", "authentication failed."),
        ("nobody", "x", "unknown-user", "authentication failed."),
        ("digest-only", "x", "unknown-user", "authentication failed."),
        ("anonymous", "guest@", "anonymous", "anonymous logins are not accepted."),
        ("FTP", "", "anonymous", "anonymous logins are not accepted."),
        ("PlcmSpIp", "PlcmSpIp", "unknown-user", "authentication failed."),  # off by default
    ],
)
def test_refused_logins_say_why_and_are_counted(
    view: FixedView, user: str, password: str, outcome: str, reason: str
) -> None:
    logins = Logins(view, None)
    result = logins.check(user, password, "10.0.0.1")
    assert (result.ok, result.outcome, result.reason) == (False, outcome, reason)
    assert logins.outcomes == {outcome: 1}


def test_the_shared_login_is_accepted_only_with_its_password(view: FixedView) -> None:
    logins = Logins(view, SharedLogin("PlcmSpIp", "PlcmSpIp"))
    accepted = logins.check("PlcmSpIp", "PlcmSpIp", "10.0.0.1")
    assert (accepted.ok, accepted.shared, accepted.mac) == (True, True, None)
    assert logins.check("PlcmSpIp", "plcmspip", "10.0.0.1").outcome == "wrong"


def test_an_address_that_fails_too_often_is_refused_before_any_password_check(
    view: FixedView,
) -> None:
    logins = Logins(view, None)
    for _ in range(FAILURES_PER_ADDRESS):
        assert logins.check("vvx", "wrong", "10.0.0.9").outcome == "wrong"
    held = logins.check("vvx", "right", "10.0.0.9")  # even the right password, for now
    assert (held.ok, held.outcome) == (False, "throttled")
    assert held.reason.startswith("too many failed logins from this address; retry in ")
    assert logins.check("vvx", "right", "10.0.0.10").mac == MAC  # another address is not held


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PlcmSpIp", "is not USER:PASSWORD"),
        (":secret", "is not USER:PASSWORD"),
        ("user:", "is not USER:PASSWORD"),
        ("anonymous:x", "anonymous login, which is never accepted"),
        ("ftp:x", "anonymous login, which is never accepted"),
        ("user name:x", "no spaces or control characters"),
        ("user:pa\tss", "no spaces or control characters"),
    ],
)
def test_a_bad_shared_login_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shared_login(text)


def test_a_shared_password_may_contain_colons() -> None:
    assert parse_shared_login("PlcmSpIp:a:b") == SharedLogin("PlcmSpIp", "a:b")


@pytest.mark.parametrize(
    ("user", "password", "named"),
    [
        ("vvx", "wrong", MAC),  # one phone has the login: the refusal is said of it
        ("shared-op", "wrong", None),  # two phones share it: whose, nobody can say
        ("nobody", "x", None),
        ("digest-only", "x", None),  # no Basic hash: not a login FTP checks
        ("anonymous", "x", None),
    ],
)
def test_a_refused_login_names_the_phone_whose_login_it_was(
    view: FixedView, user: str, password: str, named: str | None
) -> None:
    result = Logins(view, None).check(user, password, "10.0.0.9")
    assert (result.ok, result.named) == (False, named)


def test_a_held_back_address_still_names_the_phone(view: FixedView) -> None:
    logins = Logins(view, None)
    for _ in range(FAILURES_PER_ADDRESS):
        logins.check("nobody", "x", "10.0.0.10")
    result = logins.check("vvx", "wrong", "10.0.0.10")
    assert (result.outcome, result.named) == ("throttled", MAC)


def test_a_good_login_names_no_refusal(view: FixedView) -> None:
    assert Logins(view, None).check("vvx", "right", "10.0.0.11").named is None

"""Digest and Basic checks without a server: nonces age, counts grow, logins are remembered."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fleetkey.serve.http.auth import NONCE_TTL_S, AuthMode, DeviceAuth
from fleetkey.serve.view import Credential
from fleetkey.store.credentials import digest_ha1, hash_password

MAC = "0004f2a1b2c3"
USER, PASSWORD = "vvx", "secret"
STORED = Credential(MAC, hash_password(PASSWORD), digest_ha1(USER, PASSWORD))


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make(mode: AuthMode = AuthMode.ANY) -> tuple[DeviceAuth, Clock]:
    clock = Clock()
    logins = {USER: (STORED,)}
    return DeviceAuth(mode, lambda user: logins.get(user, ()), now=clock), clock


def nonce_of(auth: DeviceAuth) -> str:
    header = auth.challenges()[0][1]
    return header.split('nonce="', 1)[1].split('"', 1)[0]


def digest(nonce: str, nc: str = "00000001", uri: str = "/a.cfg", password: str = PASSWORD) -> str:
    ha1 = md5(f"{USER}:fleetkey:{password}")
    answer = md5(f"{ha1}:{nonce}:{nc}:c0ffee:auth:{md5(f'GET:{uri}')}")
    return (
        f'Digest username="{USER}", realm="fleetkey", nonce="{nonce}", uri="{uri}", '
        f'qop=auth, nc={nc}, cnonce="c0ffee", response="{answer}", algorithm=MD5'
    )


def test_digest_answer_names_the_phone() -> None:
    auth, _ = make()
    assert auth.check("GET", "/a.cfg", digest(nonce_of(auth))).mac == MAC


def test_each_challenge_has_its_own_nonce() -> None:
    auth, _ = make()
    assert nonce_of(auth) != nonce_of(auth)


def test_nonce_goes_stale_after_its_lifetime() -> None:
    auth, clock = make()
    nonce = nonce_of(auth)
    clock.now += NONCE_TTL_S + 1
    verdict = auth.check("GET", "/a.cfg", digest(nonce))
    assert (verdict.mac, verdict.stale) == (None, True)


def test_nonce_counts_must_grow() -> None:
    auth, _ = make()
    nonce = nonce_of(auth)
    assert auth.check("GET", "/a.cfg", digest(nonce, "00000001")).mac == MAC
    assert auth.check("GET", "/a.cfg", digest(nonce, "00000002")).mac == MAC
    again = auth.check("GET", "/a.cfg", digest(nonce, "00000002"))
    assert (again.mac, again.reason) == (None, "nonce count reused")


def test_forged_nonce_is_refused() -> None:
    auth, _ = make()
    nonce = nonce_of(auth)
    forged = nonce[:-1] + ("1" if nonce[-1] == "0" else "0")  # one character changed
    assert auth.check("GET", "/a.cfg", digest(forged)).reason == "Digest nonce was not issued here"


def test_digest_for_another_uri_is_refused() -> None:
    auth, _ = make()
    verdict = auth.check("GET", "/b.cfg", digest(nonce_of(auth)))
    assert verdict.reason == "Digest uri does not match the request"


def test_basic_is_checked_slowly_once_then_remembered() -> None:
    auth, _ = make()
    header = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    first = auth.check("GET", "/a.cfg", header)
    assert first.slow_basic == (USER, PASSWORD)
    assert auth.check_basic_slowly(USER, PASSWORD).mac == MAC
    assert auth.check("GET", "/a.cfg", header).mac == MAC


def test_basic_wrong_password_is_refused_on_the_slow_path() -> None:
    auth, _ = make()
    assert auth.check_basic_slowly(USER, "nope").reason == "wrong password for 'vvx'"


@pytest.mark.parametrize(
    ("mode", "scheme"),
    [(AuthMode.BASIC, "Digest x=1"), (AuthMode.DIGEST, "Basic dTpw")],
)
def test_a_scheme_not_enabled_is_refused(mode: AuthMode, scheme: str) -> None:
    auth, _ = make(mode)
    assert "is not accepted here" in auth.check("GET", "/a", scheme).reason


def test_challenges_follow_the_mode() -> None:
    assert [h[1].split()[0] for h in make(AuthMode.DIGEST)[0].challenges()] == ["Digest"]
    assert [h[1].split()[0] for h in make(AuthMode.BASIC)[0].challenges()] == ["Basic"]


def test_digest_without_qop_is_refused_since_it_could_be_replayed() -> None:
    auth, _ = make()
    nonce = nonce_of(auth)
    ha2 = md5("GET:/x.cfg")
    answer = md5(f"{digest_ha1(USER, PASSWORD)}:{nonce}:{ha2}")  # RFC 2069 style: no count
    header = (
        f'Digest username="{USER}", realm="fleetkey", nonce="{nonce}", uri="/x.cfg", '
        f'response="{answer}"'
    )
    verdict = auth.check("GET", "/x.cfg", header)
    assert (verdict.mac, verdict.reason) == (None, "Digest needs qop=auth")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_failed_logins_from_one_address_are_refused_before_any_scrypt() -> None:
    auth, clock = make()
    for _ in range(5):
        slow = auth.check("GET", "/x", basic(USER, "wrong"), "10.0.0.9")
        assert slow.slow_basic is not None
        assert auth.reserve_slow_check(USER, "10.0.0.9") is None
        assert auth.check_basic_slowly(*slow.slow_basic, "10.0.0.9").mac is None
    held = auth.check("GET", "/x", basic(USER, PASSWORD), "10.0.0.9")
    assert (held.slow_basic, held.reason) == (None, "too many failed logins from this address")
    assert held.retry_after_s == pytest.approx(10.0)
    other = auth.check("GET", "/x", basic(USER, PASSWORD), "10.0.0.10")
    assert other.slow_basic is not None  # another address is not held back
    clock.now += 10.0
    again = auth.check("GET", "/x", basic(USER, PASSWORD), "10.0.0.9")
    assert again.slow_basic is not None  # the window passed


def test_one_failing_login_behind_a_nat_does_not_hold_back_the_others() -> None:
    auth, _ = make()
    for _ in range(5):
        wrong = digest(nonce_of(auth), uri="/x", password="bad")  # noqa: S106  # a wrong one
        assert auth.check("GET", "/x", wrong, "nat").mac is None
    assert auth.check("GET", "/x", digest(nonce_of(auth), uri="/x"), "nat").retry_after_s
    other = "Basic " + base64.b64encode(b"other:pw").decode()
    verdict = auth.check("GET", "/x", other, "nat")
    assert verdict.retry_after_s is None  # another login from the address is still checked
    assert verdict.reason == "no phone has the login 'other'"


def test_checks_under_way_count_so_a_burst_gets_no_more_than_its_share() -> None:
    auth, _ = make()
    allowed = [auth.reserve_slow_check(USER, "10.0.0.9") is None for _ in range(50)]
    assert allowed.count(True) == 5  # the rest refused before any scrypt ran
    for _ in range(5):
        auth.check_basic_slowly(USER, PASSWORD, "10.0.0.9")  # they succeed, and count off
    assert auth.reserve_slow_check(USER, "10.0.0.9") is None


def test_missing_credentials_are_no_failure() -> None:
    auth, _ = make()
    for _ in range(100):  # every phone's first request, from one NAT address
        assert auth.check("GET", "/x", None, "nat").reason == "credentials required"
    assert auth.check("GET", "/x", basic(USER, PASSWORD), "nat").slow_basic is not None

"""Digest and Basic checks without a server: nonces age, counts grow, logins are remembered."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fleetkey.serve.cache import Credential
from fleetkey.serve.http.auth import NONCE_TTL_S, AuthMode, DeviceAuth
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

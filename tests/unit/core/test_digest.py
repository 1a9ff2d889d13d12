"""Digest authentication both ways: known answers from the RFCs, challenges, answers, params."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.core import digest
from fleetkey.errors import DigestError

# RFC 2617 §3.5: the server's challenge and the client's answer to it
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"


class TestKnownAnswers:
    def test_rfc_2617_example(self) -> None:
        ha1 = digest.ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        assert ha1 == "939e7578ed9e3c518a452acee763bce9"
        answer = digest.response(
            ha1,
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        assert answer == RFC2617_RESPONSE

    def test_rfc_7616_md5_example(self) -> None:
        ha1 = digest.ha1("Mufasa", "http-auth@example.org", "Circle of Life")
        answer = digest.response(
            ha1,
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop="auth",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        assert answer == "8ca523f5e9506fed4657c9700eebdbec"

    def test_without_qop_the_response_is_rfc_2069s(self) -> None:
        ha1 = digest.ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        ha2 = digest.md5_hex("GET:/dir/index.html")
        expected = digest.md5_hex(f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}")
        assert digest.response(
            ha1, "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093"
        ) == (expected)


class TestChallenge:
    def test_the_rfc_2617_challenge_is_answered_with_the_rfc_response(self) -> None:
        offered = digest.Challenge.parse(RFC2617_CHALLENGE)
        assert offered == digest.Challenge(
            "testrealm@host.com",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop=True,
            opaque="5ccc069c403ebaf9f0171e9517f40e41",
        )
        header = offered.authorization(
            "GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b"
        )
        assert header == (
            'Digest username="Mufasa", realm="testrealm@host.com", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
            f'response="{RFC2617_RESPONSE}", algorithm=MD5, qop=auth, nc=00000001, '
            'cnonce="0a4f113b", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        )

    def test_the_server_expects_what_the_client_answers(self) -> None:
        for challenge in (
            digest.challenge("PolycomSPIP", "n1", qop=False),
            digest.challenge("fleetkey", "n2"),
            'Digest realm="PolycomSPIP", nonce="n3", qop="auth,auth-int", opaque="o"',
        ):
            header = digest.Challenge.parse(challenge).authorization(
                "NOTIFY", "sip:phone@127.10.1.1:5060", "1001", "secret", "cn"
            )
            answer = digest.parse_header(header)
            assert answer is not None
            assert answer["username"] == "1001"
            ha1 = digest.ha1("1001", answer["realm"], "secret")
            assert digest.expected_response(ha1, "NOTIFY", answer) == answer["response"]
            wrong = digest.ha1("1001", answer["realm"], "wrong")
            assert digest.expected_response(wrong, "NOTIFY", answer) != answer["response"]

    def test_a_server_challenge_reads_as_phones_expect_it(self) -> None:
        assert digest.challenge("fleetkey", "abc") == (
            'Digest realm="fleetkey", qop="auth", algorithm=MD5, nonce="abc"'
        )
        assert digest.challenge("fleetkey", "abc", stale=True).endswith(', nonce="abc", stale=true')
        assert digest.challenge("PolycomSPIP", "abc", qop=False) == (
            'Digest realm="PolycomSPIP", algorithm=MD5, nonce="abc"'
        )

    @pytest.mark.parametrize(
        ("challenge", "message"),
        [
            ('Basic realm="x"', "is not a Digest challenge"),
            ('Digest realm="x"', "is not a Digest challenge"),
            ('Digest realm="x", nonce="n", nonce="m"', "is not a Digest challenge"),
            ('Digest realm="x", nonce="n", algorithm=SHA-256', "is not MD5"),
            ('Digest realm="x", nonce="n", qop="auth-int"', "does not offer auth"),
        ],
    )
    def test_challenges_fleetkey_cannot_answer_are_refused_clearly(
        self, challenge: str, message: str
    ) -> None:
        with pytest.raises(DigestError, match=message):
            digest.Challenge.parse(challenge)


class TestParams:
    def test_quoted_and_bare_values_with_names_lowercased(self) -> None:
        assert digest.parse_params('Realm="a, b", nc=00000001 ,qop = auth, x=""') == {
            "realm": "a, b",
            "nc": "00000001",
            "qop": "auth",
            "x": "",
        }

    def test_escapes_in_quoted_values_are_undone(self) -> None:
        assert digest.parse_params(r'username="a\"b\\c"') == {"username": 'a"b\\c'}

    @pytest.mark.parametrize(
        "text",
        [
            'realm="x", realm="y"',  # a parameter named twice
            'realm="x" nonce="y"',  # no comma
            'realm="unterminated',
            "realm",
            "=x",
            'realm="x",,',
        ],
    )
    def test_lists_that_do_not_read_as_rfc_7616_are_refused_whole(self, text: str) -> None:
        assert digest.parse_params(text) is None

    def test_a_header_of_another_scheme_has_no_digest_params(self) -> None:
        assert digest.parse_header("Basic dTpw") is None
        assert digest.parse_header('digest nonce="n"') == {"nonce": "n"}

    @given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
    def test_any_printable_user_name_survives_the_header(self, user: str) -> None:
        header = digest.Challenge("r", "n", qop=True).authorization("GET", "/", user, "p", "c")
        answer = digest.parse_header(header)
        assert answer is not None
        assert answer["username"] == user

"""Which address a request is recorded under, with and without trusted proxies; who counts as a
proxy, one rule for HTTP's trusted proxies and FTP's PROXY header."""

from __future__ import annotations

import pytest

from fleetkey.errors import InputError
from fleetkey.serve.proxies import ForwardedProtoError, TrustedProxies, is_within, parse_networks

PROXIES = TrustedProxies(parse_networks(["10.0.0.0/8", "::1"]))


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("192.0.2.7", "203.0.113.9", "192.0.2.7"),  # not a proxy: the header is a claim
        ("10.1.1.1", None, "10.1.1.1"),
        ("10.1.1.1", "203.0.113.9", "203.0.113.9"),
        ("10.1.1.1", "198.51.100.1, 203.0.113.9, 10.2.2.2", "203.0.113.9"),  # rightmost untrusted
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", "10.3.3.3"),  # all trusted: where the chain began
        ("10.1.1.1", "not-an-address", "10.1.1.1"),
        ("10.1.1.1", " , ", "10.1.1.1"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.1.1.1", "203.0.113.9", "203.0.113.9"),  # a dual-stack listener's peer
    ],
)
def test_client_address(peer: str, header: str | None, client: str) -> None:
    assert PROXIES.client(peer, header) == client


def test_without_proxies_the_peer_is_the_client() -> None:
    assert TrustedProxies().client("10.1.1.1", "203.0.113.9") == "10.1.1.1"


@pytest.mark.parametrize("text", ["", "10.0.0.0/33", "proxy.example", "10.0.0.1/8/8"])
def test_bad_proxy_networks_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="is not an IP address or network"):
        parse_networks([text])


@pytest.mark.parametrize(
    ("peer", "header", "scheme"),
    [
        ("10.1.1.1", "https", "https"),
        ("10.1.1.1", "HTTPS", "https"),
        ("10.1.1.1", " http ", "http"),
        ("10.1.1.1", None, None),  # no say: the connection's own scheme stands
        ("192.0.2.7", "https", None),  # not a proxy: a claim
        ("192.0.2.7", "gopher", None),  # not a proxy: not even looked at
        ("::1", "https", "https"),
    ],
)
def test_forwarded_scheme(peer: str, header: str | None, scheme: str | None) -> None:
    assert PROXIES.scheme(peer, header) == scheme


def test_without_proxies_no_scheme_is_believed() -> None:
    assert TrustedProxies().scheme("10.1.1.1", "https") is None


@pytest.mark.parametrize("header", ["", "ftp", "https, http", "https://x", "proto=https", "h ttps"])
def test_a_trusted_proxys_scheme_that_is_neither_http_nor_https_is_refused(header: str) -> None:
    with pytest.raises(ForwardedProtoError, match=r"expected one value, http or https"):
        PROXIES.scheme("10.1.1.1", header)


@pytest.mark.parametrize(
    ("address", "within"),
    [
        ("10.0.0.5", True),
        ("::ffff:10.0.0.5", True),  # IPv4-mapped: the IPv4 address it is
        ("::1", True),
        ("11.0.0.5", False),
        ("::ffff:11.0.0.5", False),
        ("2001:db8::5", False),
        ("not-an-address", False),
        ("", False),
    ],
)
def test_one_membership_rule_for_every_kind_of_proxy(address: str, within: bool) -> None:
    assert is_within(address, parse_networks(["10.0.0.0/8", "::1"])) is within

"""The client behind proxies: who counts as a proxy (``--trusted-proxy`` for HTTP's
X-Forwarded-For and X-Forwarded-Proto, ``--ftp-proxy-protocol`` for FTP's PROXY header, one
membership rule for both), and what HTTP's headers say, from trusted proxies only.

A phone could send any X-Forwarded-For it likes, so the header counts only when the connection
comes from a proxy the operator named (``--trusted-proxy``). Then the client is the rightmost
address in the header that is not itself a trusted proxy (each proxy appends the address it
saw; only the ones we trust can be believed).

X-Forwarded-Proto says whether the phone's own connection was HTTPS (a proxy that ended TLS:
HAProxy's ``frontend phones-tls``, docs/deploy/haproxy.cfg); the record then says ``https``.
From anyone else it is a claim and is ignored. From a trusted proxy it must be one value,
``http`` or ``https`` (any case): anything else is the proxy's misconfiguration, refused (400)
rather than recorded as a guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from fleetkey.errors import InputError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``127.0.0.1`` or ``::1``; a clear error for anything else."""
    networks: list[Network] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise InputError(
                f"trusted proxy {text!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from exc
    return tuple(networks)


def is_within(address: str, networks: Iterable[Network]) -> bool:
    """Whether ``address`` is in one of ``networks``; an IPv4-mapped IPv6 address (a dual-stack
    listener's ``::ffff:10.0.0.5``) as the IPv4 address it is. Not an address: False."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class ForwardedProtoError(ValueError):
    """A trusted proxy's X-Forwarded-Proto that is not one of ``http``, ``https``."""


class TrustedProxies:
    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self._networks = tuple(networks)
        self._trusted = lru_cache(maxsize=4096)(self._is_trusted)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def _is_trusted(self, address: str) -> bool:
        return is_within(address, self._networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The address to record for a request from ``peer`` carrying ``forwarded_for``."""
        if not self._networks or peer is None or forwarded_for is None:
            return peer
        if not self._trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for address in reversed(hops):
            if not self._trusted(address):
                return address if _is_ip(address) else peer
        return hops[0] if hops else peer  # all trusted: the first one started the chain

    def scheme(self, peer: str | None, forwarded_proto: str | None) -> str | None:
        """``https`` or ``http`` as the trusted proxy ``peer`` says the phone's connection was;
        None when no trusted proxy says (the connection's own scheme stands).
        ForwardedProtoError for a trusted proxy's value that is neither."""
        if forwarded_proto is None or peer is None or not self._networks:
            return None
        if not self._trusted(peer):
            return None
        value = forwarded_proto.strip().lower()
        if value not in ("http", "https"):
            raise ForwardedProtoError(
                f"X-Forwarded-Proto {forwarded_proto[:40]!r} from the trusted proxy {peer}: "
                "expected one value, http or https"
            )
        return value


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

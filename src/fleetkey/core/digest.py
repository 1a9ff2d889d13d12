"""Digest access authentication with MD5 (RFC 7616, RFC 2617; SIP's, RFC 3261 §22.4), no I/O.

Both sides of the exchange in one place:

- a server challenges with :func:`challenge` and checks an answer against the response
  :func:`response` computes from the user's stored HA1 (:func:`ha1`), so it never needs the
  password (``serve/http/auth.py`` for phones over HTTP; the emulated phone's SIP port);
- a client reads the challenge (:meth:`Challenge.parse`) and answers it
  (:meth:`Challenge.authorization`), as the rollout executor does for a NOTIFY.

Header parameters are parsed by one strict reader (:func:`parse_params`, RFC 7616 §3.4: ``name=
token`` or ``name="quoted string"``, comma-separated): a list that does not read that way, or
names a parameter twice, is refused whole rather than read in part. Only MD5 is spoken, with
and without ``qop=auth`` (phones speak nothing else); ``auth-int`` and ``-sess`` are not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from fleetkey.errors import DigestError

ALGORITHM: Final = "MD5"
QOP: Final = "auth"
FIRST_NONCE_COUNT: Final = "00000001"  # RFC 7616 §3.4: nc, 8 hex digits, 1 for a fresh nonce
# name = "quoted string" | token; a token never holds a quote, so an unterminated string fails
_PARAM: Final = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^",\s]*)\s*(?:,|$)')
_ESCAPED: Final = re.compile(r"\\(.)")
_QUOTE_ESCAPES: Final = re.compile(r'["\\]')
_UNQUOTED: Final = frozenset({"algorithm", "qop", "nc", "stale"})  # written as tokens


def md5_hex(text: str) -> str:
    """MD5 of the UTF-8 text, as 32 lowercase hex digits (RFC 7616's ``H``)."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def ha1(user: str, realm: str, password: str) -> str:
    """HA1 = MD5(user:realm:password): what a server keeps instead of the password."""
    return md5_hex(f"{user}:{realm}:{password}")


def response(
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    *,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The ``response`` an answer must carry (RFC 7616 §3.4.1; without qop, RFC 2069)."""
    ha2 = md5_hex(f"{method}:{uri}")
    if qop is None:
        return md5_hex(f"{ha1}:{nonce}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_params(text: str) -> dict[str, str] | None:
    """``k=v, k="quoted"`` pairs (RFC 7616 §3.4), names lowercased, quoted values unescaped;
    None when the text is not such a list or names a parameter twice."""
    params: dict[str, str] = {}
    position, text = 0, text.strip()
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None or match.end() == position:
            return None
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = _ESCAPED.sub(r"\1", value[1:-1])
        if name in params:
            return None
        params[name] = value
        position = match.end()
    return params


def parse_header(header: str) -> dict[str, str] | None:
    """The parameters of a ``Digest …`` header value (challenge or answer); None when the
    scheme is not Digest or the parameters do not parse."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    return parse_params(rest)


def challenge(realm: str, nonce: str, *, qop: bool = True, stale: bool = False) -> str:
    """A ``WWW-Authenticate`` value: ``Digest realm="…", qop="auth", algorithm=MD5, nonce="…"``."""
    fields = {"realm": realm, **({"qop": QOP} if qop else {}), "algorithm": ALGORITHM}
    fields["nonce"] = nonce
    text = _header(fields, quoted=frozenset({"realm", "qop", "nonce"}))
    return text + (", stale=true" if stale else "")


@dataclass(frozen=True, slots=True)
class Challenge:
    """A Digest challenge a client can answer: MD5, with or without ``qop=auth``."""

    realm: str
    nonce: str
    qop: bool  # the server offered qop=auth (the answer then carries nc and cnonce)
    opaque: str | None = None

    @classmethod
    def parse(cls, header: str) -> Challenge:
        """The challenge in a ``WWW-Authenticate`` (or ``Proxy-Authenticate``) value."""
        offered = parse_header(header) or {}
        if not offered.get("nonce") or "realm" not in offered:
            raise DigestError(f"challenge {header[:80]!r} is not a Digest challenge with a nonce")
        if offered.get("algorithm", ALGORITHM).upper() != ALGORITHM:
            raise DigestError(f"challenge algorithm {offered['algorithm']!r} is not MD5")
        qops = [q.strip() for q in offered.get("qop", "").split(",") if q.strip()]
        if qops and QOP not in qops:
            raise DigestError(f"challenge qop {offered['qop']!r} does not offer auth")
        return cls(offered["realm"], offered["nonce"], bool(qops), offered.get("opaque"))

    def authorization(
        self,
        method: str,
        uri: str,
        user: str,
        password: str,
        cnonce: str,
        *,
        nc: str = FIRST_NONCE_COUNT,
    ) -> str:
        """The ``Authorization`` value answering this challenge for ``method uri``; ``nc``
        counts the requests made with this nonce (RFC 7616 §3.4)."""
        fields = {"username": user, "realm": self.realm, "nonce": self.nonce, "uri": uri}
        qop = QOP if self.qop else None
        fields["response"] = response(
            ha1(user, self.realm, password),
            method,
            uri,
            self.nonce,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )
        fields["algorithm"] = ALGORITHM
        if qop is not None:
            fields |= {"qop": qop, "nc": nc, "cnonce": cnonce}
        if self.opaque is not None:
            fields["opaque"] = self.opaque
        return _header(fields, quoted=frozenset(fields) - _UNQUOTED)


def expected_response(ha1: str, method: str, answer: Mapping[str, str]) -> str:
    """The response a server expects for an answer's own fields (nonce, uri, qop, nc, cnonce),
    from the user's HA1; the caller has checked the fields it requires."""
    return response(
        ha1,
        method,
        answer.get("uri", ""),
        answer.get("nonce", ""),
        qop=answer.get("qop"),
        nc=answer.get("nc", ""),
        cnonce=answer.get("cnonce", ""),
    )


def _header(fields: Mapping[str, str], *, quoted: frozenset[str]) -> str:
    parts = [
        f"{name}={_quoted(value)}" if name in quoted else f"{name}={value}"
        for name, value in fields.items()
    ]
    return "Digest " + ", ".join(parts)


def _quoted(value: str) -> str:
    """A quoted-string (RFC 7230 §3.2.6): ``"`` and ``\\`` escaped, as parse_params reads it."""
    return '"' + _QUOTE_ESCAPES.sub(lambda match: "\\" + match.group(0), value) + '"'

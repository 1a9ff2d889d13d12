"""Request paths: plain names pass; traversal and tricks in every encoding are refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core import requestpath
from fleetkey.core.requestpath import filename_segments, url_path_segments
from fleetkey.errors import RequestPathError


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        (b"/0004f2000001-license.cfg", ("0004f2000001-license.cfg",)),
        (b"/100000000001/000000000000-license.cfg", ("100000000001", "000000000000-license.cfg")),
        (b"/sip.ld", ("sip.ld",)),
        (b"/2345-12670-001.sip.ld", ("2345-12670-001.sip.ld",)),
        (b"/a%20b.cfg", ("a b.cfg",)),
        (b"/a%2Fb", ("a", "b")),
        (b"/x.cfg?ts=1", ("x.cfg",)),
    ],
)
def test_plain_paths_pass(raw: bytes, segments: tuple[str, ...]) -> None:
    assert url_path_segments(raw) == segments


REFUSED = [
    ("dot dot", b"/../etc/passwd", "a '..' segment"),
    ("inner dot dot", b"/a/../../etc/passwd", "a '..' segment"),
    ("encoded dot dot", b"/%2e%2e/etc/passwd", "a '..' segment"),
    ("mixed case encoding", b"/%2E%2e/x", "a '..' segment"),
    ("encoded slash", b"/..%2fetc%2fpasswd", "a '..' segment"),
    ("double encoded", b"/%252e%252e/etc/passwd", "character '%'"),
    ("backslash traversal", b"/a/..\\..\\x", "hidden name"),
    ("encoded backslash traversal", b"/..%5c..%5cx", "hidden name"),
    ("backslash", b"/a\\b.cfg", "character '\\\\'"),
    ("encoded backslash", b"/a%5cb.cfg", "character '\\\\'"),
    ("overlong utf-8 dot", b"/%c0%ae%c0%ae/x", "not valid UTF-8"),
    ("nul byte", b"/x.cfg%00.png", "character '\\x00'"),
    ("newline", b"/x%0d%0aSet-Cookie:a", "character '\\r'"),
    ("dot", b"/./x", "a '.' segment"),
    ("hidden", b"/.0004f2000001-license.cfg.1a2b.tmp", "hidden name"),
    ("double slash", b"//etc/passwd", "an empty segment"),
    ("trailing slash", b"/dir/", "an empty segment"),
    ("root", b"/", "an empty segment"),
    ("bad escape", b"/a%zz", "starts no %XX escape"),
    ("truncated escape", b"/a%2", "starts no %XX escape"),
    ("long name", b"/" + b"a" * 256, "longer than 255 bytes"),
    ("long path", b"/" + b"a/" * 600 + b"a", "longer than 1024"),
    ("too deep", b"/" + b"/".join([b"a"] * 17), "17 segments"),
    ("huge", b"/" + b"%41" * 2000, "longer than 3072"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_tricks_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(RequestPathError) as caught:
        url_path_segments(raw)
    assert reason in caught.value.reason


def test_tftp_names_are_not_percent_decoded() -> None:
    assert filename_segments(b"0004f2000001-license.cfg") == ("0004f2000001-license.cfg",)
    assert filename_segments(b"/sub/sip.ld") == ("sub", "sip.ld")
    with pytest.raises(RequestPathError, match="character '%'"):
        filename_segments(b"%2e%2e/x")
    with pytest.raises(RequestPathError, match=r"'\.\.' segment"):
        filename_segments(b"../x")


def _slow(raw: bytes) -> tuple[str, ...] | str:
    """The per-segment rules alone (no fast path), or the refusal's reason."""
    try:
        text = raw.decode("utf-8")
        parts = text.removeprefix("/").split("/")
        if len(parts) > requestpath.MAX_SEGMENTS or len(raw) > requestpath.MAX_PATH_BYTES:
            return "refused"
        for part in parts:
            requestpath._check(part)
    except (UnicodeDecodeError, RequestPathError):
        return "refused"
    return tuple(parts)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=12),
        min_size=1,
        max_size=18,
    )
)
def test_the_fast_path_refuses_and_accepts_exactly_what_the_rules_do(parts: list[str]) -> None:
    raw = ("/" + "/".join(parts)).encode()
    try:
        got: tuple[str, ...] | str = requestpath.filename_segments(raw)
    except RequestPathError:
        got = "refused"
    assert got == _slow(raw)

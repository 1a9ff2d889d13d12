"""Which paths a phone may ask for: one decoding, then strict segment rules (HTTP, TFTP, FTP).

A request path is percent-decoded exactly once (HTTP) or taken as sent (TFTP, FTP), must be UTF-8,
and is split on ``/``. Refused, whatever the encoding that produced them: ``.`` and ``..``
segments, hidden names (``.*``, which also hides fleetkey's temporary files), backslashes,
NUL and other control characters, a ``%`` left after decoding (double encoding), empty
segments (``//``, a trailing ``/``), overlong names or paths. What passes is a tuple of plain
names that can only address something below the served directory.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote_to_bytes

from fleetkey.errors import RequestPathError

MAX_PATH_BYTES: Final = 1024  # longer than any provisioning path (domain.md §4: 255 per name)
MAX_SEGMENTS: Final = 16
MAX_SEGMENT_BYTES: Final = 255  # domain.md §4: APP_FILE_PATH and each CONFIG_FILES entry ≤ 255
_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN: Final = re.compile(r"[\x00-\x1f\x7f\\%]")
# a path that cannot break any rule below: checked with one match instead of per segment
# (phones ask for per-MAC names, too many distinct paths for a cache to hold)
_PLAIN: Final = re.compile(
    r"/?(?:[A-Za-z0-9_~+=,;:@!$'()*-][A-Za-z0-9._~+=,;:@!$'()*-]{0,254}/){0,15}"
    r"[A-Za-z0-9_~+=,;:@!$'()*-][A-Za-z0-9._~+=,;:@!$'()*-]{0,254}"
)


def url_path_segments(raw: bytes) -> tuple[str, ...]:
    """Segments of an HTTP request target's path (still percent-encoded, as on the wire)."""
    if len(raw) > 3 * MAX_PATH_BYTES:
        raise RequestPathError(f"{len(raw)} bytes, longer than {3 * MAX_PATH_BYTES}")
    path = raw.split(b"?", 1)[0] if b"?" in raw else raw
    if b"%" not in path:
        return _segments(path)
    if _BAD_ESCAPE.search(path):
        raise RequestPathError("a '%' that starts no %XX escape")
    return _segments(unquote_to_bytes(path))


def filename_segments(raw: bytes) -> tuple[str, ...]:
    """Segments of a TFTP file name (never percent-encoded)."""
    return _segments(raw)


def _segments(decoded: bytes) -> tuple[str, ...]:
    if len(decoded) > MAX_PATH_BYTES:
        raise RequestPathError(f"{len(decoded)} bytes, longer than {MAX_PATH_BYTES}")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestPathError("not valid UTF-8 (overlong or broken sequences)") from exc
    if _PLAIN.fullmatch(text):  # nearly every request: nothing to refuse
        return tuple(text.removeprefix("/").split("/"))
    parts = text.removeprefix("/").split("/")
    if len(parts) > MAX_SEGMENTS:
        raise RequestPathError(f"{len(parts)} segments, more than {MAX_SEGMENTS}")
    for part in parts:
        _check(part)
    return tuple(parts)


def _check(part: str) -> None:
    if not part:
        raise RequestPathError("an empty segment ('//', or a trailing '/')")
    if part in (".", ".."):
        raise RequestPathError(f"a {part!r} segment")
    if part.startswith("."):
        raise RequestPathError(f"hidden name {part!r}")
    bad = _FORBIDDEN.search(part)
    if bad is not None:
        raise RequestPathError(f"character {bad.group()!r} in {part!r}")
    if len(part.encode()) > MAX_SEGMENT_BYTES:
        raise RequestPathError(f"a name longer than {MAX_SEGMENT_BYTES} bytes")

"""Which paths a phone may ask for: one decoding, then strict segment rules (HTTP and TFTP).

A request path is percent-decoded exactly once (HTTP) or taken as sent (TFTP), must be UTF-8,
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

from fleetkey.errors import (
    RequestPathError as RequestPathError,  # re-exported for serve/, which moves to fleetkey.errors
)

MAX_PATH_BYTES: Final = 1024  # longer than any provisioning path (domain.md §4: 255 per name)
MAX_SEGMENTS: Final = 16
MAX_SEGMENT_BYTES: Final = 255  # domain.md §4: APP_FILE_PATH and each CONFIG_FILES entry ≤ 255
_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN: Final = frozenset(chr(c) for c in (*range(0x20), 0x7F)) | {"\\", "%"}


def url_path_segments(raw: bytes) -> tuple[str, ...]:
    """Segments of an HTTP request target's path (still percent-encoded, as on the wire)."""
    if len(raw) > 3 * MAX_PATH_BYTES:
        raise RequestPathError(f"{len(raw)} bytes, longer than {3 * MAX_PATH_BYTES}")
    path = raw.split(b"?", 1)[0]
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
    except UnicodeDecodeError:
        raise RequestPathError("not valid UTF-8 (overlong or broken sequences)") from None
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
    bad = next((c for c in part if c in _FORBIDDEN), None)
    if bad is not None:
        raise RequestPathError(f"character {bad!r} in {part!r}")
    if len(part.encode()) > MAX_SEGMENT_BYTES:
        raise RequestPathError(f"a name longer than {MAX_SEGMENT_BYTES} bytes")

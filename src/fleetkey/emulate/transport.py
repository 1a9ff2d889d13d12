"""How an emulated phone reaches its provisioning server: fetch a file, put a file.

``Transport`` is the port every protocol implements (``HttpClient`` in ``http.py``,
``TftpClient`` in ``tftp.py``, ``FtpClient`` in ``ftp.py``; ``fleetkey.testing``'s
``InMemoryTransport`` for tests without a socket). A transport serves one phone
for one pass of its boot: opened from the phone's own address, closed after. Answers are
``Reply`` values in HTTP's statuses whatever the wire said (200 read, 206 the first bytes of a
file, 201/204 written, 404 not found, 403 refused, 408 timed out, 413 over a cap, 503 busy
with a ``retry-after`` when the server said how long to wait, 500 anything else), so the boot
logic above never knows the protocol. A busy answer without a delay waits ``RETRY_AFTER_S``,
whatever the protocol (``busy``).

``fetch(..., first_bytes=N)`` reads only the start of a file and its whole size: what a phone's
updater reads of a firmware image (its header, where the version is) to decide whether to
download the rest (domain.md §5.2: "download it only if different from flash"). HTTP asks a
byte range; TFTP reads one block with the ``tsize`` option (RFC 2349) and aborts; FTP asks
``SIZE`` and cuts a ``RETR`` short.
``fetch(..., keep=False)`` downloads a file without keeping it (a firmware image): the reply
has its size and SHA-256, not its bytes, so ten thousand phones can download 150 MB each. A
file kept that is over ``MAX_BODY`` raises ``AnswerTooLargeError`` (an ``EmulationError``,
naming the path and the cap): the exchange records it as that request's failure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, Protocol

from fleetkey.errors import AnswerTooLargeError

MAX_BODY: Final = 512 * 1024 * 1024  # a firmware image is ~150 MB (domain.md §5.1)
RETRY_AFTER_S: Final = 5.0  # a 503 without a Retry-After (or with one that does not parse)
MAX_RETRY_AFTER_S: Final = 3600.0  # a phone does not wait for its server longer than this
_RETRY_IN: Final = re.compile(r"retry in (\d+) seconds?", re.IGNORECASE)


def retry_after_s(value: str | None, now: datetime) -> float:
    """Seconds a 503's ``Retry-After`` asks to wait (RFC 9110 §10.2.3): delay-seconds, or an
    HTTP-date less ``now`` (the past: 0); ``RETRY_AFTER_S`` when absent or unreadable (a date
    ended the phone with a ValueError), never over ``MAX_RETRY_AFTER_S``."""
    text = (value or "").strip()
    if not text:
        return RETRY_AFTER_S
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return RETRY_AFTER_S
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are GMT
        return RETRY_AFTER_S
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def busy(message: str) -> Reply:
    """A 503 for a busy answer in words (FTP's, TFTP's): its ``retry-after`` is the delay the
    words ask ("retry in 5 seconds", as ``fleetkey serve``'s FTP says), else none, so the wait
    is ``RETRY_AFTER_S`` over every protocol."""
    found = _RETRY_IN.search(message)
    return Reply(503, b"", {"retry-after": found.group(1)} if found else {})


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    size: int | None = None  # the whole file's size (first bytes read, or not kept)
    digest: str | None = None  # SHA-256 of what came, when it was not kept
    challenged: int = 0  # 401 answers before this one (a login's challenge, answered)
    said: str = ""  # the server's own words for a refusal (FTP's reply line), when it has any
    admission: bool = False  # the server refused the session itself (FTP's 421 at connect)
    # FTP: the session's login was refused, so this request was never sent; ``logins_refused``
    # is 1 on the request whose session's login it was (the server recorded a ``PASS`` 401)
    unsent: bool = False
    logins_refused: int = 0


class Transport(Protocol):
    """Fetch and put files for one phone; ``user_agent`` is the stage's (HTTP sends it, TFTP
    and FTP have no header for it)."""

    async def fetch(
        self, path: str, *, user_agent: str, first_bytes: int | None = None, keep: bool = True
    ) -> Reply: ...

    async def put(self, path: str, body: bytes, *, user_agent: str) -> Reply: ...

    async def close(self) -> None: ...


class Sink:
    """Where the answer for ``path`` goes: kept (up to ``cap`` bytes, else
    AnswerTooLargeError), or counted and hashed."""

    def __init__(self, keep: bool, path: str, cap: int = MAX_BODY) -> None:
        self.keep = keep
        self._path, self._cap = path, cap
        self.body = bytearray()
        self.size = 0
        self._hash = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if not self.keep:
            self._hash.update(data)
        elif self.size > self._cap:
            raise AnswerTooLargeError(self._path, self._cap)
        else:
            self.body += data

    def reply(self, status: int, headers: dict[str, str] | None = None) -> Reply:
        if self.keep:
            return Reply(status, bytes(self.body), headers or {})
        return Reply(status, b"", headers or {}, self.size, self._hash.hexdigest())

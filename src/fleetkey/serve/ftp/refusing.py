"""What an FTP session refuses, and how it says so: admission (421), logins, refused paths.

Mixed in under ``serve.ftp.session.SessionMixin``, above ``serve.ftp.control.ControlMixin``.

- A connection refused at admission (too many connections in all, from one address, or logins
  in progress) gets ``421 …; retry in 5 seconds.``, counted for ``/metrics`` and said through
  fleetkey's log at most once per ``REFUSALS_LOG_EVERY_S`` with how many came since
  (``Refusals``): pyftpdlib logged a warning line for every refused connection, and a storm of
  them flooded stderr.
- A refused login is a fetch record, as HTTP records its 401s: ``PASS /``, 401 (429 when the
  address is held back), under the MAC of the phone whose per-device login it was.
- ``SIZE`` and ``MDTM`` of a path ``RETR`` would refuse get ``RETR``'s ``550`` (the path's
  rule, no such file, another phone's file), not pyftpdlib's ``… is not retrievable``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from pyftpdlib.filesystems import FilesystemError

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.ftp.control import ControlMixin
from fleetkey.serve.ftp.logins import LoginResult

if TYPE_CHECKING:
    from fleetkey.serve.ftp.server import FtpService

RETRY_S: Final = 5
REFUSALS_LOG_EVERY_S: Final = 10.0  # 421s at admission: one log line per episode at most
_PYFTPDLIB: Final = logging.getLogger("pyftpdlib")
log = logging.getLogger(__name__)


class RefusingMixin(ControlMixin):
    """The session's refusals (module docstring)."""

    service: FtpService
    remote_ip: str
    fs: Any

    def handle_max_cons(self) -> None:
        self.fk_setup()  # type: ignore[attr-defined]
        self.fk_refuse("Too many connections")
        self.close()  # type: ignore[attr-defined]

    def handle_max_cons_per_ip(self) -> None:
        self.fk_setup()  # type: ignore[attr-defined]
        self.fk_refuse("Too many connections from this address")
        self.close_when_done()  # type: ignore[attr-defined]

    def fk_refuse(self, why: str) -> None:
        """421 with a retry hint; counted, and said through fleetkey's log at most once per
        ``REFUSALS_LOG_EVERY_S`` (pyftpdlib logged a warning per refused connection)."""
        service = self.service
        service.counters.refused += 1
        self.respond(  # type: ignore[attr-defined]
            f"421 {why}; retry in {RETRY_S} seconds.", logfun=_PYFTPDLIB.debug
        )
        service.refusals.refused(why, self.remote_ip)

    def fk_login_refused(self, result: LoginResult) -> None:
        """A refused login is recorded as HTTP records a refused one (401, 429 when the
        address is held back): method ``PASS``, path ``/``, under the MAC of the phone whose
        login it was (``fetches --mac``), else none. No sighting: nobody was let in."""
        status = 429 if result.outcome == "throttled" else 401
        named = result.named
        ruling = Ruling(status, mac=named, via="login" if named else None, reason=result.reason)
        protocol: str = self.protocol()  # type: ignore[attr-defined]  # the session's
        self.service.recorder.record(
            protocol, "PASS", "/", status, 0, 0.0, self.remote_ip, None, None, ruling,
            "other", None,
        )  # fmt: skip

    def ftp_SIZE(self, path: str) -> None:  # noqa: N802  # pyftpdlib's name for SIZE
        if not self._refused_as_retr(path):
            super().ftp_SIZE(path)  # type: ignore[misc]

    def ftp_MDTM(self, path: str) -> None:  # noqa: N802  # pyftpdlib's name for MDTM
        if not self._refused_as_retr(path):
            super().ftp_MDTM(path)  # type: ignore[misc]

    def _refused_as_retr(self, path: str) -> bool:
        """SIZE and MDTM of a path ``RETR`` would refuse get RETR's 550 (pyftpdlib said
        ``… is not retrievable`` whatever the reason); True when answered so."""
        try:
            segments = self.fs.segments(path)
        except FilesystemError as exc:
            why = str(exc)
        else:
            ruling = self._rule(segments, False)  # type: ignore[attr-defined]
            if ruling.status == 200:
                return False
            why = ruling.reason or "no such file"
        self.respond(f"550 {why}.")  # type: ignore[attr-defined]
        return True


class Refusals:
    """Connections refused with 421 at admission, said through fleetkey's log: the first at
    once, then at most one line per ``REFUSALS_LOG_EVERY_S`` with how many came since (a storm
    of refused connections is a line, not a line each; ``/metrics`` counts every one).

    Nothing is left unsaid: the FTP thread calls ``say_due`` every second, so a window's count
    is said when the window ends even if no refusal follows it (the count once waited for the
    next refusal, and the last window's was never said), and ``flush`` when the server stops."""

    def __init__(self) -> None:
        self.unsaid = 0
        self.said_at = float("-inf")
        self.latest = ("", "")  # the newest refusal's reason and address

    def refused(self, why: str, address: str) -> None:
        self.unsaid += 1
        self.latest = (why, address)
        self.say_due(time.monotonic())

    def say_due(self, now: float | None = None) -> None:
        """Say the refusals not said yet once their window has ended (``now``: monotonic)."""
        now = time.monotonic() if now is None else now
        if self.unsaid and now - self.said_at >= REFUSALS_LOG_EVERY_S:
            self._say(now)

    def flush(self) -> None:
        """Say the refusals not said yet, whatever the window (the server stops)."""
        if self.unsaid:
            self._say(time.monotonic())

    def _say(self, now: float) -> None:
        why, address = self.latest
        log.warning(
            "FTP: %s connection(s) refused with 421 (latest: %s, from %s)",
            f"{self.unsaid:,}",
            why.lower(),
            address,
        )
        self.unsaid, self.said_at = 0, now

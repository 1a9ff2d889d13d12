"""The FTP sessions' timeouts, checked by one sweep instead of a timer per connection.

pyftpdlib schedules a timer on its heap for each control connection (reset by every command,
cancelled when a data connection opens, made again when it closes), for each data connection
and for each passive listener: three timers made and cancelled per transfer, and a heap of
cancelled ones to sift. Here its timeouts are off (``timeout = 0`` on the handler classes) and
one sweep, a few times per shortest timeout and at least once a second, applies the same
rules to every open session, so a timeout fires within a sweep of when pyftpdlib's would:

- a control connection without a command for ``idle_s`` (``--ftp-idle-timeout``) while no
  data connection is open: ``421 Control connection timed out.`` and closed (pyftpdlib's own
  ``handle_timeout``);
- a data connection that moved no byte for ``data_s`` (``--ftp-data-timeout``):
  ``421 Data connection timed out.``, closed (the transfer recorded as cut, 499) and the
  session closed after its replies;
- a passive listener whose data connection did not come within ``data_s``:
  ``421 Passive data channel timed out.`` (pyftpdlib's ``handle_timeout``; its own timer was
  30 s whatever the settings).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

SWEEP_MAX_S: Final = 1.0
SWEEPS_PER_TIMEOUT: Final = 4
_PYFTPDLIB: Final = logging.getLogger("pyftpdlib")


class Deadlines:
    """The open sessions and the sweep over them (FTP thread only)."""

    def __init__(self, idle_s: float, data_s: float) -> None:
        self.idle_s = idle_s
        self.data_s = data_s
        self.every = min(SWEEP_MAX_S, idle_s / SWEEPS_PER_TIMEOUT, data_s / SWEEPS_PER_TIMEOUT)
        self.sessions: set[Any] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for session in list(self.sessions):
            if session._closed:
                self.sessions.discard(session)
            else:
                self._check(session, now)

    def _check(self, session: Any, now: float) -> None:
        data = session.data_channel
        if data is not None:  # a transfer: no idle timeout for the control connection
            moved = data.get_transmitted_bytes()
            if moved != data.fk_moved:
                data.fk_moved, data.fk_since = moved, now
            elif now - data.fk_since >= self.data_s:
                data.fk_moved = -1  # once, as pyftpdlib's
                data._resp = ("421 Data connection timed out.", _PYFTPDLIB.info)
                data.close()
                session.close_when_done()
            return
        listener = session._dtp_acceptor
        armed_at = getattr(listener, "fk_armed_at", None)
        if armed_at is not None and listener.fk_armed and now - armed_at >= self.data_s:
            listener.handle_timeout()
        if not session._closed and now - session.fk_last >= self.idle_s:
            session.fk_last = float("inf")  # once, as pyftpdlib's: the session is closing
            session.handle_timeout()

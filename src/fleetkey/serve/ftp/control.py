"""The control connection's mechanics under a session: replies, timeouts, refusals, lines.

Mixed in under ``serve.ftp.session.SessionMixin``, on pyftpdlib's ``FTPHandler`` (or
``TLS_FTPHandler``). What it changes of pyftpdlib, all through its methods, none of its
answers: a transfer's ``125`` is held back until the transfer started (one segment with its
``226`` when the body went at once), a data connection that came with its ``RETR`` is
accepted before the reply and stays out of the poller when its body goes at once (a passive
listener joins the poller only when a transfer waits for its connection:
``serve.ftp.passive``), log lines are not formatted when their level is off, and an overlong
command line gets one answer.

Timeouts (``Deadlines``): pyftpdlib schedules a timer on its heap for each control connection
(reset by every command, cancelled when a data connection opens, made again when it closes),
for each data connection and for each passive listener: three timers made and cancelled per
transfer, and a heap of cancelled ones to sift. Here its timeouts are off (``timeout = 0``
on the handler classes) and one sweep, a few times per shortest timeout and at least once a
second, applies the same rules to every open session, so a timeout fires within a sweep of
when pyftpdlib's would:

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

import asynchat
import logging
import time
from typing import Any, Final

from fleetkey.serve.ftp.passive import PassiveListener

SWEEP_MAX_S: Final = 1.0
SWEEPS_PER_TIMEOUT: Final = 4
MAX_LINE: Final = 2048  # bytes of a command line (pyftpdlib's limit)
_PYFTPDLIB: Final = logging.getLogger("pyftpdlib")


class ControlMixin:
    """What the control connection does differently from pyftpdlib's (module docstring)."""

    fk_cork: bool = True  # False on FTPS: its replies go pyftpdlib's way
    fk_held: list[bytes] | None = None  # replies held back while a transfer starts
    fk_awaiting: list[bytes] | None = None  # replies after a 226 that waits for a commit
    fk_address: tuple[int, str] | None = None  # the control socket's family and address
    fk_last: float = 0.0  # the last command or transfer's end (Deadlines below)
    fk_defer_data: bool = False  # a data channel made now stays out of the poller (serve.ftp.data)

    def log(self, msg: str, logfun: Any = _PYFTPDLIB.info) -> None:
        """pyftpdlib logs every reply and transfer at INFO, formatting its session prefix
        first; not when the level is off (~4 % of a boot's server time, profiled)."""
        quiet = not _PYFTPDLIB.isEnabledFor(logging.INFO)
        if quiet and logfun in (_PYFTPDLIB.info, _PYFTPDLIB.debug):
            return
        super().log(msg, logfun)  # type: ignore[misc]

    def log_transfer(self, *args: Any, **kwargs: Any) -> None:
        """pyftpdlib formats a line per transfer for the INFO log; not when it is off."""
        if _PYFTPDLIB.isEnabledFor(logging.INFO):
            super().log_transfer(*args, **kwargs)  # type: ignore[misc]

    # --- replies

    def push_dtp_data(self, data: Any, isproducer: bool = False, file: Any = None,
                      cmd: str | None = None) -> None:  # fmt: skip
        """A transfer on an open data connection: its ``125`` is held back until the transfer
        started, so that a body sent at once (``serve.ftp.data``) goes with its ``226`` in
        one segment: a ``send`` less per transfer. The order of replies stays the same.
        A data connection that came with the command, not yet accepted, is taken first."""
        acceptor = self._dtp_acceptor  # type: ignore[attr-defined]
        if self.fk_cork and isinstance(acceptor, PassiveListener) and acceptor.fk_armed:
            self.fk_defer_data = True  # its data channel joins the poller only if it must
            try:
                acceptor.handle_accept()  # None if it has not come: then 150, and it is awaited
            finally:
                self.fk_defer_data = False
        if not self.fk_cork or self.data_channel is None:  # type: ignore[attr-defined]
            super().push_dtp_data(data, isproducer, file, cmd)  # type: ignore[misc]
            return
        self.fk_held = []
        try:
            super().push_dtp_data(data, isproducer, file, cmd)  # type: ignore[misc]
        finally:
            self._flush_held()
            data_channel = self.data_channel  # type: ignore[attr-defined]
            if data_channel is not None:  # not done at once: the poller carries it on
                data_channel.fk_poll()

    def push(self, data: str) -> None:
        held = self.fk_held
        if held is None:
            held = self.fk_awaiting  # behind the 226 (serve.ftp.confirming)
        if held is not None:
            held.append(data.encode(self.encoding))  # type: ignore[attr-defined]
            return
        super().push(data)  # type: ignore[misc]

    def _flush_held(self) -> None:
        held, self.fk_held = self.fk_held, None
        if held and not getattr(self, "_closed", True):
            asynchat.async_chat.push(self, b"".join(held))  # type: ignore[arg-type]

    # --- where passive listeners bind (serve.ftp.passive)

    def _make_epasv(self, extmode: bool = False) -> None:
        """``PASV`` names an IPv4 address: on an IPv6 control connection (no IPv4
        masquerade address) it is refused, not answered with the IPv6 address written into
        a ``227`` (pyftpdlib's ``(::1,p1,p2)``); ``EPSV`` names only a port."""
        if not extmode and ":" in self.fk_passive_ip():
            self.respond("501 PASV names IPv4 addresses only; use EPSV.")  # type: ignore[attr-defined]
            return
        super()._make_epasv(extmode)  # type: ignore[misc]

    def fk_local_ip(self) -> str:
        """The control connection's local address (where its passive listeners bind)."""
        if self.fk_address is None:
            sock: Any = self.socket  # type: ignore[attr-defined]
            self.fk_address = (sock.family, sock.getsockname()[0])
        return self.fk_address[1]

    @property
    def fk_family(self) -> int:
        self.fk_local_ip()
        assert self.fk_address is not None  # noqa: S101  # set just above
        return self.fk_address[0]

    def fk_passive_ip(self) -> str:
        """The address a 227 (PASV) names: the masquerade address, else the local one."""
        local = self.fk_local_ip()
        named: str = (
            self.masquerade_address_map.get(local)  # type: ignore[attr-defined]
            or self.masquerade_address  # type: ignore[attr-defined]
            or local
        )
        return named[7:] if named.startswith("::ffff:") else named

    # --- command lines

    def collect_incoming_data(self, data: bytes) -> None:
        """pyftpdlib answers an overlong line at 2 KiB and then its rest as another command
        (``500 Command "" not understood.``): one answer per line, the rest dropped."""
        if getattr(self, "fk_overlong", False):
            return
        if self._in_buffer_len + len(data) > MAX_LINE:  # type: ignore[has-type]
            self.fk_overlong = True
            self._in_buffer: list[bytes] = []
            self._in_buffer_len = 0
            self.respond("500 Command too long.")  # type: ignore[attr-defined]
            return
        self._in_buffer.append(data)
        self._in_buffer_len += len(data)

    def _on_dtp_close(self) -> None:
        super()._on_dtp_close()  # type: ignore[misc]
        self.fk_last = time.monotonic()  # idle from the end of a transfer, as pyftpdlib

    def found_terminator(self) -> None:
        self.fk_last = time.monotonic()
        if getattr(self, "fk_overlong", False):
            self.fk_overlong = False
            return
        super().found_terminator()  # type: ignore[misc]
        acceptor = self._dtp_acceptor  # type: ignore[attr-defined]
        if (
            isinstance(acceptor, PassiveListener)
            and acceptor.fk_armed
            and not acceptor.fk_polled
            and (self._out_dtp_queue or self._in_dtp_queue)  # type: ignore[attr-defined]
        ):  # a transfer waits for a data connection that has not come: the poller takes it
            acceptor.handle_accept()
            if acceptor.fk_armed:
                acceptor.fk_await()


class Deadlines:
    """The open sessions and the sweep over them (FTP thread only)."""

    def __init__(self, idle_s: float, data_s: float) -> None:
        self.idle_s = idle_s
        self.data_s = data_s
        self.every = min(SWEEP_MAX_S, idle_s / SWEEPS_PER_TIMEOUT, data_s / SWEEPS_PER_TIMEOUT)
        self.sessions: set[Any] = set()
        self.failures = 0  # sessions whose check raised (each closed by its error handler)

    def sweep(self) -> None:
        now = time.monotonic()
        for session in list(self.sessions):
            if session._closed:
                self.sessions.discard(session)
            else:
                try:
                    self._check(session, now)
                except Exception:  # noqa: BLE001  # one session's failure is that session's:
                    # a sweep that raised would be cancelled for good (pyftpdlib's call_every)
                    self.failures += 1
                    session.handle_error()

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

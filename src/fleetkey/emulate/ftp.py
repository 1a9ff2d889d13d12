"""A small FTP client for emulated phones: one session per pass of a boot, from the phone's own
address, as a Polycom phone on its factory FTP setup boots (domain.md §5.3).

The session connects and logs in at its first request (the phone's own provisioning login, or
the shared factory one ``PlcmSpIp``), sets ``TYPE I``, and then each file is ``EPSV`` and
``RETR`` (or ``STOR``) on a new data connection from the same address; ``close`` says ``QUIT``.
Answers are mapped to the HTTP statuses the rest of the emulator speaks: 200 read, 201
written, 404 not found (``550`` "no such file"), 403 any other refusal (a failed login too),
413 over a cap (``552``), 503 busy (``421``, ``450``, ``425``, or any refusal saying "retry in
N seconds", as ``fleetkey serve`` refuses a transfer when busy: ``550 server busy: retry in 5
seconds.``; the N is its ``retry-after``), 500 anything else. A busy greeting or login answer
(``421 Too many connections``) refused the session, not the file it was opened for: its 503
says so (``Reply.admission``), and the emulator counts it as a refused connection. A refusal
keeps the server's reply line (``Reply.said``): a ``530`` refused login and a ``550`` refused
file are both 403. After a refused login the session is closed and its requests are not sent
(``Reply.unsent``, the first counting the refused login): the server records one ``PASS`` 401
per session, not a refusal per file.

An image's header is read with ``SIZE``, ``MDTM`` and a ``RETR`` cut after its first bytes (FTP
has no byte range; ``REST`` only moves the start); a phone remembers what it read, and while
``SIZE`` and ``MDTM`` answer the same it does not open a data connection again. That memory is
the phone's (``booting.Flash.headers``, kept across its boots as a real phone's flash keeps
what it installed), handed to each session; a session without it reads the header every time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Final

from fleetkey.emulate.transport import Reply, Sink, busy
from fleetkey.errors import EmulationError

FACTORY_LOGIN: Final = ("PlcmSpIp", "PlcmSpIp")  # Polycom's factory provisioning login
TIMEOUT_S: Final = 30.0
_EPSV: Final = re.compile(r"\(\|\|\|(\d+)\|\)")


Images = dict[str, tuple[str, Reply]]  # path → (its SIZE and MDTM answers, the header read)


class _RefusedError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class FtpLogins:
    """Who each phone logs in as: its own login (by MAC) when it has one, else ``shared``."""

    shared: tuple[str, str] = FACTORY_LOGIN
    per_phone: dict[str, tuple[str, str]] = field(default_factory=dict)

    def client(
        self, host: str, port: int, local_address: str | None, mac: str, images: Images | None
    ) -> FtpClient:
        """A session for the phone ``mac``; ``images``: the headers its flash remembers."""
        login = self.per_phone.get(mac, self.shared)
        return FtpClient(host, port, local_address=local_address, login=login, images=images)


class FtpClient:
    """One phone's FTP session for one pass of its boot: a ``Transport``, as HTTP and TFTP's."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        local_address: str | None,
        login: tuple[str, str] = FACTORY_LOGIN,
        images: Images | None = None,
    ) -> None:
        self._server = (host, port)
        self._local = (local_address, 0) if local_address else None
        self._login = login
        self._images = images
        self._control: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._login_refused = ""  # the server's answer to this session's refused login

    async def fetch(
        self, path: str, *, user_agent: str, first_bytes: int | None = None, keep: bool = True
    ) -> Reply:
        """RETR (FTP carries no User-Agent). ``first_bytes``: ``SIZE`` and ``MDTM``, and when
        both answer as when this phone last read the file's first bytes, those again, with no
        data connection; else ``RETR``, the first bytes and the data connection closed (the
        server records the transfer cut short, having sent ~2 MB in ~3 ms of its CPU where the
        two commands cost it ~0.2 ms: docs/serve.md); 206."""
        return await self._guarded(self._retrieve(path, first_bytes, keep))

    async def put(self, path: str, body: bytes, *, user_agent: str) -> Reply:
        """STOR."""
        return await self._guarded(self._store(path, body))

    async def _guarded(self, work: Coroutine[Any, Any, Reply]) -> Reply:
        if self._login_refused:  # not sent: the session's login was refused
            work.close()
            return Reply(403, said=self._login_refused, unsent=True)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self._session()
                return await work
        except _RefusedError as refused:
            if refused.reply.status >= 500:  # the session may be out of step: a new one next
                await self._drop()
            return refused.reply
        except BaseException:  # a timeout or a broken connection: a new session next
            await self._drop()
            raise
        finally:
            work.close()  # never started when the login failed: no "never awaited" warning

    async def _drop(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            control[1].close()

    async def close(self) -> None:
        control, self._control = self._control, None
        if control is None:
            return
        reader, writer = control
        try:
            async with asyncio.timeout(5):
                writer.write(b"QUIT\r\n")
                await _reply(reader)
        except (OSError, TimeoutError, _RefusedError):
            pass
        finally:
            writer.close()

    async def _session(self) -> None:
        if self._control is not None:
            return
        reader, writer = await asyncio.open_connection(*self._server, local_addr=self._local)
        self._control = (reader, writer)
        _admitted(await _reply(reader), "220")
        user, password = self._login
        answer = await self._command(f"USER {user}")
        if answer.startswith("331"):
            answer = await self._command(f"PASS {password}")
        if answer[:3] != "230" and reply_for(answer).status == 403:  # the login refused:
            self._login_refused = answer  # the session ends, its requests are not sent
            await self._drop()
            raise _RefusedError(Reply(403, said=answer, unsent=True, logins_refused=1))
        _admitted(answer, "230")
        _expect(await self._command("TYPE I"), "200")

    async def _command(self, line: str) -> str:
        assert self._control is not None  # noqa: S101  # after _session
        reader, writer = self._control
        writer.write(line.encode() + b"\r\n")
        return await _reply(reader)

    async def _data(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        answer = await self._command("EPSV")
        _expect(answer, "229")
        found = _EPSV.search(answer)
        if found is None:
            raise _RefusedError(Reply(500))
        return await asyncio.open_connection(
            self._server[0], int(found.group(1)), local_addr=self._local
        )

    async def _retrieve(self, path: str, first_bytes: int | None, keep: bool) -> Reply:
        size = stamp = None
        if first_bytes is not None:
            answer = await self._command(f"SIZE {path}")
            if answer.startswith("550"):  # RETR's refusal, said before the transfer
                raise _RefusedError(Reply(404))
            _expect(answer, "213")
            size = int(answer[4:].strip() or 0)
            if self._images is not None:
                modified = await self._command(f"MDTM {path}")
                stamp = f"{size} {modified[4:]}" if modified.startswith("213") else None
                known = self._images.get(path)
                if stamp is not None and known is not None and known[0] == stamp:
                    return known[1]  # the image this phone read last time, unchanged
        reader, writer = await self._data()
        sink = Sink(keep, path)
        try:
            _expect(await self._command(f"RETR {path}"), "150", "125")
            while chunk := await reader.read(65536):  # to the end of the data connection
                sink.add(chunk)  # over the cap: raised, and the session dropped (_guarded)
                if first_bytes is not None and sink.size >= first_bytes:
                    break
        finally:
            writer.close()
        assert self._control is not None  # noqa: S101
        if first_bytes is not None:  # 226 if it was all sent already, else 426 (cut short)
            _expect(await _reply(self._control[0]), "226", "426", "451")
            head = Reply(206, bytes(sink.body[:first_bytes]), {}, size)
            if self._images is not None and stamp is not None:
                self._images[path] = (stamp, head)
            return head
        _expect(await _reply(self._control[0]), "226")
        return sink.reply(200)

    async def _store(self, path: str, body: bytes) -> Reply:
        _, writer = await self._data()
        try:
            _expect(await self._command(f"STOR {path}"), "150", "125")
            writer.write(body)
            await writer.drain()
        finally:
            writer.close()
        assert self._control is not None  # noqa: S101
        _expect(await _reply(self._control[0]), "226")
        return Reply(201)


async def _reply(reader: asyncio.StreamReader) -> str:
    """One whole reply (the last line of a multi-line one)."""
    first = line = (await reader.readline()).decode("utf-8", "replace")
    while not (len(line) >= 4 and line[:3] == first[:3] and line[3] == " "):
        line = (await reader.readline()).decode("utf-8", "replace")
        if not line:
            raise _RefusedError(Reply(500, said="(closed before a whole reply)"))
    return line.rstrip("\r\n")


def _expect(answer: str, *codes: str) -> None:
    if answer[:3] in codes:
        return
    raise _RefusedError(reply_for(answer))


def _admitted(answer: str, code: str) -> None:
    """The greeting or the login's answer: a busy one (``421 Too many connections``, ``… logins
    in progress``) refused the session, not a file: said so (``Reply.admission``), and the
    phone tries again after the delay it names, as for any busy answer."""
    if answer[:3] == code:
        return
    reply = reply_for(answer)
    if reply.status == 503:
        reply = replace(reply, said=answer, admission=True)
    raise _RefusedError(reply)


def reply_for(answer: str) -> Reply:
    """The ``Reply`` an FTP refusal stands for (the module's docstring)."""
    code = answer[:3]
    if code in ("421", "450", "425") or "retry in" in answer.lower():
        return busy(answer)
    if code == "552":
        return Reply(413, said=answer)
    if code == "550" and "no such file" in answer.lower():
        return Reply(404, said=answer)
    if code in ("550", "530", "553"):
        return Reply(403, said=answer)
    return Reply(500, said=answer)


async def check_reachable(host: str, port: int, timeout_s: float = 5.0) -> None:
    """Raise EmulationError, saying why, when no FTP server greets there (its 220, or a 421
    while it is full: its phones are refused at connect and try again)."""
    where = f"ftp://{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                greeting = await _reply(reader)
            finally:
                writer.close()
    except ConnectionRefusedError as exc:
        raise EmulationError(f"nothing listens at {where} (connection refused)") from exc
    except TimeoutError as exc:
        raise EmulationError(f"{where} does not answer: no greeting in {timeout_s:g} s") from exc
    except _RefusedError as exc:
        raise EmulationError(f"{where} closed the connection before greeting") from exc
    except OSError as exc:
        raise EmulationError(f"cannot reach {where}: {exc.strerror or exc}") from exc
    if not greeting.startswith(("220", "421")):  # 421: an FTP server, full for now
        raise EmulationError(f"{where} is no FTP server: it greeted {greeting.strip()!r}")

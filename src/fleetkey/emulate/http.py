"""A small HTTP/1.1 client for emulated phones (a ``Transport``): one keep-alive connection per
boot pass, from the phone's own address, with a phone's User-Agent; httptools parses the answers.
Over HTTPS (``tls``: the phones' trust, ``tls_context``) the same connection is TLS, its
certificate checked against the server's host as a phone checks it.

Small on purpose: ten thousand phones share one process, and a general client (connection
pools, redirects) costs more per request than the whole server answer. A 503 is returned
as it came, its Retry-After among the reply's headers: the fleet (``emulate.fleet``) waits that
long in real time and asks again, as phones retry their provisioning server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
from pathlib import Path

import httptools

from fleetkey.core.digest import Challenge
from fleetkey.emulate.transport import MAX_BODY, Reply, Sink
from fleetkey.errors import AnswerTooLargeError, DigestError, EmulationError, InputError

__all__ = ["MAX_BODY", "HttpClient", "Login", "Reply", "check_reachable", "tls_context"]


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """What the phones trust over HTTPS: the system's certificate authorities, or only
    ``ca_file``'s (PEM: a self-signed server's certificate, or its CA). InputError when it
    holds no certificate, or cannot be read (the OS's words)."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except ssl.SSLError as exc:
        raise InputError(
            f"--cacert {ca_file}: no PEM certificate in it ({exc.reason or exc})",
            hint="give the server's certificate (or its CA's) in PEM, as curl --cacert takes it",
            field="cacert",
        ) from exc
    except OSError as exc:  # not its content: the file (permissions, a directory, gone)
        raise InputError(
            f"--cacert {ca_file}: unreadable ({exc.strerror or exc})",
            hint="give a PEM file this user can read",
            field="cacert",
        ) from exc


class _Collector:
    def __init__(self, keep: bool, path: str, cap: int) -> None:
        self.sink = Sink(keep, path, cap)
        self.headers: dict[str, str] = {}
        self.challenges: list[str] = []  # every WWW-Authenticate (a server may send several)
        self.done = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = text
        if key == "www-authenticate":
            self.challenges.append(text)

    def on_body(self, body: bytes) -> None:
        self.sink.add(body)

    def on_message_complete(self) -> None:
        self.done = True
        # asked here: once the parser has finished, should_keep_alive() is always False
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()


class Login:
    """A phone's provisioning login (``device.prov.user/password``): it answers a 401 with
    Digest when offered (counting its requests per nonce, a fresh challenge when stale), else
    Basic, and sends the answer with every later request, as phones do."""

    def __init__(self, user: str, password: str) -> None:
        self._user, self._password = user, password
        self._basic: str | None = None
        self._digest: Challenge | None = None
        self._count = 0

    def header(self, method: str, uri: str) -> str:
        """The Authorization line for this request ("" before any challenge)."""
        if self._digest is not None:
            self._count += 1
            answer = self._digest.authorization(
                method, uri, self._user, self._password, os.urandom(8).hex(),
                nc=f"{self._count:08x}",
            )  # fmt: skip
            return f"Authorization: {answer}\r\n"
        if self._basic is not None:
            return f"Authorization: {self._basic}\r\n"
        return ""

    def challenged(self, challenges: list[str]) -> bool:
        """Take a 401's challenges; whether a new answer is worth trying."""
        for text in challenges:
            if text.lower().startswith("digest"):
                try:
                    self._digest = Challenge.parse(text)
                except DigestError:
                    continue
                self._count = 0
                return True
        if self._basic is None and any(t.lower().startswith("basic") for t in challenges):
            token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
            self._basic = f"Basic {token}"
            return True
        return False


class HttpClient:
    """Requests over one connection; reconnects when the server closed it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        local_address: str | None,
        user_agent: str,
        timeout_s: float = 30.0,
        login: Login | None = None,
        max_body: int = MAX_BODY,  # the largest answer it keeps (one not kept has no cap)
        tls: ssl.SSLContext | None = None,  # HTTPS, trusting what this context trusts
    ) -> None:
        self._max_body = max_body
        self._tls = tls
        self._host, self._port = host, port
        self._login = login
        self._challenges: list[str] = []
        self._local = local_address
        self._user_agent = user_agent
        self._timeout = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def fetch(
        self, path: str, *, user_agent: str, first_bytes: int | None = None, keep: bool = True
    ) -> Reply:
        """GET ``path``; with ``first_bytes``, only that many (a byte range) and the size;
        not ``keep``: its size and digest only."""
        extra = f"Range: bytes=0-{first_bytes - 1}\r\n" if first_bytes else ""
        reply = await self.request("GET", path, user_agent=user_agent, extra=extra, keep=keep)
        if first_bytes:
            total = reply.headers.get("content-range", "").rpartition("/")[2]
            if reply.status == 206 and total.isdigit():
                reply.size = int(total)
            elif reply.status == 200:  # the server ignored the range: the whole file came
                reply.size = len(reply.body)
        return reply

    async def put(self, path: str, body: bytes, *, user_agent: str) -> Reply:
        return await self.request("PUT", path, body, user_agent=user_agent)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        user_agent: str | None = None,
        extra: str = "",
        keep: bool = True,
    ) -> Reply:
        """One exchange; ``user_agent`` replaces the client's for this request (the updater's),
        ``extra`` adds header lines (each ending in CRLF)."""
        agent = user_agent or self._user_agent
        reply = await self._send(method, path, body, agent, extra, keep)
        if reply.status == 401 and self._login and self._login.challenged(self._challenges):
            reply = await self._send(method, path, body, agent, extra, keep)
            reply.challenged = 1  # the server answered twice: both count
        return reply

    async def _send(
        self, method: str, path: str, body: bytes, agent: str, extra: str, keep: bool
    ) -> Reply:
        for attempt in range(2):  # a kept-alive connection may have been closed by the server
            lines = extra + (self._login.header(method, path) if self._login else "")
            try:
                async with asyncio.timeout(self._timeout):  # wait_for could drop a stop (3.11)
                    return await self._exchange(method, path, body, agent, lines, keep)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(
        self, method: str, path: str, body: bytes, agent: str, extra: str, keep: bool
    ) -> Reply:
        if self._writer is None:
            local = (self._local, 0) if self._local else None
            self._reader, self._writer = await asyncio.open_connection(
                self._host,
                self._port,
                local_addr=local,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
        assert self._reader is not None  # noqa: S101  # opened together
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"User-Agent: {agent}\r\n{extra}"
        )
        if method == "PUT":
            head += f"Content-Length: {len(body)}\r\n"
        self._writer.write((head + "\r\n").encode("latin-1") + body)
        collector = _Collector(keep, path, self._max_body)
        parser = collector.parser = httptools.HttpResponseParser(collector)
        while not collector.done:
            chunk = await self._reader.read(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserCallbackError as exc:  # the callback's own error
                await self.close()  # the rest of the answer is not read: not reusable
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, AnswerTooLargeError):
                    raise cause from None
                raise
        reply = collector.sink.reply(parser.get_status_code(), collector.headers)
        self._challenges = collector.challenges
        if not collector.keep_alive:
            await self.close()
        return reply

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def check_reachable(
    host: str, port: int, timeout_s: float = 5.0, tls: ssl.SSLContext | None = None
) -> None:
    """Raise EmulationError, saying why, when no HTTP server takes connections there (with
    ``tls``: none whose TLS and certificate the phones would accept)."""
    where = f"{'https' if tls is not None else 'http'}://{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls is not None else None
            )
    except ssl.SSLCertVerificationError as exc:
        raise EmulationError(
            f"{where}: the phones do not trust its certificate ({exc.verify_message})",
            hint="give its certificate (or its CA's) with --cacert FILE.pem",
        ) from exc
    except ssl.SSLError as exc:
        raise EmulationError(f"{where} speaks no TLS the phones accept ({exc.reason})") from exc
    except ConnectionRefusedError as exc:
        raise EmulationError(f"nothing listens at {where} (connection refused)") from exc
    except TimeoutError as exc:
        raise EmulationError(f"{where} does not answer: no connection in {timeout_s:g} s") from exc
    except OSError as exc:
        raise EmulationError(f"cannot reach {where}: {exc.strerror or exc}") from exc
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()

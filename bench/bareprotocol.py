"""The bare protocol: httptools answering bench/boot.py's boot from fixed bytes.

bench/floor.py serves it on a socket (the most a server on uvloop and httptools answers);
bench/requestcost.py feeds it the boot's bytes in process (what parsing a request costs at the
least). 200 with 600 bytes for the shared files (`/000000000000…`), 204 for a PUT (its body read
and dropped), 404 for the rest; nothing is looked up, written or recorded. It imports nothing
of this folder's, so a script that keeps this folder out of the front of its path (the folder's
http.py would shadow the standard library's) can still import it from the back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import httptools

SHARED: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 600\r\ncontent-type: text/plain\r\n\r\n" + b"x" * 600
)
MISSING: Final = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
STORED: Final = b"HTTP/1.1 204 No Content\r\n\r\n"


class BareProtocol(asyncio.Protocol):
    """Fixed answers by method and path; closes on bytes that are not HTTP and after an answer
    the client does not keep alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        if self.parser.get_method() == b"PUT":
            self.transport.write(STORED)
        else:
            self.transport.write(SHARED if self.url.startswith(b"/000000000000") else MISSING)
        if not self.parser.should_keep_alive():
            self.transport.close()

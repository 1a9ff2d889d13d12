"""What a request and its answer are called in the protocol they went over.

Every ``Transport`` answers in HTTP's statuses (``emulate.transport``), so the boot logic never
knows the protocol; what the emulator tells an operator is in the protocol's own words, as the
server's records name them (``fleetkey fetches``: TFTP ``RRQ`` and ``WRQ``, FTP ``RETR`` and
``STOR``). An upload over TFTP or FTP is stored or not; whether the server created the file
(its record's 201) or replaced it (204) the phone cannot tell, so it says ``ACK`` (TFTP's
last acknowledgement) or ``226`` (FTP's transfer complete), never HTTP's 201.
"""

from __future__ import annotations

from typing import Final

PROTOCOLS: Final = ("http", "https", "tftp", "ftp")
_HTTP: Final = frozenset({"http", "https"})  # a status is its own word
_METHODS: Final = {
    "http": {"GET": "GET", "PUT": "PUT"},
    "https": {"GET": "GET", "PUT": "PUT"},
    "tftp": {"GET": "RRQ", "PUT": "WRQ"},
    "ftp": {"GET": "RETR", "PUT": "STOR"},
}
# the status a transport mapped an answer to → the protocol's word for that answer
_ANSWERS: Final = {
    "tftp": {
        200: "DATA",
        206: "DATA (first block)",
        201: "ACK",
        403: "ERROR 2 (access violation)",
        404: "ERROR 1 (file not found)",
        408: "timed out",
        413: "ERROR 3 (disk full or too large)",
        503: "busy",
    },
    "ftp": {
        200: "226",
        206: "first bytes (SIZE, MDTM)",
        201: "226",
        403: "530/550 (refused)",
        404: "550 (no such file)",
        408: "timed out",
        413: "552 (too large)",
        503: "421/450 (busy)",
    },
}


REFUSED_SESSION: Final = "connect 421 (refused: too many connections or logins)"
REFUSED_LOGIN: Final = "PASS 530 (login refused)"  # once per session: the server's PASS 401
NOT_SENT: Final = "not sent (the session's login was refused)"


def method_word(protocol: str, method: str) -> str:
    """``GET``/``PUT`` as ``protocol`` says it (``RRQ``/``WRQ``, ``RETR``/``STOR``)."""
    return _METHODS.get(protocol, _METHODS["http"]).get(method, method)


def answer_word(protocol: str, status: int) -> str:
    """The answer a transport gave ``status`` for, in ``protocol``'s words (HTTP: the
    status)."""
    if protocol in _HTTP:
        return str(status)
    return _ANSWERS[protocol].get(status, "error" if status >= 500 else str(status))


def answer_text(protocol: str, method: str, status: int) -> str:
    """One request and its answer: ``GET 200``, ``WRQ ACK``, ``RETR 550 (no such file)``."""
    return f"{method_word(protocol, method)} {answer_word(protocol, status)}"

"""Requests and answers in each protocol's own words, as the server's records name them."""

from __future__ import annotations

import pytest

from fleetkey.emulate.words import PROTOCOLS, answer_text, answer_word, method_word


@pytest.mark.parametrize(
    ("protocol", "method", "status", "text"),
    [
        ("http", "GET", 200, "GET 200"),
        ("http", "PUT", 201, "PUT 201"),
        ("http", "GET", 503, "GET 503"),
        ("https", "GET", 200, "GET 200"),
        ("https", "PUT", 204, "PUT 204"),
        ("tftp", "GET", 200, "RRQ DATA"),
        ("tftp", "PUT", 201, "WRQ ACK"),
        ("tftp", "GET", 404, "RRQ ERROR 1 (file not found)"),
        ("tftp", "GET", 403, "RRQ ERROR 2 (access violation)"),
        ("tftp", "GET", 503, "RRQ busy"),
        ("tftp", "GET", 500, "RRQ error"),
        ("ftp", "GET", 200, "RETR 226"),
        ("ftp", "PUT", 201, "STOR 226"),
        ("ftp", "GET", 404, "RETR 550 (no such file)"),
        ("ftp", "GET", 403, "RETR 530/550 (refused)"),
        ("ftp", "GET", 503, "RETR 421/450 (busy)"),
    ],
)
def test_each_answer_is_told_in_its_protocols_words(
    protocol: str, method: str, status: int, text: str
) -> None:
    assert answer_text(protocol, method, status) == text


def test_no_upload_over_tftp_or_ftp_is_called_put_or_201() -> None:
    """The server records WRQ or STOR and 201 or 204 (created or replaced): the phone cannot
    tell which, so it never says 201."""
    for protocol in ("tftp", "ftp"):
        assert method_word(protocol, "PUT") in ("WRQ", "STOR")
        assert "201" not in answer_word(protocol, 201)
    assert set(PROTOCOLS) == {"http", "https", "tftp", "ftp"}

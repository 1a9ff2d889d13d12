"""What the emulated phones trust over HTTPS (emulate/http.py ``tls_context``): a --cacert that
is not a PEM certificate and one that cannot be read are told apart, each with its cause."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from fleetkey.emulate.http import tls_context
from fleetkey.errors import InputError


def test_a_cacert_that_cannot_be_read_says_so_in_the_oss_words(tmp_path: Path) -> None:
    with pytest.raises(InputError) as refused:
        tls_context(tmp_path)  # a directory: root reads any file, not this
    assert str(refused.value) == f"--cacert {tmp_path}: unreadable (Is a directory)"
    assert "no PEM certificate" not in str(refused.value)
    assert refused.value.hint == "give a PEM file this user can read"
    assert isinstance(refused.value.__cause__, IsADirectoryError)


def test_a_cacert_without_a_certificate_says_so_with_its_cause(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("garbage")
    with pytest.raises(InputError, match="no PEM certificate in it") as refused:
        tls_context(garbage)
    assert isinstance(refused.value.__cause__, ssl.SSLError)

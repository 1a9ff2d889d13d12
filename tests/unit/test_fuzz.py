"""Fuzzing the parsers that read what strangers send: whatever the bytes, each answers with its
own clear error (a ``FleetkeyError`` or the protocol's error type) and nothing else — no crash,
no other exception, no hang. A fixed number of examples, derandomized, so CI runs the same
ones every time (hypothesis keeps failing examples in its database between local runs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetkey.core.codec import parse_license_file
from fleetkey.core.masterconfig import parse_master_config
from fleetkey.core.requestpath import filename_segments, url_path_segments
from fleetkey.core.tabular import read_rows
from fleetkey.core.tftp import PacketError, parse_request
from fleetkey.errors import FleetkeyError
from fleetkey.serve.fetching import shape_of

EXAMPLES = 3000
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LICENSE_HEAD = b"<?xml version='1.0' encoding='ISO-8859-1' standalone='yes'?>\n<licenses>"
KEY = (
    b"<licenseKey Serial='0004f2000001' Version='2.0' Type='Phone' Options='00000001' "
    b"Duration='" + b"0" * 108 + b"FFFF' Validation='" + b"ab" * 64 + b"'/>"
)


def refusal(read: Callable[[], object], errors: tuple[type[Exception], ...]) -> Exception | None:
    """What ``read`` raised of ``errors`` (None: it read the input); anything else propagates."""
    try:
        read()
    except errors as exc:
        return exc
    return None


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """``seed`` with a slice replaced by random bytes: near-valid input, where parsers break."""
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 64), st.binary(max_size=64)).map(
        lambda cut: seed[: cut[0]] + cut[2] + seed[cut[0] + cut[1] :]
    )


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutations(LICENSE_HEAD + KEY + b"</licenses>")))
def test_a_license_file_parses_or_is_refused_clearly(data: bytes) -> None:
    refused = refusal(lambda: parse_license_file(data, source="fuzz.cfg"), (FleetkeyError,))
    assert refused is None or str(refused).startswith("fuzz.cfg")  # a refusal names the file


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutations(b"/100000000001/0004f2a1b2c3-license.cfg")))
def test_a_request_path_is_plain_segments_or_refused(raw: bytes) -> None:
    for read in (url_path_segments, filename_segments):
        if refusal(lambda read=read: read(raw), (FleetkeyError,)) is not None:
            continue
        segments = read(raw)
        assert segments
        assert all(s and s not in (".", "..") and "/" not in s for s in segments)
        shape_of(segments)  # and the pipeline can read its shape


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=600),
        mutations(
            b"\x00\x01000000000000-license.cfg\x00octet\x00blksize\x001428\x00tsize\x000\x00"
        ),
    )
)
def test_a_tftp_request_parses_or_is_refused_with_an_error_packet(packet: bytes) -> None:
    refused = refusal(lambda: parse_request(packet), (PacketError,))
    assert refused is None or str(refused)  # what the error packet will say


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=600),
        mutations(b"mac,site,model\n0004f2000001,100000000001,VVX_500\n"),
    )
)
def test_an_operator_csv_is_read_or_refused_by_line(data: bytes) -> None:
    refused = refusal(
        lambda: read_rows(
            data,
            source="fuzz.csv",
            required=("mac", "site"),
            optional=("model",),
            parse=lambda row: row,
            key=lambda row: row["mac"],
        ),
        (FleetkeyError,),
    )
    assert refused is None or "fuzz.csv" in str(refused)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=600),
        mutations(
            b'<APPLICATION APP_FILE_PATH="sip.ld"><APPLICATION_SPIP300 X_SPIP300="a"/>'
            b"</APPLICATION>"
        ),
        mutations(  # the declaration: its encoding name is where expat raised past the parser
            b"<?xml version='1.0' encoding='UTF-8'?><APPLICATION APP_FILE_PATH='sip.ld'/>"
        ),
    )
)
def test_a_master_configuration_parses_or_is_refused_clearly(data: bytes) -> None:
    refused = refusal(lambda: parse_master_config(data, source="fuzz.cfg"), (FleetkeyError,))
    assert refused is None or str(refused).startswith("fuzz.cfg")


@pytest.mark.parametrize("size", [10**6, 10**7])
def test_huge_inputs_are_refused_by_size_before_they_are_parsed(size: int) -> None:
    with pytest.raises(FleetkeyError, match="larger than"):
        parse_license_file(b"<" * size, source="big.cfg")
    with pytest.raises(FleetkeyError, match="larger than"):
        parse_master_config(b"<" * (size + 1024 * 1024), source="big.cfg")

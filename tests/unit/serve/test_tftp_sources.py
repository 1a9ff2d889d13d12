"""What TFTP transfers send: netascii converted as it is sent, never whole in memory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.serve.tftp.sources import (
    CHUNK,
    NetasciiFileSource,
    netascii,
    netascii_size,
)


def blocks(source: NetasciiFileSource, size: int, blksize: int) -> bytes:
    sent = b""
    for offset in range(0, size + 1, blksize):
        sent += source.read(offset, blksize)
    return sent


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=3000), blksize=st.integers(8, 700))
def test_a_file_sent_in_netascii_is_the_whole_conversion_block_by_block(
    raw: bytes, blksize: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file.txt"
        path.write_bytes(raw)
        size = netascii_size(str(path))
        assert size == len(netascii(raw))
        source = NetasciiFileSource(str(path), keep=4 * blksize)
        assert blocks(source, size, blksize) == netascii(raw)
        source.close()


def test_a_window_can_be_sent_again_and_memory_stays_near_a_chunk(tmp_path: Path) -> None:
    raw = (b"line\n" * 200_000) + b"\r\r\n"  # ~1 MB, converts to ~1.2 MB
    path = tmp_path / "notes.txt"
    path.write_bytes(raw)
    expected = netascii(raw)
    source = NetasciiFileSource(str(path), keep=8 * 512)
    for block in range(len(expected) // 512 + 1):
        offset = block * 512
        assert source.read(offset, 512) == expected[offset : offset + 512]
        if block >= 8:  # a timeout resends the window: eight blocks back
            back = offset - 8 * 512
            assert source.read(back, 512) == expected[back : back + 512]
        assert len(source._converted) <= 3 * CHUNK + 8 * 512
    source.close()


def test_the_size_is_counted_once_per_file_version(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a\nb\n")
    assert netascii_size(str(path)) == 6
    path.write_bytes(b"a\r\nb\n\n\n")
    os.utime(path, ns=(1, 2_000_000_000))
    assert netascii_size(str(path)) == 7 + 5

"""Checking many license files: read, parse and verify each, on all cores, in order.

Verification dominates (Ed25519 verify is ~3x the cost of signing) and cryptography releases
the GIL while it runs, so threads scale it across cores while reading and parsing interleave.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetkey.authority.files import read_license_bytes
from fleetkey.core.codec import LicenseFile, parse_license_file
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.verdicts import SignatureCheck
from fleetkey.errors import FleetkeyError

WORKERS: Final = os.cpu_count() or 1
_BATCH: Final = 64  # files per task: enough to amortize the hand-off, small enough to stream


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file's outcome: its keys with their signature verdicts, or why it did not read."""

    path: Path
    license_file: LicenseFile | None
    checks: tuple[SignatureCheck, ...]
    error: str | None = None
    data: bytes = b""  # the bytes that were parsed, for callers that store them

    @property
    def ok(self) -> bool:
        """Parsed, holds keys, and every key's signature is valid."""
        return (
            self.error is None and bool(self.checks) and all(check.valid for check in self.checks)
        )


def check_file(path: Path, trusted: TrustedKeys) -> FileCheck:
    """Read, parse and verify one file; a file that cannot be read or parsed is reported."""
    try:
        data = read_license_bytes(path)
        parsed = parse_license_file(data, source=str(path))
    except FleetkeyError as exc:
        return FileCheck(path, None, (), exc.message)
    except OSError as exc:
        return FileCheck(path, None, (), f"{path}: {exc.strerror or exc}")
    return FileCheck(path, parsed, tuple(trusted.check(key) for key in parsed.keys), data=data)


def check_files(
    paths: Iterable[Path], trusted: TrustedKeys, *, workers: int = WORKERS
) -> Iterator[FileCheck]:
    """``check_file`` for every path, ``workers`` threads at a time, results in input order."""
    items = list(paths)
    if workers <= 1 or len(items) < 2 * _BATCH:
        for path in items:
            yield check_file(path, trusted)
        return
    batches = [items[start : start + _BATCH] for start in range(0, len(items), _BATCH)]
    with ThreadPoolExecutor(workers, thread_name_prefix="fleetkey-check") as pool:
        for results in pool.map(lambda batch: [check_file(p, trusted) for p in batch], batches):
            yield from results

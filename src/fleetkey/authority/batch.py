"""Batch issuing of phone licenses from a CSV (``mac,features,expires``): all rows or nothing.

Every row is validated before anything is signed; every bad row is reported with its line
number. Workers sign and every file is written to a hidden temporary name first; when all are
written they are flushed to disk (one ``sync``) and renamed into place. A rename that fails
undoes the ones before it: each file a rename replaced was kept under a hidden link and is put
back, each new one removed. So a failure while signing, writing or renaming leaves the directory
as it was, and the caller records nothing in the store.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from fleetkey.authority.files import PRIVATE_FILE, sync_directory
from fleetkey.core.codec import serialize_keys
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.issuing import KeyTemplate, Signer
from fleetkey.core.license import LicenseType
from fleetkey.core.naming import normalize_mac, phone_license_file
from fleetkey.core.signing import SigningKey
from fleetkey.core.tabular import read_rows
from fleetkey.core.terms import Term, parse_term
from fleetkey.errors import FleetkeyError, InputError

T = TypeVar("T")

COLUMNS: Final = ("mac", "features", "expires")
FEATURE_SEPARATOR: Final = ";"
CHUNK: Final = 512  # licenses a worker signs and writes per task
PARALLEL_MIN_ROWS: Final = 2000  # below this, starting worker processes costs more than it saves
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL


@dataclass(frozen=True, slots=True)
class IssuedBatch:
    """Where a batch went: the directory and the file names, in row order."""

    directory: Path
    names: list[str]
    contents: list[bytes]

    def __len__(self) -> int:
        return len(self.names)

    def paths(self) -> list[Path]:
        return [self.directory / name for name in self.names]


@dataclass(frozen=True, slots=True)
class BatchRow:
    mac: str
    terms: dict[int, Term]


def parse_batch_csv(data: bytes, catalog: FeatureCatalog, *, source: str) -> list[BatchRow]:
    """Validate every row of a batch CSV; raise RowError naming each bad line."""
    return read_rows(
        data,
        source=source,
        required=COLUMNS,
        parse=lambda values: _row(values, catalog),
        key=lambda row: row.mac,
        outcome="nothing was issued",
    )


def _row(values: dict[str, str], catalog: FeatureCatalog) -> BatchRow:
    mac = normalize_mac(values["mac"])
    term = parse_term(values["expires"])
    names = [name.strip() for name in values["features"].split(FEATURE_SEPARATOR) if name.strip()]
    if not names:
        raise InputError("no features: expected names separated by ';'")
    terms: dict[int, Term] = {}
    for name in names:
        slot = catalog.slot_of(name)
        if slot in terms:
            raise InputError(f"feature {name!r} is named twice")
        terms[slot] = term
    return BatchRow(mac, terms)


def issue_batch(
    rows: Sequence[BatchRow],
    signer: SigningKey,
    out_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> IssuedBatch:
    """Sign every row and write ``<mac>-license.cfg`` files into ``out_dir``; all or nothing.

    ``workers`` processes sign and serialize chunks of rows (by default one per core for
    batches of at least PARALLEL_MIN_ROWS rows, else the calling process alone) while this
    process writes the files as the chunks arrive: one writer, because concurrent creates in
    one directory contend in the file system, and processes, not threads, because with threads
    the GIL hand-offs around each sign and each system call cost as much as the work.
    ``progress`` is called with the number of licenses written per chunk.
    """
    if workers is None:
        workers = (os.cpu_count() or 1) if len(rows) >= PARALLEL_MIN_ROWS else 1
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix, token = os.path.join(out_dir, ""), secrets.token_hex(4)
    templates: list[KeyTemplate] = []
    shapes: dict[frozenset[tuple[int, Term]], int] = {}
    jobs: list[_Job] = []
    names: list[str] = []
    for row in rows:
        shape = frozenset(row.terms.items())
        index = shapes.get(shape)
        if index is None:
            index = shapes[shape] = len(templates)
            templates.append(KeyTemplate.for_terms(LicenseType.PHONE, row.terms))
        name = phone_license_file(row.mac)
        names.append(name)
        jobs.append((row.mac, index, f"{prefix}.{name}.{token}.tmp", prefix + name))
    chunks = list(_chunks(jobs, CHUNK))
    contents: list[bytes] = []
    try:
        for chunk, files in zip(chunks, _signed(chunks, signer, templates, workers), strict=True):
            _write_files(chunk, files)
            contents.extend(files)
            if progress is not None:
                progress(len(chunk))
        os.sync()  # every file on disk before any takes its name: one sync, not one per file
    except BaseException:
        _remove([temp for _, _, temp, _ in jobs])
        raise
    _rename_all([(temp, target) for _, _, temp, target in jobs], f".{token}.old")
    sync_directory(out_dir)
    return IssuedBatch(out_dir, names, contents)


def _rename_all(moves: list[tuple[str, str]], suffix: str) -> None:
    """Rename every temporary onto its target, or none: on a failure, put back what was there.

    A target that exists is first linked to a hidden ``.<name><suffix>`` beside it (a second
    name for the same file: no space needed), then replaced; undoing renames the link back.
    """
    done: list[tuple[str, str | None]] = []  # (target, the link to what it replaced, or None)
    target = ""
    try:
        for temp, target in moves:
            folder, name = os.path.split(target)
            kept = _keep(target, os.path.join(folder, f".{name}{suffix}"))
            try:
                os.replace(temp, target)
            except BaseException:
                if kept is not None:
                    os.unlink(kept)
                raise
            done.append((target, kept))
    except BaseException as exc:
        _remove([temp for temp, _ in moves])
        _undo(done, exc)
        if isinstance(exc, OSError):
            raise OSError(
                exc.errno, f"{exc.strerror or exc}; the batch was undone, no file changed", target
            ) from exc
        raise
    _remove([kept for _, kept in done if kept is not None])


def _keep(target: str, kept: str) -> str | None:
    """Link ``target``'s file (or symbolic link) to ``kept``; None when there is no target."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "a directory is where a license file goes", target)
    os.link(target, kept, follow_symlinks=False)
    return kept


def _undo(done: list[tuple[str, str | None]], cause: BaseException) -> None:
    """Put back, newest first, what the renames in ``done`` replaced; say what could not be."""
    stuck: list[str] = []
    for target, kept in reversed(done):
        try:
            if kept is None:
                os.unlink(target)
            else:
                os.replace(kept, target)
        except OSError as exc:
            stuck.append(f"{target}: {exc.strerror or exc}")
    if stuck:
        raise FleetkeyError(
            f"a batch rename failed ({cause}) and {len(stuck)} file(s) could not be put back: "
            + "; ".join(stuck),
            hint="the files named hold this batch's licenses; restore them from the store "
            "(`fleetkey licenses list`) or re-run the batch",
        ) from cause


def _remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# A job: (mac, template index, temporary path, final path).
_Job = tuple[str, int, str, str]
_worker_state: tuple[SigningKey, list[KeyTemplate]] | None = None


def _signed(
    chunks: list[list[_Job]], signer: SigningKey, templates: list[KeyTemplate], workers: int
) -> Iterator[list[bytes]]:
    """The file contents of each chunk, in order: signed here, or by ``workers`` processes."""
    if workers <= 1:
        for chunk in chunks:
            yield _sign_chunk([(mac, index) for mac, index, _, _ in chunk], signer, templates)
        return
    # fork starts in milliseconds but is only safe while this process runs no other thread
    # (a forked child inherits every lock as it was); otherwise spawn, which re-imports.
    # The key travels to our own children in memory or over a local pipe, never to disk.
    forkable = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if forkable else "spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(signer.to_pem(None), templates),
    ) as pool:
        pending = [
            pool.submit(_worker_sign, [(mac, index) for mac, index, _, _ in chunk])
            for chunk in chunks
        ]
        try:
            for future in pending:
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _init_worker(pem: bytes, templates: list[KeyTemplate]) -> None:
    global _worker_state  # per-process state set once by the pool initializer
    _worker_state = (SigningKey.from_pem(pem, None), templates)


def _worker_sign(keys: list[tuple[str, int]]) -> list[bytes]:
    if _worker_state is None:  # pragma: no cover  # the initializer always runs first
        raise RuntimeError("batch worker was not initialized")
    return _sign_chunk(keys, *_worker_state)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sign_chunk(
    keys: list[tuple[str, int]], signer: Signer, templates: list[KeyTemplate]
) -> list[bytes]:
    return [serialize_keys([templates[index].issue(mac, signer)]) for mac, index in keys]


def _write_files(jobs: list[_Job], files: list[bytes]) -> None:
    for (_, _, temp, _), data in zip(jobs, files, strict=True):
        fd = os.open(temp, _CREATE, PRIVATE_FILE)
        try:
            os.write(fd, data)  # a license file (~450 bytes) is written whole in one call
        finally:
            os.close(fd)

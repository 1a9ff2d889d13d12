"""A phone's replaced log kept as its spare and its next log written into it (serve/spares.py):
no file created or freed, and never another phone's, another kind's or a reader's bytes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.serve import spares
from fleetkey.serve.trash import Trash, scratch_name
from fleetkey.serve.uploads import store_upload

from tests.helpers import wait_until

MAC = "0004f2a1b2c3"
LOG = f"{MAC}-app.log"


def _log(root: Path) -> Path:
    return root / MAC / LOG


def _spare(root: Path) -> Path:
    return root / MAC / f".{LOG}.spare"


@pytest.fixture
def trash(tmp_path: Path) -> Iterator[Trash]:
    kept = Trash(tmp_path, interval_s=3600).start()
    before = signal.getsignal(signal.SIGIO)
    kept.spares = spares.usable(kept.folder)
    assert kept.spares  # the test runs on the main thread, on Linux, where leases are granted
    yield kept
    kept.close()
    signal.signal(signal.SIGIO, before)


def _in_trash(trash: Trash) -> list[bytes]:
    return sorted(p.read_bytes() for p in Path(trash.folder).iterdir() if not p.is_symlink())


def test_the_replaced_log_becomes_the_spare_and_the_next_log_is_written_into_it(
    tmp_path: Path, trash: Trash
) -> None:
    assert store_upload(tmp_path, LOG, b"boot 1", trash) is True
    first = os.stat(_log(tmp_path)).st_ino
    assert store_upload(tmp_path, LOG, b"boot 2", trash) is False
    assert _spare(tmp_path).read_bytes() == b"boot 1"
    assert os.stat(_spare(tmp_path)).st_ino == first  # kept, not freed
    second = os.stat(_log(tmp_path)).st_ino
    assert store_upload(tmp_path, LOG, b"boot 3, longer than the others", trash) is False
    assert store_upload(tmp_path, LOG, b"boot 4", trash) is False  # shorter: cut to size
    assert _log(tmp_path).read_bytes() == b"boot 4"
    assert _spare(tmp_path).read_bytes() == b"boot 3, longer than the others"
    # two files take turns: nothing created, nothing freed
    assert {os.stat(_log(tmp_path)).st_ino, os.stat(_spare(tmp_path)).st_ino} == {first, second}
    # every replaced log kept as the spare; the last two uploads written into one
    assert (trash.spared, trash.reused, trash.kept, trash.waiting) == (3, 2, 0, 0)
    assert sorted(os.listdir(tmp_path / MAC)) == [f".{LOG}.spare", LOG]
    assert os.stat(_log(tmp_path)).st_mode & 0o777 == 0o600


def test_override_files_and_call_lists_get_no_spare(tmp_path: Path, trash: Trash) -> None:
    for name in (f"{MAC}-phone.cfg", f"{MAC}-calls.xml"):
        store_upload(tmp_path, name, b"<a/>", trash)
        store_upload(tmp_path, name, b"<b/>", trash)
        assert (tmp_path / MAC / name).read_bytes() == b"<b/>"
    assert not [n for n in os.listdir(tmp_path / MAC) if n.endswith(".spare")]
    assert (trash.spared, trash.reused, trash.kept) == (0, 0, 2)  # the trash as before


def test_each_phone_and_each_log_has_its_own_spare(tmp_path: Path, trash: Trash) -> None:
    other = "0004f2000001"
    for boot in range(3):
        for mac in (MAC, other):
            for kind in ("app.log", "boot.log"):
                store_upload(tmp_path, f"{mac}-{kind}", f"{mac} {kind} {boot}".encode(), trash)
    for mac in (MAC, other):
        for kind in ("app.log", "boot.log"):
            assert (tmp_path / mac / f"{mac}-{kind}").read_bytes() == f"{mac} {kind} 2".encode()
            spare = tmp_path / mac / f".{mac}-{kind}.spare"
            assert spare.read_bytes() == f"{mac} {kind} 1".encode()


def test_a_reader_holding_the_spare_keeps_its_bytes(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    with open(_log(tmp_path), "rb") as reader:  # a transfer of boot 1's log, still going
        store_upload(tmp_path, LOG, b"boot 2", trash)  # boot 1's file is now the spare
        store_upload(tmp_path, LOG, b"boot 3", trash)  # not written into: the reader has it
        assert reader.read() == b"boot 1"
    assert _log(tmp_path).read_bytes() == b"boot 3"
    assert trash.reused == 0
    # the spare stays (no rename over it, which would free it on the caller's thread): the
    # log boot 3 replaced goes to the trash instead
    assert _in_trash(trash) == [b"boot 2"]
    store_upload(tmp_path, LOG, b"boot 4", trash)  # the reader gone: the spare is used again
    assert (_log(tmp_path).read_bytes(), trash.reused) == (b"boot 4", 1)


def test_a_spare_with_another_name_is_not_written_into(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    elsewhere = tmp_path / "backup-of-boot-1"
    os.link(_spare(tmp_path), elsewhere)  # a hard link: written into, it would change too
    store_upload(tmp_path, LOG, b"boot 3", trash)
    assert elsewhere.read_bytes() == b"boot 1"
    assert _log(tmp_path).read_bytes() == b"boot 3"
    assert trash.reused == 0
    assert _spare(tmp_path).read_bytes() == b"boot 2"  # a spare of its own instead
    assert os.stat(_spare(tmp_path)).st_nlink == 1


def test_a_spare_that_is_a_symbolic_link_is_not_followed(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the phone's")
    _spare(tmp_path).symlink_to(outside)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    assert outside.read_bytes() == b"not the phone's"
    assert _log(tmp_path).read_bytes() == b"boot 2"
    # the link went to the trash (freeing a link frees no file); the old log is the spare
    assert not _spare(tmp_path).is_symlink()
    assert _spare(tmp_path).read_bytes() == b"boot 1"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_spare_owned_by_another_user_is_not_written_into(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    os.chown(_spare(tmp_path), 65534, 65534)
    store_upload(tmp_path, LOG, b"boot 3", trash)
    assert _in_trash(trash) == [b"boot 1"]  # not written into: to the trash, whole
    assert _log(tmp_path).read_bytes() == b"boot 3"
    assert os.stat(_spare(tmp_path)).st_uid == os.geteuid()  # boot 2's, the new spare


def test_a_spare_s_mode_does_not_carry_over(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    os.chmod(_spare(tmp_path), 0o644)
    store_upload(tmp_path, LOG, b"boot 3", trash)
    assert trash.reused == 1
    assert os.stat(_log(tmp_path)).st_mode & 0o777 == 0o600


def test_a_spare_deleted_while_it_is_written_leaves_the_upload_stored_the_usual_way(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    lease = spares.fcntl.fcntl

    def deleted_meanwhile(handle: int, command: int, arg: int = 0) -> object:
        granted = lease(handle, command, arg)
        os.unlink(_spare(tmp_path))  # an administrator's `find -delete`, once it is leased
        return granted

    monkeypatch.setattr(spares.fcntl, "fcntl", deleted_meanwhile)
    assert store_upload(tmp_path, LOG, b"boot 3", trash) is False
    assert _log(tmp_path).read_bytes() == b"boot 3"
    assert _spare(tmp_path).read_bytes() == b"boot 2"  # the replaced log, a spare again
    assert trash.reused == 0


def test_a_spare_replaced_while_it_is_written_is_not_swapped_in(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    rename2 = spares.rename2

    def replaced_meanwhile(source: str, destination: str, flags: int) -> None:
        if source == str(_spare(tmp_path)):  # the claim: just before it, the spare replaced
            os.unlink(source)
            _spare(tmp_path).write_bytes(b"another upload's old log")
        rename2(source, destination, flags)

    monkeypatch.setattr(spares, "rename2", replaced_meanwhile)
    assert store_upload(tmp_path, LOG, b"boot 3", trash) is False
    assert _log(tmp_path).read_bytes() == b"boot 3"  # not the other file swapped in
    assert b"boot 3" not in _in_trash(trash)


def test_a_claim_never_replaces_a_file_of_that_name(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    taken = tmp_path / MAC / f".{MAC}.1.0123abcd.7.claim"  # another server's, same pid
    taken.write_bytes(b"its upload, being written")
    monkeypatch.setattr(spares, "scratch_name", lambda folder, mac, kind: str(taken))
    store_upload(tmp_path, LOG, b"boot 3", trash)
    assert taken.read_bytes() == b"its upload, being written"
    assert _log(tmp_path).read_bytes() == b"boot 3"


def test_the_lease_is_let_go_once_the_spare_is_written(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    opened: list[bool] = []
    place = spares.place

    def reader_meanwhile(source: str, target: str) -> bool | None:
        try:  # a reader (a backup) opening the written file: not held back
            os.close(os.open(source, os.O_RDONLY | os.O_NONBLOCK))
            opened.append(True)
        except BlockingIOError:
            opened.append(False)
        return place(source, target)

    monkeypatch.setattr(spares, "place", reader_meanwhile)
    store_upload(tmp_path, LOG, b"boot 3", trash)
    assert (opened, trash.reused) == ([True], 1)


def test_without_exchange_uploads_are_stored_as_without_spares(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot(source: str, destination: str, flags: int) -> None:
        raise OSError(22, "Invalid argument")  # EINVAL: a filesystem that cannot exchange

    monkeypatch.setattr(spares, "rename2", cannot)
    store_upload(tmp_path, LOG, b"boot 1", trash)
    try:
        assert store_upload(tmp_path, LOG, b"boot 2", trash) is False
        assert _log(tmp_path).read_bytes() == b"boot 2"
        assert not spares._exchanges.is_set()  # off for the process from then on
    finally:
        spares._exchanges.set()
    assert not _spare(tmp_path).exists()
    assert (trash.kept, trash.spared) == (1, 0)  # the trash as before


def test_spares_ignore_the_lease_break_signal(trash: Trash) -> None:
    assert signal.getsignal(signal.SIGIO) == signal.SIG_IGN


def test_no_spares_where_leases_are_not_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(handle: int, command: int, arg: int = 0) -> int:
        raise OSError(22, "Invalid argument")  # fs.leases-enable=0, or a filesystem without

    monkeypatch.setattr(spares.fcntl, "fcntl", refused)
    assert spares.usable(str(tmp_path)) is False
    assert os.listdir(tmp_path) == []  # the probe removed


def test_a_log_shorter_by_a_block_is_not_written_into_the_spare(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = b"x" * 20_000  # five blocks of 4 KiB
    store_upload(tmp_path, LOG, long, trash)
    store_upload(tmp_path, LOG, long, trash)
    truncated: list[int] = []
    truncate = os.ftruncate

    def watched(handle: int, size: int) -> None:
        truncated.append(os.fstat(handle).st_size - size)
        truncate(handle, size)

    monkeypatch.setattr(spares.os, "ftruncate", watched)
    store_upload(tmp_path, LOG, b"short", trash)  # cutting the spare would free blocks
    assert truncated == []
    assert _log(tmp_path).read_bytes() == b"short"
    assert _in_trash(trash) == [long]  # the long spare, freed by the thread
    assert _spare(tmp_path).read_bytes() == long  # the log it replaced
    store_upload(tmp_path, LOG, long + b"!", trash)  # longer: written into the spare
    assert truncated == [0]
    assert trash.reused == 1


def test_what_a_killed_server_left_beside_the_uploads_is_freed_once_old(
    tmp_path: Path,
) -> None:
    folder = tmp_path / MAC
    folder.mkdir()
    old = [scratch_name(str(folder), MAC, "tmp"), scratch_name(str(folder), MAC, "claim")]
    young = [scratch_name(str(folder), MAC, "tmp")]  # an upload being written, maybe
    kept = [str(folder / f".{LOG}.spare"), str(folder / LOG), str(folder / ".other.tmp")]
    for path in old + young + kept:
        Path(path).write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    for path in old:
        os.utime(path, (an_hour_ago, an_hour_ago))
    trash = Trash(tmp_path, interval_s=0.01).start()
    try:
        wait_until(lambda: trash.swept == 2, timeout_s=10)
    finally:
        trash.close()
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in young + kept)


def test_names_of_an_upload_s_own_are_unique_to_the_process_and_the_call() -> None:
    first, second = scratch_name("/u", MAC, "tmp"), scratch_name("/u", MAC, "tmp")
    assert first != second
    assert os.path.basename(first).startswith(f".{MAC}.{os.getpid():x}.")
    child = multiprocessing.get_context("fork")
    with child.Pool(1) as pool:  # a forked worker: the same counter, a token of its own
        other = pool.apply(scratch_name, ("/u", MAC, "tmp"))
    assert other.split(".")[3] != first.split(".")[3]


def test_a_folder_at_the_log_s_name_is_not_swapped_out(tmp_path: Path, trash: Trash) -> None:
    (tmp_path / MAC / LOG).mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        store_upload(tmp_path, LOG, b"boot 1", trash)
    assert (tmp_path / MAC / LOG).is_dir()
    assert list(Path(trash.folder).iterdir()) == []


def _uploader(root: str, tag: int, count: int) -> None:
    trash = Trash(Path(root), interval_s=0.01).start()
    trash.spares = spares.usable(trash.folder)
    for n in range(count):
        store_upload(Path(root), LOG, f"{tag}:{n}:".encode() * (1 + n % 50), trash)
    trash.close()


def test_two_processes_replacing_one_log_never_mix_their_bytes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_uploader, args=(str(tmp_path), t, 300)) for t in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    for path in (_log(tmp_path), _spare(tmp_path)):
        data = path.read_bytes().decode()
        parts = data.split(":")[:-1]
        tag, n = parts[0], int(parts[1])
        assert data == f"{tag}:{n}:" * (1 + n % 50)  # one upload, whole
    assert sorted(os.listdir(tmp_path / MAC)) == [f".{LOG}.spare", LOG]  # no temporary left

"""A phone's replaced log kept as its spare and its next log written into it (serve/spares.py):
no file created or freed, and never another phone's, another kind's or a reader's bytes."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.serve import spares
from fleetkey.serve.trash import Trash
from fleetkey.serve.uploads import store_upload

MAC = "0004f2a1b2c3"
LOG = f"{MAC}-app.log"


def _log(root: Path) -> Path:
    return root / MAC / LOG


def _spare(root: Path) -> Path:
    return root / MAC / f".{LOG}.spare"


@pytest.fixture
def trash(tmp_path: Path) -> Iterator[Trash]:
    kept = Trash(tmp_path, interval_s=3600).start()
    assert spares.usable()  # the test runs on the main thread, on Linux
    kept.spares = True
    yield kept
    kept.close()


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
    assert (trash.spared, trash.reused, trash.kept, trash.waiting) == (1, 2, 0, 0)
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


def test_a_spare_that_is_a_symbolic_link_is_not_followed(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the phone's")
    _spare(tmp_path).symlink_to(outside)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    assert outside.read_bytes() == b"not the phone's"
    assert _log(tmp_path).read_bytes() == b"boot 2"
    assert _spare(tmp_path).is_symlink()  # left as found; the old log freed by the trash
    assert trash.waiting == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_spare_owned_by_another_user_is_not_written_into(tmp_path: Path, trash: Trash) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    os.chown(_spare(tmp_path), 65534, 65534)
    store_upload(tmp_path, LOG, b"boot 3", trash)
    assert _spare(tmp_path).read_bytes() == b"boot 1"
    assert _log(tmp_path).read_bytes() == b"boot 3"


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
    truncate = os.ftruncate

    def deleted_meanwhile(handle: int, size: int) -> None:  # an administrator's `find -delete`
        os.unlink(_spare(tmp_path))
        truncate(handle, size)

    monkeypatch.setattr(spares.os, "ftruncate", deleted_meanwhile)
    assert store_upload(tmp_path, LOG, b"boot 3", trash) is False
    assert _log(tmp_path).read_bytes() == b"boot 3"
    assert _spare(tmp_path).read_bytes() == b"boot 2"  # the replaced log, a spare again
    assert trash.reused == 0


def test_a_spare_replaced_while_it_is_written_is_not_swapped_in(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_upload(tmp_path, LOG, b"boot 1", trash)
    store_upload(tmp_path, LOG, b"boot 2", trash)
    truncate = os.ftruncate

    def replaced_meanwhile(handle: int, size: int) -> None:  # deleted, and a new one made
        os.unlink(_spare(tmp_path))
        _spare(tmp_path).write_bytes(b"another upload's old log")
        truncate(handle, size)

    monkeypatch.setattr(spares.os, "ftruncate", replaced_meanwhile)
    assert store_upload(tmp_path, LOG, b"boot 3", trash) is False
    assert _log(tmp_path).read_bytes() == b"boot 3"


def test_without_exchange_uploads_are_stored_as_without_spares(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot(source: str, destination: str, flags: int) -> None:
        raise OSError(22, "Invalid argument")  # EINVAL: a filesystem that cannot exchange

    monkeypatch.setattr(spares, "rename2", cannot)
    monkeypatch.setitem(spares._state, "exchanges", True)
    store_upload(tmp_path, LOG, b"boot 1", trash)
    assert store_upload(tmp_path, LOG, b"boot 2", trash) is False
    assert _log(tmp_path).read_bytes() == b"boot 2"
    assert spares._state["exchanges"] is False  # off for the process from then on
    assert not _spare(tmp_path).exists()
    assert (trash.kept, trash.spared) == (1, 0)  # the trash as before


def test_spares_ignore_the_lease_break_signal() -> None:
    assert spares.usable()
    assert signal.getsignal(signal.SIGIO) == signal.SIG_IGN


def _uploader(root: str, tag: int, count: int) -> None:
    trash = Trash(Path(root), interval_s=0.01).start()
    trash.spares = spares.usable()
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

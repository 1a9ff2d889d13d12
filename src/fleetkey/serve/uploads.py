"""Files phones write back (domain.md §5.1, §5.3): logs, override configs, call lists.

Only these names are accepted, each under a size cap, and stored per MAC under
``<data>/uploads/<mac>/``, written atomically; nothing else, and never outside that directory.
Accepted in any directory the phone puts them (its master configuration's LOG_FILE_DIRECTORY,
OVERRIDES_DIRECTORY, CALL_LISTS_DIRECTORY…: domain.md §4), over HTTP PUT and TFTP WRQ alike,
and read back by the phone from wherever it asks (``serve.fetching``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from pathlib import Path
from typing import Final, NamedTuple

from fleetkey.errors import UploadRefusedError
from fleetkey.serve import spares
from fleetkey.serve.trash import Trash, scratch_name

KIB: Final = 1024
# kind of file → size cap in bytes
CAPS: Final = {
    "boot.log": 4096 * KIB,  # bootROM/updater log
    "app.log": 4096 * KIB,  # application log
    "appFlash.log": 4096 * KIB,  # older SIP versions (Contacta, domain.md S3)
    "phone.cfg": 512 * KIB,  # settings changed on the phone (UI)
    "web.cfg": 512 * KIB,  # settings changed in the phone's web UI
    "calls.xml": 1024 * KIB,  # call lists (UC 5.x)
    "directory.xml": 1024 * KIB,  # local contact directory
}
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
log = logging.getLogger(__name__)
_NAME = re.compile(r"([0-9A-Fa-f]{12})-(" + "|".join(re.escape(k) for k in CAPS) + r")")


class Upload(NamedTuple):
    """A file a phone may upload: whose it is, its size cap, its name as the phone sent it."""

    mac: str  # lowercase
    cap_bytes: int
    name: str

    @property
    def kind(self) -> str:
        """What the file is: ``app.log``, ``phone.cfg``… (the name after the MAC)."""
        return self.name.split("-", 1)[1]

    @property
    def stored(self) -> str:
        """The name it is stored as, in its phone's folder: the MAC in lowercase."""
        return f"{self.mac}-{self.kind}"


def upload_rule(name: str) -> Upload | None:
    """The upload ``name`` is, when it is a file phones upload; else None."""
    match = _NAME.fullmatch(name)
    if match is None or match.group(1) == "000000000000":
        return None
    return Upload(match.group(1).lower(), CAPS[match.group(2)], name)


def store_upload(root: Path, name: str, data: bytes, trash: Trash | None = None) -> bool:
    """Write ``data`` as ``root/<mac>/<mac>-<kind>`` atomically; True when the file is new.

    Each write goes to a temporary name of its own (so any number of uploads of one name may
    run at once: the last rename wins, none fails) that is then renamed over the target.
    Files are private (0600) and so are the per-MAC folders (0700). With a ``trash`` the file
    replaced is kept there, so the rename frees nothing (``serve.trash``); a log, when the
    trash allows spares, is written into the log it replaced last time and exchanged with the
    current one (``serve.spares``).
    """
    rule = upload_rule(name)
    if rule is None:
        raise UploadRefusedError(f"{name!r} is not a file phones upload")
    mac, cap = rule.mac, rule.cap_bytes
    if len(data) > cap:
        raise UploadRefusedError(f"{name}: {len(data)} bytes, the limit is {cap}")
    folder = os.path.join(root, mac)
    target = os.path.join(folder, rule.stored)
    spare = trash if trash is not None and trash.spares and rule.kind in spares.KINDS else None
    if spare is not None:
        created = spares.write_into_spare(target, data, spare)
        if created is not None:
            spare.reused += 1
            return created
    temp = scratch_name(folder, mac, "tmp")
    try:
        handle = os.open(temp, _CREATE, 0o600)
    except FileNotFoundError:  # the phone's first upload: its folder is made once
        os.makedirs(folder, mode=0o700, exist_ok=True)
        handle = os.open(temp, _CREATE, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
        finally:
            os.close(handle)
        if spare is not None:
            created = spares.swap_in(temp, target, spare)
            if created is not None:  # else this filesystem cannot: as without spares
                return created
        kept = None if trash is None else trash.keep(target)
        existed = os.path.exists(target) if kept is None else bool(kept)
        try:
            os.replace(temp, target)
        finally:
            if kept and trash is not None:
                trash.free(kept)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return not existed


def store_status(root: Path, name: str, data: bytes, trash: Trash | None = None) -> int:
    """``store_upload`` as the status its fetch record says, for every protocol: 201 new, 204
    replaced, 507 when the disk (or the quota) had no room, so the phone may try again later,
    500 for any other failure (logged). Nothing partial is left either way."""
    try:
        created = store_upload(root, name, data, trash)
    except OSError as exc:
        # counted by its status; the OS error says it all: no traceback
        log.error("storing upload %s failed: %s", name, exc)  # noqa: TRY400
        return 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 500
    return 201 if created else 204

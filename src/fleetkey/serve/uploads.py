"""Files phones write back (domain.md §5.1, §5.3): logs, override configs, call lists.

Only these names are accepted, each under a size cap, and stored per MAC under
``<data>/uploads/<mac>/``, written atomically; nothing else, and never outside that directory.
HTTP PUT uses this now; TFTP WRQ will use the same rules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from fleetkey.errors import InputError

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
_NAME = re.compile(r"([0-9A-Fa-f]{12})-(" + "|".join(re.escape(k) for k in CAPS) + r")")


class UploadRefusedError(InputError):
    """The name is not one phones write."""


def upload_rule(name: str) -> tuple[str, int] | None:
    """(MAC, size cap) when ``name`` is a file phones upload, else None."""
    match = _NAME.fullmatch(name)
    if match is None or match.group(1) == "000000000000":
        return None
    return match.group(1).lower(), CAPS[match.group(2)]


def store_upload(root: Path, name: str, data: bytes) -> bool:
    """Write ``data`` as ``root/<mac>/<name>`` atomically; True when the file is new."""
    rule = upload_rule(name)
    if rule is None:
        raise UploadRefusedError(f"{name!r} is not a file phones upload")
    mac, cap = rule
    if len(data) > cap:
        raise UploadRefusedError(f"{name}: {len(data)} bytes, the limit is {cap}")
    folder = root / mac
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{mac}-{name.split('-', 1)[1]}"
    existed = target.exists()
    temp = folder / f".{target.name}.tmp"
    temp.write_bytes(data)
    temp.replace(target)
    return not existed

"""The filesystem a path is on, as /proc/self/mountinfo says: what the server reads to choose
where uploads are written (``serve.http.putting``) and the benchmarks print beside their
figures. Nothing here imports a protocol: bench/ scripts (whose ``http.py`` shadows the
standard library's on their path) read it too."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final, NamedTuple

MOUNTINFO: Final = Path("/proc/self/mountinfo")


class Mount(NamedTuple):
    """A filesystem as /proc/self/mountinfo describes it."""

    type: str
    source: str
    options: set[str]  # the mount's and its superblock's (``discard`` is the superblock's)


def mount_of(path: Path, mountinfo: str | None = None) -> Mount | None:
    """The filesystem holding ``path``: the mount with the longest mount point above it (of
    several at one point, the last, which covers the others). ``mountinfo``: the text of
    /proc/self/mountinfo (read when None; unreadable, as off Linux: None)."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            return None
    where = os.path.realpath(path)
    found: tuple[int, Mount] | None = None  # the longest mount point holding it
    for line in mountinfo.splitlines():
        mine, _, theirs = line.partition(" - ")
        fields, rest = mine.split(), theirs.split()
        if len(fields) < 6 or len(rest) < 3:
            continue
        point = _unescape(fields[4])
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and (found is None or len(point) >= found[0]):  # a later mount covers
            options = {*fields[5].split(","), *rest[2].split(",")}
            found = (len(point), Mount(rest[0], rest[1], options))
    return None if found is None else found[1]


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)

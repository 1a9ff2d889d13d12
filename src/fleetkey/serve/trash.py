"""Replaced uploads kept alive until a thread of their own frees them, in batches.

On ext4 mounted with ``discard`` (this project's VM, many cloud disks) the ``rename`` that
replaces a phone's log frees the old file's blocks and waits, inside the call, for the
device's discard (docs/serve.md, "Throughput with both cores"). An event loop waiting there
answers none of its connections; handing every upload to a worker thread instead cost more
CPU than the write (a future, a wake-up and five GIL hand-offs an upload: 327,000 ``futex``
calls per 2,000 boots against 15,000 with the writes inline).

So the replaced file is first hard-linked into ``<uploads>/.trash/`` (:meth:`Trash.keep`): the
``rename`` then drops one of its two links and frees nothing, and the upload is written on the
event loop like any small file. This thread unlinks what the trash holds a batch at a time
(one wake-up per batch, one GIL hand-off per file), and the discard waits there. The replace
stays what it was: atomic (the target is the old file or the new one at every moment), the
temporary file written whole first. The old bytes stay on disk until their batch (at most
``interval_s`` later); past ``backlog`` files waiting (a device slower than the uploads), the
next replaces free their file themselves, as without the trash.

``.trash`` is a hidden name, which no request path may hold (``core.requestpath``); entries are
named ``<pid>.<token>.<n>``. What a killed server left there is unlinked at the next start
(of any server on the directory: an entry taken from a running one only costs that one's
``rename`` the discard it was kept from).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

FOLDER: Final = ".trash"
INTERVAL_S: Final = 0.25  # the trash is emptied this often
BACKLOG: Final = 20_000  # files waiting to be freed beyond which replaces free their own


SWEEP_EVERY_S: Final = 600.0  # leftovers beside the uploads are looked for this often
LEFT_AGE_S: Final = 600.0  # and freed when older: an upload's own file lives milliseconds
_SCRATCH = re.compile(r"\.[0-9a-f]{12}\.[0-9a-f]+\.[0-9a-f]+\.\d+\.(?:tmp|claim)")
_scratches = itertools.count()
_token = {"pid": 0, "token": ""}


def scratch_name(folder: str, mac: str, kind: str) -> str:
    """A name of this upload's own beside a phone's files (``kind``: ``tmp``, a file being
    written; ``claim``, a spare being written into): hidden, unique to this process (its pid
    and a token made at its start, as containers' processes may share a pid) and this call."""
    pid = os.getpid()
    if _token["pid"] != pid:  # a new process (forked workers too): a new token
        _token["pid"], _token["token"] = pid, secrets.token_hex(4)
    unique = f"{pid:x}.{_token['token']}.{next(_scratches)}"
    return os.path.join(folder, f".{mac}.{unique}.{kind}")


class Trash:
    """A per-server trash of replaced uploads under ``root`` and the thread that empties it."""

    def __init__(
        self, root: Path, *, interval_s: float = INTERVAL_S, backlog: int = BACKLOG
    ) -> None:
        self.root = str(root)
        self.folder = os.path.join(root, FOLDER)
        self._interval = interval_s
        self._backlog = backlog
        self._waiting: deque[str] = deque()  # appended on the caller's thread, popped on ours
        self._names = itertools.count()
        self._prefix = ""
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.kept = 0  # replaced files linked here
        self.freed = 0  # of those, unlinked by the thread
        self.passed = 0  # replaces that freed their file themselves (backlog, no hard links)
        # logs written into the log they replaced last time (serve.spares): set by the
        # server once spares.usable() said so, on its main thread
        self.spares = False
        self.spared = 0  # replaced logs kept as their phone's spare
        self.reused = 0  # uploads written into a spare
        self.swept = 0  # files killed servers left beside the uploads, freed by the sweep

    @property
    def waiting(self) -> int:
        """Replaced files kept and not freed yet."""
        return len(self._waiting)

    def start(self) -> Trash:
        """Make the folder, then empty what an earlier run left and go on emptying."""
        if self._thread is None:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            self._prefix = f"{os.getpid()}.{secrets.token_hex(4)}."
            left = [os.path.join(self.folder, name) for name in os.listdir(self.folder)]
            self._waiting.extend(left)
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="fleetkey-trash", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Free everything kept, then stop the thread."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
            self._thread = None

    def take(self, path: str) -> None:
        """Move ``path`` (a file of the server's own beside a phone's uploads: a replaced log,
        a spare that cannot be used) into the trash, for the thread to free; freed at once
        when the trash cannot take it (not running, too many waiting)."""
        if self._thread is not None and len(self._waiting) < self._backlog:
            kept = os.path.join(self.folder, self._prefix + str(next(self._names)))
            try:
                os.rename(path, kept)
            except FileNotFoundError:
                return
            except OSError:  # not movable (the trash folder removed under us…): freed here
                pass
            else:
                self._waiting.append(kept)
                return
        self.passed += 1
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # the upload it was for is stored: said, not failed
            log.warning("could not free %s: %s", path, exc)

    def keep(self, target: str) -> str | None:
        """Link ``target`` (about to be replaced) into the trash and return the link's name,
        to give to :meth:`free` once the replace is done; "" when there is no ``target``;
        None when it is not kept (the thread not running, too many waiting, or no hard links
        here): the replace then frees it itself."""
        if self._thread is None or len(self._waiting) >= self._backlog:
            self.passed += 1
            return None
        kept = os.path.join(self.folder, self._prefix + str(next(self._names)))
        try:
            os.link(target, kept)
        except FileNotFoundError:
            if not os.path.isdir(self.folder):  # removed under us: the replace frees it
                self.passed += 1
                return None
            return ""
        except OSError:  # EPERM/EXDEV/EMLINK: a filesystem without (more) hard links here
            self.passed += 1
            return None
        self.kept += 1
        return kept

    def free(self, kept: str) -> None:
        """Let the thread unlink ``kept`` (from :meth:`keep`), now that the rename it was kept
        for is done: freed any earlier, the rename would free the file after all."""
        self._waiting.append(kept)

    def _run(self) -> None:
        swept_at: float | None = None  # the first sweep after the first emptying
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._empty()
            if self._stopping:
                self._empty()
                return
            if swept_at is None or time.monotonic() - swept_at >= SWEEP_EVERY_S:
                self._sweep()
                swept_at = time.monotonic()

    def _sweep(self) -> None:
        """Free what servers killed while writing left beside the phones' uploads (a file
        being written, a spare claimed: :func:`scratch_name`) once older than ``LEFT_AGE_S``;
        the trash is emptied between folders meanwhile."""
        try:
            folders = [e.path for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except OSError as exc:
            log.warning("could not look for leftovers in %s: %s", self.root, exc)
            return
        for number, folder in enumerate(folders):
            if self._stopping:
                return
            if number % 1000 == 999 and self._waiting:
                self._empty()
            try:
                names = [n for n in os.listdir(folder) if _SCRATCH.fullmatch(n)]
            except OSError:  # removed meanwhile, or the trash's own
                continue
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if time.time() - os.lstat(path).st_mtime > LEFT_AGE_S:
                        os.unlink(path)
                        self.swept += 1
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("could not free the leftover %s: %s", path, exc)

    def _empty(self) -> None:
        waiting, failed = self._waiting, 0
        for _ in range(len(waiting)):  # what is waiting now; later ones wait for the next
            name = waiting.popleft()
            try:
                os.unlink(name)
            except FileNotFoundError:  # another server's start emptied it
                pass
            except OSError as exc:
                failed += 1
                if failed == 1:  # one line a batch, not one a file
                    log.warning("could not free the replaced upload %s: %s", name, exc)
            self.freed += 1

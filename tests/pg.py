"""A throwaway PostgreSQL server for the tests, started from the machine's server binaries.

PostgreSQL refuses to run as root; under root the server runs as the unprivileged ``postgres``
user (created by Debian's postgresql package) in a directory it owns. It listens on an ephemeral
port on 127.0.0.1 only, trusts local connections, and is removed when the session ends; or, given
a ``kept`` directory (a benchmark's store, measured again later), it is made there the first time,
started on it again the next, and shut down cleanly, its data left in place.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

SUPERUSER = "fleetkey"


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder a kept server's user can reach (pytest's own are the owner's alone); a
    fixture of every test through tests/conftest.py."""
    folder = Path(tempfile.mkdtemp(prefix="fleetkey-kept-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def server_bindir() -> Path:
    """Where initdb and pg_ctl are: FLEETKEY_PG_BIN, PATH, or Debian's versioned directory."""
    if os.environ.get("FLEETKEY_PG_BIN"):
        return Path(os.environ["FLEETKEY_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not versions:
        raise RuntimeError(
            "PostgreSQL server binaries not found: install the postgresql package "
            "(.ci/run does) or set FLEETKEY_PG_BIN"
        )
    return Path(versions[-1]).parent


MEMORY = Path("/dev/shm")  # Debian's tmpfs, there for every process
MEMORY_ROOM = 2 * 1024**3  # free bytes it must have (a container's default 64 MiB has not)


def memory_folder() -> Path | None:
    """Where a throwaway cluster goes: the machine's tmpfs when it has ``MEMORY_ROOM`` free,
    else None (the temporary folder)."""
    try:
        found = os.statvfs(MEMORY)
    except OSError:
        return None
    return MEMORY if found.f_bavail * found.f_frsize >= MEMORY_ROOM else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    def __init__(self, *, durable: bool = False, kept: Path | None = None) -> None:
        self.bindir = server_bindir()
        self.kept = kept is not None
        if kept is None:
            # throwaway data not flushed: in memory when there is room (the session's cluster
            # was removed from a disk mounted with `discard` in 14-235 s, one trim per extent)
            where = None if durable else memory_folder()
            self.base = Path(tempfile.mkdtemp(prefix="fleetkey-pg-", dir=where))
        else:
            kept.mkdir(parents=True, exist_ok=True)
            self.base = kept.resolve()
        self.port = free_port()
        self.durable = durable
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}\n{tail}")

    def start(self) -> PostgresServer:
        """Make the cluster (unless a kept directory has one already) and start the server."""
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            if self.kept:
                self._reachable()
        data = self.base / "data"
        if self.kept and (data / "PG_VERSION").exists():
            self.resume()
            return self
        self._run(
            "initdb",
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.resume()
        return self

    def _reachable(self) -> None:
        """A kept directory must be one the server's user can reach (every folder above it
        searchable): said by name, not as initdb's "permission denied" on its data."""
        command = ["runuser", "-u", str(self.user), "--", "test", "-w", str(self.base)]
        if subprocess.run(command, capture_output=True, check=False, timeout=60).returncode:
            raise RuntimeError(
                f"{self.base}: the {self.user} user that runs PostgreSQL cannot reach this "
                "folder (a folder above it is not searchable by others): keep the server's "
                "data in a folder it can reach"
            )

    def resume(self) -> None:
        """Start the server (again, after ``pause``) on the same data and port."""
        settings = [
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base}",
            "-c max_connections=100",
        ]
        if not self.durable:  # throwaway test data: skip the disk flushes
            settings.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(
            "pg_ctl",
            "-D",
            str(self.base / "data"),
            "-l",
            str(self.base / "server.log"),
            "-o",
            " ".join(settings),
            "-w",
            "-t",
            "60",
            "start",
        )

    def pause(self) -> None:
        """Stop the server at once, as a crash or an outage does; ``resume`` starts it again."""
        self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop")

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL as users write it."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database at ``url`` (made by ``create_database``), whoever is still
        connected: the cluster keeps only the databases of the tests running."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def database(self, name: str) -> str:
        """The URL of database ``name``, made empty unless it exists (a kept server's store)."""
        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                connection.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)

    def stop(self) -> None:
        """Stop the server and remove its directory; a kept one is shut down cleanly (its
        buffers written: the data is not flushed as it goes) and left in place."""
        if self.kept:
            self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "fast", "-w", "-t", "100",
                      "stop")  # fmt: skip
            return
        try:
            self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

"""The data directory under faults and other local users, with the installed ``fleetkey`` run as a
user runs it (real subprocesses, umask 022, a real full tmpfs).

- everything under the data directory is private (directories 0700, files 0600), and ``init``
  brings back a directory an earlier version left readable, naming each change;
- a key that cannot be written for a full disk leaves no file and the previous key working;
- a batch whose rename fails changes nothing in the tree and records nothing in the store;
- a key encrypted the old way (PBKDF2, 2,048 iterations) still signs and ``keys rewrap``
  brings it to the current cost.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers import fleetkey_executable
from tests.tmpfs import fill, mounted_tmpfs, snapshot

PASSPHRASE = "pass phrase"  # noqa: S105  # the test's own throwaway passphrase
Run = Callable[..., subprocess.CompletedProcess[str]]


def runner(data: Path, cwd: Path) -> Run:
    env = {**os.environ, "FLEETKEY_DATA": str(data), "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE}
    env.pop("FLEETKEY_DB", None)

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*fleetkey_executable(), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
            umask=0o022,  # the usual default: what fleetkey makes is private by its own doing
        )
        assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}"
        return result

    return run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(data: Path, tmp_path: Path) -> Run:
    return runner(data, tmp_path)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def csv_of(tmp_path: Path, macs: range) -> Path:
    csv = tmp_path / f"batch-{macs.start}-{macs.stop}.csv"
    rows = "".join(f"0004f2{i:06x},vqmon,never\n" for i in macs)
    csv.write_text("mac,features,expires\n" + rows)
    return csv


class TestPrivate:
    def test_everything_fleetkey_writes_under_the_data_directory_is_owner_only(
        self, run: Run, data: Path, tmp_path: Path
    ) -> None:
        run("init")
        run("token")
        run("keys", "create", "--alg", "rsa2048", "--name", "second")
        run(
            "issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires", "never"
        )
        run("issue", "batch", "--csv", str(csv_of(tmp_path, range(5))))
        found = modes(data)
        assert "fleetkey.db" in found
        assert "keys/second.key.pem" in found
        assert "provisioning/0004f2000004-license.cfg" in found
        loose = {
            name: f"{bits:04o}"
            for name, bits in found.items()
            if bits != (0o700 if (data / name).is_dir() else 0o600)
        }
        assert loose == {}

    def test_init_makes_a_readable_data_directory_private_and_names_each_change(
        self, run: Run, data: Path
    ) -> None:
        run("init")
        (key_file,) = (data / "keys").glob("*.key.pem")
        for path, bits in [
            (data, 0o755),
            (data / "fleetkey.db", 0o644),
            (key_file, 0o644),
            (data / "features.toml", 0o664),
        ]:
            path.chmod(bits)
        result = run("init")
        assert f"made private (was readable by others): {data} 0755 -> 0700" in result.stderr
        assert f"{data / 'fleetkey.db'} 0644 -> 0600" in result.stderr
        assert f"{key_file} 0644 -> 0600" in result.stderr
        assert f"{data / 'features.toml'} 0664 -> 0600" in result.stderr
        assert set(modes(data).values()) == {0o700, 0o600}
        assert json.loads(run("init", "--json").stdout)["tightened"] == []


class TestFullDisk:
    def test_keys_create_fails_clearly_and_leaves_no_file_and_the_previous_key(
        self, tmp_path: Path
    ) -> None:
        with mounted_tmpfs(tmp_path / "disk") as disk:
            data = disk / "data"
            run = runner(data, tmp_path)
            run("init")
            keys_before = snapshot(data / "keys")
            listed = run("keys", "list", "--json").stdout
            fill(disk)
            result = run("keys", "create", "--name", "second", "--activate", code=1)
            assert result.stderr.startswith(
                f"error: cannot write (No space left on device): {data / 'keys' / 'second.key.pem'}"
            )
            assert "Traceback" not in result.stderr
            assert snapshot(data / "keys") == keys_before  # no 0-byte, partial or temporary file
            assert run("keys", "list", "--json").stdout == listed
            pem = run("keys", "export-public").stdout
            assert pem.startswith("-----BEGIN PUBLIC KEY-----")


class TestBatch:
    def test_a_rename_that_fails_leaves_the_tree_as_it_was_and_records_nothing(
        self, run: Run, data: Path, tmp_path: Path
    ) -> None:
        run("init")
        run("issue", "batch", "--csv", str(csv_of(tmp_path, range(5))))
        tree = data / "provisioning"
        (tree / "0004f2000007-license.cfg").mkdir()  # in the way of row 8
        before = snapshot(tree)
        result = run("issue", "batch", "--csv", str(csv_of(tmp_path, range(10))), code=1)
        assert "the batch was undone, no file changed" in result.stderr
        assert str(tree / "0004f2000007-license.cfg") in result.stderr
        assert snapshot(tree) == before
        licenses = json.loads(run("licenses", "list", "--json").stdout)
        assert len(licenses) == 5


class TestOldKeys:
    def test_a_key_written_the_old_way_signs_and_is_rewrapped_to_the_current_cost(
        self, run: Run, data: Path
    ) -> None:
        run("init")
        (key_file,) = (data / "keys").glob("*.key.pem")
        name = key_file.name.removesuffix(".key.pem")
        key = serialization.load_pem_private_key(key_file.read_bytes(), PASSPHRASE.encode())
        key_file.write_bytes(  # as fleetkey wrote it before: PBKDF2, 2,048 iterations
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(PASSPHRASE.encode()),
            )
        )
        (listed,) = json.loads(run("keys", "list", "--json").stdout)
        assert listed["protection"] == "pbkdf2 iterations=2048"
        assert f"key {name} is encrypted with pbkdf2 iterations=2048" in run("init").stderr
        run(
            "issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires", "never"
        )
        result = run("keys", "rewrap")
        assert result.stdout == f"{name}: scrypt N=131072 r=8 p=1 (was pbkdf2 iterations=2048)\n"
        (listed,) = json.loads(run("keys", "list", "--json").stdout)
        assert listed["protection"] == "scrypt N=131072 r=8 p=1"
        assert "already protected with scrypt" in run("keys", "rewrap").stdout
        events = json.loads(run("audit", "list", "--json").stdout)
        assert [e["subject"] for e in events if e["action"] == "key.rewrap"] == [name]
        run(
            "issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires", "never"
        )
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

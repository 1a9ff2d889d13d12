"""Batch issuing from CSV: every bad row reported, nothing written unless all are good, and a
failed write or rename undone."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from fleetkey.authority import batch as batch_module
from fleetkey.authority.batch import issue_batch, parse_batch_csv
from fleetkey.authority.files import read_license
from fleetkey.core.features import default_catalog
from fleetkey.core.terms import NEVER
from fleetkey.errors import InputError, RowError
from fleetkey.testing import signing_key_for, trusted_keys_for

from tests.tmpfs import fill, mounted_tmpfs, snapshot

HEADER = "mac,features,expires\n"


def parse(text: str | bytes) -> list[batch_module.BatchRow]:
    data = text.encode() if isinstance(text, str) else text
    return parse_batch_csv(data, default_catalog(), source="phones.csv")


class TestParse:
    def test_good_rows_become_terms(self) -> None:
        rows = parse(
            HEADER + "00:04:F2:00:00:01,vqmon;call-recording,never\n"
            "0004f2000002,corporate-directory,2027-01-31\n"
        )
        assert [r.mac for r in rows] == ["0004f2000001", "0004f2000002"]
        assert rows[0].terms == {3: NEVER, 4: NEVER}

    def test_utf8_bom_and_blank_lines_are_fine(self) -> None:
        rows = parse(("\ufeff" + HEADER + "\n0004f2000001,vqmon,never\n\n").encode())
        assert len(rows) == 1

    def test_every_bad_row_is_reported_with_its_line(self) -> None:
        text = HEADER + (
            "0004f2000001,vqmon,never\n"
            "nonsense,vqmon,never\n"
            "0004f2000002,fax,never\n"
            "0004f2000003,vqmon,someday\n"
            "0004f2000001,vqmon,never\n"
            "0004f2000004,vqmon\n"
            "0004f2000005,,never\n"
            "0004f2000006,vqmon;vqmon,never\n"
        )
        with pytest.raises(RowError) as caught:
            parse(text)
        problems = caught.value.problems
        assert problems == [
            "line 3: MAC 'nonsense' is not a MAC address: expected 12 hex digits",
            "line 4: unknown feature 'fax': expected one of corporate-directory, "
            "conference-management, nway-conference, vqmon, call-recording, "
            "enhanced-feature-keys, skype-for-business",
            "line 5: expiry 'someday' is not a date: expected YYYY-MM-DD or 'never'",
            "line 6: MAC 0004f2000001 is already on line 2",
            "line 7: 2 columns, expected 3",
            "line 8: no features: expected names separated by ';'",
            "line 9: feature 'vqmon' is named twice",
        ]
        assert "7 bad row(s), nothing was issued" in str(caught.value)

    @pytest.mark.parametrize(
        ("data", "fragment"),
        [
            (b"", "the file is empty"),
            (b"mac,features\n0004f2000001,vqmon\n", "header 'mac,features' is not usable"),
            (HEADER.encode(), "no rows after the header"),
            (HEADER.encode() + b"0004f2000001,vqmon,n\xe9ver\n", "line 2, byte 41 is not UTF-8"),
        ],
    )
    def test_unusable_files_are_refused(self, data: bytes, fragment: str) -> None:
        with pytest.raises(InputError, match=fragment):
            parse(data)


class TestIssue:
    @pytest.mark.parametrize("workers", [1, 2])
    def test_every_row_becomes_a_verified_file(self, tmp_path: Path, workers: int) -> None:
        rows = parse(HEADER + "".join(f"0004f2{i:06x},vqmon,2030-01-01\n" for i in range(40)))
        paths = issue_batch(rows, signing_key_for(), tmp_path, workers=workers).paths()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
        trusted = trusted_keys_for()
        for row, path in zip(rows, paths, strict=True):
            (key,) = read_license(path).keys
            assert key.serial == row.mac
            assert trusted.check(key).valid

    def test_progress_counts_every_license(self, tmp_path: Path) -> None:
        rows = parse(HEADER + "".join(f"0004f2{i:06x},vqmon,never\n" for i in range(1100)))
        counts: list[int] = []
        issue_batch(rows, signing_key_for(), tmp_path, progress=counts.append, workers=1)
        assert sum(counts) == 1100
        assert len(counts) == 3

    def test_failure_while_writing_leaves_no_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rows = parse(HEADER + "".join(f"0004f2{i:06x},vqmon,never\n" for i in range(1200)))
        real = batch_module._write_files
        calls: list[int] = []

        def failing(*args: object) -> int:
            calls.append(1)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            return real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(batch_module, "_write_files", failing)
        (tmp_path / "keep.cfg").write_text("operator file")
        with pytest.raises(OSError, match="No space left"):
            issue_batch(rows, signing_key_for(), tmp_path, workers=1)
        assert [p.name for p in tmp_path.iterdir()] == ["keep.cfg"]

    def test_existing_files_are_replaced(self, tmp_path: Path) -> None:
        rows = parse(HEADER + "0004f2000001,vqmon,never\n")
        (tmp_path / "0004f2000001-license.cfg").write_text("old")
        issue_batch(rows, signing_key_for(), tmp_path, workers=1)
        assert read_license(tmp_path / "0004f2000001-license.cfg").keys[0].serial == "0004f2000001"


class TestAllOrNothingOnDisk:
    """A batch that fails while writing or renaming leaves the directory exactly as it was."""

    ROWS = HEADER + "".join(f"0004f2{i:06x},vqmon,never\n" for i in range(10))

    def tree_with_earlier_files(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        for i in (1, 2, 3):  # licenses an earlier batch wrote, which this one replaces
            (directory / f"0004f2{i:06x}-license.cfg").write_text(f"earlier license {i}")
        (directory / "0004f2000005-license.cfg").symlink_to("0004f2000001-license.cfg")
        (directory / "phone1.cfg").write_text("operator file")

    @pytest.mark.parametrize("workers", [1, 2])
    def test_a_failed_rename_puts_back_every_file_the_batch_replaced(
        self, tmp_path: Path, workers: int
    ) -> None:
        self.tree_with_earlier_files(tmp_path)
        (tmp_path / "0004f2000007-license.cfg").mkdir()  # row 8's rename cannot succeed
        before = snapshot(tmp_path)
        with pytest.raises(IsADirectoryError, match="the batch was undone") as caught:
            issue_batch(parse(self.ROWS), signing_key_for(), tmp_path, workers=workers)
        assert caught.value.filename == str(tmp_path / "0004f2000007-license.cfg")
        assert snapshot(tmp_path) == before

    def test_a_rename_refused_by_the_file_system_undoes_the_batch(self, tmp_path: Path) -> None:
        self.tree_with_earlier_files(tmp_path)
        last = tmp_path / "0004f2000009-license.cfg"
        last.write_text("earlier license 9")
        subprocess.run(["chattr", "+i", str(last)], check=True)  # noqa: S607  # immutable: EPERM
        try:
            before = snapshot(tmp_path)
            with pytest.raises(PermissionError, match="the batch was undone") as caught:
                issue_batch(parse(self.ROWS), signing_key_for(), tmp_path, workers=1)
            assert caught.value.filename == str(last)
            assert snapshot(tmp_path) == before
        finally:
            subprocess.run(["chattr", "-i", str(last)], check=True)  # noqa: S607

    def test_a_full_disk_leaves_the_directory_as_it_was(self, tmp_path: Path) -> None:
        with mounted_tmpfs(tmp_path / "disk") as disk:
            self.tree_with_earlier_files(disk / "provisioning")
            fill(disk)
            before = snapshot(disk)
            with pytest.raises(OSError, match="No space left on device"):
                issue_batch(parse(self.ROWS), signing_key_for(), disk / "provisioning", workers=1)
            assert snapshot(disk) == before

    def test_a_successful_batch_leaves_no_hidden_file_and_private_modes(
        self, tmp_path: Path
    ) -> None:
        self.tree_with_earlier_files(tmp_path)
        issue_batch(parse(self.ROWS), signing_key_for(), tmp_path, workers=1)
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        replaced = tmp_path / "0004f2000001-license.cfg"
        assert read_license(replaced).keys[0].serial == "0004f2000001"
        assert stat.S_IMODE(replaced.stat().st_mode) == 0o600
        assert not (tmp_path / "0004f2000005-license.cfg").is_symlink()  # the link was replaced

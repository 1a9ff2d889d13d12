"""Issue and verify 100,000 phone licenses; compare with raw Ed25519 in the same run.

    .venv/bin/python bench/issue.py [--count 100000] [--dir DIR] [--json]

Figures, all measured now on this machine:
  raw sign        Ed25519 signatures/s of the same messages, one core (the issue's baseline)
  raw write       temp file + rename per license, no signing: the floor the file system sets
  issue (no I/O)  fleetkey sign + serialize, one core: fleetkey's own CPU cost
  issue batch     `fleetkey issue batch`'s code path: sign, serialize, write files (all cores)
  raw verify      Ed25519 verifications/s of the same signatures, one core
  verify          read + parse + check every file (`fleetkey inspect`'s path), 1 core / all cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleetkey.authority.batch import BatchRow, issue_batch
from fleetkey.authority.checking import check_files
from fleetkey.core.codec import serialize_keys
from fleetkey.core.issuing import KeyTemplate
from fleetkey.core.license import LicenseType
from fleetkey.core.signing import SigningKey, TrustedKeys
from fleetkey.core.terms import NEVER


def timed(function) -> float:  # type: ignore[no-untyped-def]
    os.sync()  # every phase starts with no dirty pages left by the one before
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def filesystem(path: Path) -> str:
    command = ["/usr/bin/df", "--output=fstype", str(path)]  # our own temporary directory
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = result.stdout.split()
    return lines[-1] if result.returncode == 0 and lines else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to write the files (default: a fresh temporary directory)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count: int = args.count
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-", dir=args.dir))
    try:
        results = run(count, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "filesystem": filesystem(base.parent),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{count} phone licenses, {results['machine']['cpus']} cores, "
        f"files on {results['machine']['filesystem']} ({base.parent})"
    )
    for name, rate in results["rates"].items():
        print(f"  {name:<16} {rate:>10,.0f} /s")
    for name, ratio in results["ratios"].items():
        print(f"  {name:<54} {ratio:.2f}x")


def run(count: int, base: Path) -> dict[str, dict[str, float]]:
    key = SigningKey.generate()
    trusted = TrustedKeys([("bench", key.public)])
    template = KeyTemplate.for_terms(LicenseType.PHONE, {0: NEVER, 3: NEVER, 4: NEVER})
    macs = [f"0004f2{i:06x}" for i in range(count)]
    messages = [template.message(mac) for mac in macs]
    raw = key._key  # the cryptography object itself: the baseline without fleetkey

    signatures: list[bytes] = []
    raw_sign = timed(lambda: signatures.extend(raw.sign(m) for m in messages))
    sample = serialize_keys([template.issue(macs[0], key)])

    write_dir = base / "raw-write"
    write_dir.mkdir()

    def raw_write() -> None:
        for mac in macs:
            target = write_dir / f"{mac}-license.cfg"
            temp = write_dir / f".{mac}.tmp"
            temp.write_bytes(sample)
            os.replace(temp, target)

    raw_write_s = timed(raw_write)
    no_io = timed(lambda: [serialize_keys([template.issue(mac, key)]) for mac in macs])
    rows = [BatchRow(mac, {0: NEVER, 3: NEVER, 4: NEVER}) for mac in macs]
    out = base / "issued"
    paths: list[Path] = []
    batch_s = timed(lambda: paths.extend(issue_batch(rows, key, out).paths()))
    assert len(list(out.iterdir())) == count

    public = raw.public_key()
    raw_verify = timed(
        lambda: [public.verify(s, m) for s, m in zip(signatures, messages, strict=True)]
    )

    def verify_files(workers: int) -> None:
        for result in check_files(paths, trusted, workers=workers):
            if not result.ok:
                raise SystemExit(f"{result.path} does not verify: {result.error or result.checks}")

    verify_1_s = timed(lambda: verify_files(1))
    verify_all_s = timed(lambda: verify_files(os.cpu_count() or 1))
    rates = {
        "raw sign": count / raw_sign,
        "raw write": count / raw_write_s,
        "issue (no I/O)": count / no_io,
        "issue batch": count / batch_s,
        "raw verify": count / raw_verify,
        "verify (1 core)": count / verify_1_s,
        "verify (cores)": count / verify_all_s,
    }
    ratios = {
        "issue batch / raw sign (target >= 0.6)": rates["issue batch"] / rates["raw sign"],
        "issue batch / raw write (the file system's floor)": rates["issue batch"]
        / rates["raw write"],
        "issue (no I/O, 1 core) / raw sign": rates["issue (no I/O)"] / rates["raw sign"],
        "verify files, all cores / raw verify (target >= 0.8)": rates["verify (cores)"]
        / rates["raw verify"],
        "verify files, 1 core / raw verify": rates["verify (1 core)"] / rates["raw verify"],
    }
    return {"rates": rates, "ratios": ratios}


if __name__ == "__main__":
    sys.exit(main())

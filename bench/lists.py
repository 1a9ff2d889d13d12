"""`fleetkey phones list` on a store of 100,000 phones: the first page, a deep page, everything.

    .venv/bin/python bench/lists.py [--phones 100000] [--sites 3] [--whole] [--json]

Builds a fresh data directory (SQLite) with the phones spread over the sites through
`fleetkey phones import`, then times, best of --repeat runs:
  in-process   the command run through click in this process: fleetkey's own work
  command      the installed `fleetkey` as a user runs it, interpreter and imports included
for the first page of the whole inventory and of one site, a page deep in the site
(`--after`), and `--json` of every phone. `--whole` also times the table of every phone
(`--limit 0`), which is what `phones list` printed before it paged (slow: tens of seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PASSPHRASE = "bench"  # noqa: S105  # a throwaway data directory's passphrase


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def build(data: Path, phones: int, sites: int) -> list[str]:
    env = {**os.environ, "FLEETKEY_DATA": str(data), "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE}
    command = [sys.executable, "-m", "fleetkey"]
    subprocess.run([*command, "init"], env=env, check=True, capture_output=True)
    serials = [f"1000000000{n:02d}" for n in range(1, sites + 1)]
    for serial in serials:
        subprocess.run(
            [*command, "sites", "add", serial, "--name", f"site {serial}", "--tz", "UTC",
             "--window", "01:00-05:00"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
    csv = data.parent / "phones.csv"
    rows = (f"0004f2{i:06x},{serials[i % sites]},VVX_500,5.9.7.4477\n" for i in range(phones))
    csv.write_text("mac,site,model,firmware\n" + "".join(rows))
    subprocess.run([*command, "phones", "import", str(csv)], env=env, check=True)
    return serials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--whole", action="store_true", help="also the table of every phone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # bench/http.py would stand in for the standard library's http (httpx imports it)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    from click.testing import CliRunner

    from fleetkey.cli.main import cli

    folder = Path(tempfile.mkdtemp(prefix="fleetkey-bench-lists-"))
    try:
        data = folder / "data"
        started = time.perf_counter()
        serials = build(data, args.phones, args.sites)
        built_s = time.perf_counter() - started
        os.environ["FLEETKEY_DATA"] = str(data)
        os.environ["COLUMNS"] = "80"
        runner = CliRunner()
        deep = f"0004f2{args.phones * 2 // 3:06x}"
        cases = {
            "first page": ["phones", "list"],
            "first page of a site": ["phones", "list", "--site", serials[-1]],
            "a deep page of a site": ["phones", "list", "--site", serials[-1], "--after", deep],
            "--json, every phone": ["phones", "list", "--json"],
        }
        if args.whole:
            cases["table of every phone"] = ["phones", "list", "--limit", "0"]
        fleetkey = shutil.which("fleetkey") or str(Path(sys.executable).parent / "fleetkey")
        results = []
        for name, argv in cases.items():

            def in_process(argv: list[str] = argv) -> None:
                result = runner.invoke(cli, argv, catch_exceptions=False)
                assert result.exit_code == 0, result.output

            def command(argv: list[str] = argv) -> None:
                subprocess.run([fleetkey, *argv], check=True, stdout=subprocess.DEVNULL)

            results.append(
                {
                    "case": name,
                    "argv": " ".join(argv),
                    "in_process_s": round(best_of(args.repeat, in_process), 3),
                    "command_s": round(best_of(args.repeat, command), 3),
                }
            )
        version_s = best_of(
            args.repeat,
            lambda: subprocess.run([fleetkey, "--version"], check=True, capture_output=True),
        )
        document = {
            "phones": args.phones,
            "sites": args.sites,
            "build_s": round(built_s, 1),
            "fleetkey_version_s": round(version_s, 3),
            "load_average": os.getloadavg(),
            "results": results,
        }
        if args.json:
            print(json.dumps(document, indent=2))
            return
        print(
            f"{args.phones:,} phones at {args.sites} sites (built in {built_s:.0f} s); "
            f"`fleetkey --version` {version_s:.2f} s; load {os.getloadavg()[0]:.1f}"
        )
        print(f"{'case':26} {'in-process':>10} {'command':>9}  arguments")
        for row in results:
            print(
                f"{row['case']:26} {row['in_process_s']:>9.3f}s {row['command_s']:>8.3f}s  "
                f"{row['argv']}"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

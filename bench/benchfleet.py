"""What the benchmarks share: a throwaway data directory with N signed phone licenses."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fleetkey.serve.mounts import mount_of

FLEETKEY: Final = [sys.executable, "-m", "fleetkey"]
# wrk's request script: GET <mac>-license.cfg of `files` phones in turn (bench/http.py)
LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/0004f2%%06x-license.cfg", counter %% %(files)d)%(extra)s)
end
"""


def wrk_options(parser: argparse.ArgumentParser, workers: int) -> None:
    """The options of a wrk measurement over license files (bench/http.py, contention.py)."""
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=workers)


def wrk_script(base: Path, files: int, mode: str) -> Path:
    """``base/<mode>.lua``: wrk's requests over ``files`` license files, with keep-alive
    (``keep-alive``) or ``Connection: close`` (``close``)."""
    extra = {"keep-alive": "", "close": ', {["Connection"] = "close"}'}[mode]
    script = base / f"{mode}.lua"
    script.write_text(LUA % {"files": files, "extra": extra})
    return script


def filesystem(path: Path) -> dict[str, str | bool | None]:
    """The filesystem holding ``path``: its type, device and mount options (as the server
    reads them, ``serve.mounts.mount_of``), and for ext4 whether it has a journal
    (sysfs: ``journal_task`` reads ``<none>`` without one; None: not ext4, or unknown).
    Unreadable (off Linux, or no such path): every field None."""
    try:
        device = os.stat(path).st_dev
    except OSError:
        device = None
    found = mount_of(path) if device is not None else None
    if device is None or found is None:
        return {"type": None, "device": None, "options": None, "journal": None}
    journal: bool | None = None
    if found.type == "ext4":  # sysfs names the block device as the kernel does (vda, loop0, dm-0)
        block = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve().name
        try:
            journal = (Path("/sys/fs/ext4") / block / "journal_task").read_text().strip() != (
                "<none>"
            )
        except OSError:  # no sysfs entry for it: unknown
            journal = None
    options = ",".join(sorted(found.options))
    return {"type": found.type, "device": found.source, "options": options, "journal": journal}


def files_on(base: Path, tmp: str | None) -> tuple[dict[str, str | bool | None], list[str]]:
    """The filesystem of a run's files under ``base`` (made in ``tmp``, or the system's
    temporary directory) and its words; a warning is said at once on stderr too, so a run on
    such a disk can be stopped early."""
    disk = filesystem(base)
    said = describe_filesystem(Path(tmp or tempfile.gettempdir()), disk)
    if len(said) > 1:
        print("\n".join(said), file=sys.stderr)
    return disk, said


def describe_filesystem(path: Path, found: dict[str, str | bool | None]) -> list[str]:
    """``found`` (``filesystem``) in words, with a warning when the disk favours fleetkey:
    ext4 without a journal and mounted with ``discard`` (measured, docs/serve.md; with a
    journal, with or without ``discard``, the storm's ratio was the same)."""
    if found["type"] is None:
        return [f"files on {path}: filesystem unknown"]
    options = str(found["options"]).split(",")
    discard = "discard" in options
    said = [str(found["type"]), str(found["device"])]
    if found["journal"] is not None:
        said.append("journal" if found["journal"] else "NO journal")
    if discard:
        said.append("discard")
    lines = [f"files on {path}: {', '.join(said)}"]
    if discard and found["journal"] is False:
        lines += [
            "  warning: ext4 without a journal, mounted with discard: freeing a replaced",
            "  file waits for the device (nginx's uploads; fleetkey's spares free none),",
            "  which favours fleetkey (docs/serve.md: 0.78-0.83x nginx here, 0.47-0.48x",
            "  on a journaled ext4). Compare on a journaled filesystem too (--tmp DIR)",
        ]
    return lines


def bench_env(base: Path) -> dict[str, str]:
    """The environment for fleetkey commands on ``base/data`` (SQLite, a known passphrase)."""
    env = {**os.environ, "FLEETKEY_DATA": str(base / "data"), "FLEETKEY_KEY_PASSPHRASE": "bench"}
    env.pop("FLEETKEY_DB", None)
    return env


def issue_phone_licenses(base: Path, env: dict[str, str], count: int) -> Path:
    """`fleetkey init`, then one phone license per MAC 0004f2000000…; returns the tree."""
    subprocess.run([*FLEETKEY, "init"], env=env, check=True, capture_output=True)
    csv = base / "fleet.csv"
    csv.write_text(
        "mac,features,expires\n" + "".join(f"0004f2{i:06x},vqmon,never\n" for i in range(count))
    )
    subprocess.run(
        [*FLEETKEY, "issue", "batch", "--csv", str(csv)], env=env, check=True, capture_output=True
    )
    return base / "data" / "provisioning"


def open_tree_to_baselines(base: Path) -> None:
    """Let baseline servers that run as another user (nginx's worker, in.tftpd) read the
    provisioning tree: fleetkey keeps its data directory 0700 and its files 0600."""
    data = base / "data"
    data.chmod(0o711)  # traverse only: the keys and the database stay private
    tree = data / "provisioning"
    tree.chmod(0o755)
    for folder, dirs, files in os.walk(tree):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)  # noqa: S103  # read by the baseline
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def start_fleetkey(
    env: dict[str, str],
    base: Path,
    workers: int,
    pin: Sequence[str] = (),
    options: Sequence[str] = (),
) -> tuple[subprocess.Popen[str], str]:
    """``fleetkey serve --http 127.0.0.1:0 --workers N [options]`` (after ``pin``, a taskset
    prefix) on ``base/data``: the process and the URL its banner names
    (``http://127.0.0.1:PORT``)."""
    process = subprocess.Popen(
        [*pin, *FLEETKEY, "serve", "--http", "127.0.0.1:0", "--workers", str(workers), *options],
        env=env,
        cwd=base,  # not bench/: its http.py would shadow the standard library's
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline().split()  # fleetkey serving http://HOST:PORT ...
    if len(banner) < 3:
        raise SystemExit(f"fleetkey serve did not start: {process.communicate()[1]}")
    return process, banner[2]


def stop_servers(servers: list[subprocess.Popen[str]]) -> str:
    """SIGTERM every server, wait for each (killed after 120 s), and return the last line the
    last one printed: fleetkey's stop summary when fleetkey is started last."""
    for server in servers:
        server.send_signal(signal.SIGTERM)
    summary = ""
    for server in servers:
        try:
            out, _ = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        if server is servers[-1] and out:
            summary = out.strip().splitlines()[-1]
    return summary


def need(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin")
    if found is None:
        raise SystemExit(f"this benchmark needs {program}: apt-get install -y wrk nginx")
    return found


def pinned(core: int, workers: int) -> list[str]:
    """One worker: each program on its core (taskset); several: nothing pinned."""
    return ["taskset", "-c", str(core)] if workers == 1 else []


def wrk(
    url: str, script: Path, seconds: int, connections: int, workers: int = 1
) -> tuple[float, float]:
    result = subprocess.run(
        [
            *pinned(1, workers),
            need("wrk"),
            f"-t{workers}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", result.stdout)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx answers during the run")
    return rps, float(p99.group(1)) * scale


TICKS: Final = os.sysconf("SC_CLK_TCK")


def _family(pid: int, *, required: bool = False) -> list[int]:
    """A server's process and its live children (its workers; nginx's master and worker).
    ``required``: a kernel without the children file is an error, not a server alone."""
    children = f"/proc/{pid}/task/{pid}/children"
    try:
        found = Path(children).read_text().split()
    except OSError:
        if required:
            raise SystemExit(f"{children} cannot be read: cannot find its workers") from None
        found = []
    return [pid, *map(int, found)]


def _stat_ticks(path: str, reaped: bool = False) -> tuple[int, int]:
    """User and system clock ticks of a /proc ``stat`` file (the fields after the command's
    closing parenthesis: utime is the 12th, stime the 13th); a process's counts its ended
    threads too. ``reaped``: with its ended and reaped children's (cutime, cstime)."""
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    if reaped:
        return int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])
    return int(fields[11]), int(fields[12])


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a process and of each of its live children (a server's
    workers), by process id."""
    spent = {}
    for each in _family(pid):
        try:
            user, system = _stat_ticks(f"/proc/{each}/stat")
        except OSError:
            continue
        spent[each] = (user + system) / TICKS
    return spent


def thread_cpu(pid: int) -> dict[str, tuple[float, float]]:
    """User and system CPU seconds of a server (the process and its live children), by kind
    of thread: ``loop`` the main thread of each process (fleetkey's event loop, nginx's
    master and worker, and the workers that ended and were reaped), ``other`` the rest of each
    process's time (fleetkey's record writer, its sightings and view refresh on the default
    executor, its digest thread; ended threads included, as the process's own count keeps
    them)."""
    loop, whole = [0, 0], [0, 0]
    for process in _family(pid, required=True):
        try:  # a worker that ended and was reaped since: in its parent's count (reaped)
            main = _stat_ticks(f"/proc/{process}/task/{process}/stat", reaped=process == pid)
            total = _stat_ticks(f"/proc/{process}/stat", reaped=process == pid)
        except FileNotFoundError:
            if process == pid:
                raise SystemExit(f"process {pid} is gone: its CPU cannot be read") from None
            continue
        for index in (0, 1):
            loop[index] += main[index]
            whole[index] += total[index]
    return {
        "loop": (loop[0] / TICKS, loop[1] / TICKS),
        "other": ((whole[0] - loop[0]) / TICKS, (whole[1] - loop[1]) / TICKS),
    }


def cpu_a_request(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], requests: int
) -> dict[str, dict[str, float]]:
    """What two ``thread_cpu`` readings spent a request, µs, by kind of thread and in all."""
    if requests < 1:
        raise SystemExit("no answers between the two readings: no CPU a request")
    scale = 1e6 / requests
    spent = {
        kind: {
            "user_us": (after[kind][0] - before[kind][0]) * scale,
            "system_us": (after[kind][1] - before[kind][1]) * scale,
        }
        for kind in ("loop", "other")
    }
    spent["all"] = {
        part: spent["loop"][part] + spent["other"][part] for part in ("user_us", "system_us")
    }
    return spent


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (a server's workers)."""
    return sum(cpu_by_process(pid).values())


def worker_shares(before: dict[int, float], after: dict[int, float], wall: float) -> list[float]:
    """Each worker's CPU between two ``cpu_by_process`` readings, % of a core, the
    supervisor (the first process) left out: whether the kernel spread the load."""
    return [100 * (after[pid] - before.get(pid, 0.0)) / wall for pid in list(after)[1:]]

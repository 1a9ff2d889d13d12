"""Boot traffic: a fleet's boot requests to `fleetkey serve` next to nginx, same tree, same run.

    .venv/bin/python bench/boot.py [--phones 20000] [--concurrency 256] [--tagged 0.25]
                                   [--seconds 10] [--rounds 3] [--tmp DIR] [--poll] [--json]

Needs gcc, nginx (with the DAV module, as Debian builds it) and taskset (`apt-get install -y
nginx gcc`). What a real fleet sends when it boots (the domain notes §5.1: a VVX 500 on UC
5.9.7, the SoundPoint TFTP log): 11 requests a boot, SEQUENCE below. The boot log PUT with
the updater's User-Agent, `<mac>.cfg` (404), the master config `000000000000.cfg` (200), the
part-number firmware name (404; no image is downloaded: that is bandwidth, not requests), the
two override files (404), the site license (200) and the phone license (200 for the tenth of
the phones that have one, else 404), the two directory files (404, 200) and the application
log PUT: about 54 % of the answers are 404s. Every phone has its own source address
(127.20.x.y), a quarter of them tag `(SN:<mac>)` in their User-Agent (the rest send Polycom's
default), 256 boot at once, each over one keep-alive connection (`keep-alive`) or with a
connection per request and `Connection: close` (`close`); a slot whose boot ends takes the
next of the 20,000 phones, round-robin, so an address comes back every 20,000 boots.

The fleet is built with the CLI: 20 sites of 1,000 phones (`sites add`, `phones import`), a
site license per site (`issue site`), phone licenses for every tenth phone (`issue batch`),
and the master config and a directory file in the provisioning tree. nginx: 1 worker, access
log on (and the error log, which notes every 404, as shipped), root = that tree, the logs
PUT through the DAV module (`dav_methods PUT`) into a directory per phone, as fleetkey stores
them in `<data>/uploads/<mac>/`. Before the rounds every phone PUTs its two logs once to each
server (the seed pass), so the measured PUTs replace files (204), as for a fleet that booted
before.

The load generator is bench/bootload.c (C, one epoll thread; compiled here with gcc -O2 into
the run's temporary directory): it parses every answer, counts statuses, errors and latency
per request of the boot, and reports its own CPU use; the share of core 1 that was busy
(loopback TCP work the kernel does on the generator's side included) tells whether it was
the bottleneck. Servers on core 0, the generator on core 1. Both servers run from the start;
each round measures them in turn (the order turned every round; this VM's speed drifts by up
to 25 % over minutes) and the figures are medians over the rounds. At the end fleetkey is
stopped with SIGTERM (it writes every record before exiting) and the fetch records in its
database are compared, status by status, with every answer the generator received from it
(seed pass and warm-ups included).

Each server's CPU a request (user and system, its threads' from /proc, warm-up included, read
1.5 s after each run) is printed with the budget the target sets: at 0.8x nginx's rate a
request may cost fleetkey at most 1/(0.8 x nginx's rate) of core 0, and what system time
(sockets, files; fleetkey's own, and, as an estimate, nginx's, as the kernel's share shrinks
when a server gets faster; neither is a bound) leaves of that is what its Python may spend,
round by round, and by how much fleetkey's user time overran it. On loopback a write to a
socket whose reader sleeps wakes that reader inside the writer's system call (an
inter-processor interrupt, ~5-10 µs here), so the slower server, whose generator sleeps more,
pays more system time a request; `--poll` makes bootload poll instead of sleep (its core always
busy; the share of its time that found nothing to do then says its headroom), which takes that
cost out for both servers, as a network does (a real phone is woken on its own machine; the
rest of loopback's receive work still lands on the sender).

Files live in the system's temporary directory like the other benchmarks. Replacing a file
frees the old one's blocks, and this VM's ext4 is mounted with `discard`, so each replacing
PUT waits on the disk: nginx's worker waits with it (5-13 % iowait on core 0, and its rate
falls from round to round), fleetkey's event loop too until it sees the wait and writes them on
worker threads (serve/http/putting.py). `--tmp /dev/shm` takes the disk out for both.

The generator's ceiling: keep-alive, ~35 % of core 1 at 30,000 req/s. With a connection per
request most of the work is the kernel's, and on loopback the connecting side also does the
listening side's handshake work: bootload's core is full at ~21,000 req/s, which nginx nears
with the files on tmpfs (then nginx's `close` figure is a floor). Compare bootload's CPU and
core 1's busy share with the rate before trusting a `close` ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchfleet import (
    FLEETKEY,
    bench_env,
    cpu_a_request,
    files_on,
    need,
    open_tree_to_baselines,
    start_fleetkey,
    thread_cpu,
)

# One boot, in order (domain notes §5.1). {mac} is the phone's MAC; the stage ends the
# User-Agent (`FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 [(SN:<mac>)] Type/<stage>`).
SEQUENCE: Final = """\
# method  path                            stage         body bytes   answer expected
PUT       /{mac}-boot.log                 Updater       2048         # 201 first, then 204
GET       /{mac}.cfg                      Application   0            # 404
GET       /000000000000.cfg               Application   0            # 200, master config
GET       /2345-12500-001.sip.ld          Application   0            # 404, part-number image
GET       /{mac}-phone.cfg                Application   0            # 404
GET       /{mac}-web.cfg                  Application   0            # 404
GET       /000000000000-license.cfg       Application   0            # 200, site license
GET       /{mac}-license.cfg              Application   0            # 200 for 10 %, else 404
GET       /{mac}-directory.xml            Application   0            # 404
GET       /000000000000-directory.xml     Application   0            # 200
PUT       /{mac}-app.log                  Application   2048         # 201 first, then 204
"""

SEQUENCE_STEPS: Final = [line for line in SEQUENCE.splitlines() if not line.startswith("#")]
# before the rounds every phone PUTs its two logs once (as a fleet that booted before)
SEED_STEPS: Final = [line for line in SEQUENCE_STEPS if line.startswith("PUT")]

MASTER_CONFIG: Final = """\
<?xml version="1.0" standalone="yes"?>
<!-- Default Master SIP Configuration File -->
<!-- Edit and rename this file to <Ethernet-address>.cfg for each phone. -->
<!-- $Revision: 1.14 $  $Date: 2005/07/27 18:43:30 $ -->
<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone1.cfg, sip.cfg" MISC_FILES=""
 LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY="" LICENSE_DIRECTORY=""
 USER_PROFILES_DIRECTORY="" CALL_LISTS_DIRECTORY="" COREFILE_DIRECTORY="">
%s</APPLICATION>
"""

MODELS: Final = (
    "SPIP300", "SPIP301", "SPIP320", "SPIP330", "SPIP335", "SPIP430", "SPIP450", "SPIP500",
    "SPIP501", "SPIP550", "SPIP560", "SPIP600", "SPIP601", "SPIP650", "SPIP670", "SSIP4000",
)  # fmt: skip

DIRECTORY: Final = """\
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<directory>
 <item_list>
  <item><ln>Reception</ln><fn>Front desk</fn><ct>100</ct><sd>1</sd></item>
  <item><ln>Support</ln><fn>IT</fn><ct>200</ct><sd>2</sd></item>
  <item><ln>Emergency</ln><fn>Security</fn><ct>555</ct><sd>3</sd></item>
 </item_list>
</directory>
"""

NGINX: Final = """
worker_processes %(workers)d;
daemon off;
pid %(base)s/nginx.pid;
error_log %(base)s/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log %(base)s/access.log;
  sendfile on;
  client_body_temp_path %(base)s/nginx-body;
  server {
    listen 127.0.0.1:%(port)d;
    root %(root)s;
    # one directory per phone, as fleetkey stores them (<data>/uploads/<mac>/<mac>-boot.log):
    # all in one directory, ext4 allocating inodes among the temporary files' churn held
    # nginx's single worker to ~1,600 PUTs/s here
    location ~ "^/(?<mac>[0-9a-fA-F]{12})-(?<kind>[a-zA-Z]+\\.log)$" {
      alias %(uploads)s/$mac/$mac-$kind;
      dav_methods PUT;
      create_full_put_path on;
    }
  }
}
"""

SERVERS: Final = ("nginx", "fleetkey")
MODES: Final = ("keep-alive", "close")
TARGET: Final = 0.8  # issue 16: fleetkey's rate a fraction of nginx's, on one core
SETTLE_S: Final = 1.5  # after a run, before its CPU is read: the writer's last commit and the
# once-a-second sightings and view refresh of its answers land in that run, not the next


def build_fleet(base: Path, env: dict[str, str], phones: int, sites: int) -> Path:
    """Sites, inventory, site and phone licenses with the CLI; returns the provisioning tree."""

    def fleetkey(*command: str) -> None:
        done = subprocess.run(
            [*FLEETKEY, *command], env=env, capture_output=True, text=True, cwd=base
        )
        if done.returncode != 0:
            raise SystemExit(f"fleetkey {' '.join(command)}: {done.stderr.strip()}")

    fleetkey("init")
    serials = [f"1000000{site + 1:05d}" for site in range(sites)]
    for number, serial in enumerate(serials, 1):
        fleetkey("sites", "add", serial, "--name", f"Site {number}", "--tz", "UTC",
                 "--window", "22:00-05:00")  # fmt: skip
    inventory = base / "phones.csv"
    inventory.write_text(
        "mac,site,model\n"
        + "".join(f"0004f2{i:06x},{serials[i * sites // phones]},VVX 500\n" for i in range(phones))
    )
    fleetkey("phones", "import", str(inventory))
    for serial in serials:  # the first site is also the tree's default, which nginx serves
        default = ["--default-site"] if serial == serials[0] else []
        fleetkey("issue", "site", "--serial", serial, "--features", "corporate-directory",
                 "--expires", "never", *default)  # fmt: skip
    licensed = base / "licensed.csv"
    licensed.write_text(
        "mac,features,expires\n"
        + "".join(f"0004f2{i:06x},vqmon,never\n" for i in range(0, phones, 10))
    )
    fleetkey("issue", "batch", "--csv", str(licensed))
    tree = base / "data" / "provisioning"
    overrides = "".join(
        f' <APPLICATION_{model} APP_FILE_PATH_{model}="sip.ld" '
        f'CONFIG_FILES_{model}="phone1.cfg, sip.cfg"/>\n'
        for model in MODELS
    )
    (tree / "000000000000.cfg").write_text(MASTER_CONFIG % overrides)
    (tree / "000000000000-directory.xml").write_text(DIRECTORY)
    return tree


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run's directory as bench/boot.py and bench/storm.py start from it."""

    bootload: Path  # the generator, compiled
    sequence: Path  # one boot (SEQUENCE)
    seed: Path  # the seed pass: the boot's two log PUTs (SEED_STEPS)
    nginx_conf: Path  # nginx on the provisioning tree, the logs PUT into a folder per phone
    nginx_port: int


def prepare(
    base: Path, env: dict[str, str], phones: int, sites: int, nginx_workers: int = 1
) -> Prepared:
    """Compile bootload, write the boot and the seed pass, build the fleet with the CLI, open
    its tree to nginx and configure nginx (``nginx_workers`` workers) with its upload folders."""
    bootload = base / "bootload"
    source = Path(__file__).with_name("bootload.c")
    subprocess.run([need("gcc"), "-O2", "-o", str(bootload), str(source)], check=True)
    sequence = base / "sequence.txt"
    sequence.write_text(SEQUENCE)
    seed = base / "seed.txt"
    seed.write_text("".join(f"{line}\n" for line in SEED_STEPS))
    tree = build_fleet(base, env, phones, sites)
    open_tree_to_baselines(base)
    uploads = base / "nginx-uploads"
    for directory in (uploads, base / "nginx-body"):
        directory.mkdir()
        directory.chmod(0o777)  # written by nginx's unprivileged worker
    nginx_conf = base / "nginx.conf"
    nginx_port = free_port()
    nginx_conf.write_text(
        NGINX
        % {
            "base": base,
            "port": nginx_port,
            "root": tree,
            "uploads": uploads,
            "workers": nginx_workers,
        }
    )
    return Prepared(bootload, sequence, seed, nginx_conf, nginx_port)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[str], name: str) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode} before listening")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{name} is not listening on port {port}")


def cores() -> dict[str, list[int]]:
    """Jiffies so far of cores 0 and 1 (user … steal), from /proc/stat."""
    return {
        line.split()[0]: [int(v) for v in line.split()[1:9]]
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith(("cpu0 ", "cpu1 "))
    }


def shares(before: list[int], after: list[int]) -> dict[str, float]:
    """Busy, iowait and softirq shares (%) of one core between two readings."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = max(1, sum(spent))
    idle, iowait, softirq = spent[3], spent[4], spent[6]
    return {
        "busy": 100.0 * (total - idle - iowait) / total,
        "iowait": 100.0 * iowait / total,
        "softirq": 100.0 * softirq / total,
    }


def generate(
    bootload: Path,
    sequence: Path,
    port: int,
    mode: str,
    first: int,
    args: argparse.Namespace,
    *extra: str,
) -> dict[str, Any]:
    before = cores()
    result = subprocess.run(
        [
            "taskset", "-c", "1", str(bootload),
            "--port", str(port),
            "--sequence", str(sequence),
            "--phones", str(args.phones),
            "--concurrency", str(args.concurrency),
            "--tagged", str(args.tagged),
            "--mode", mode.replace("-", ""),
            "--warmup", str(args.warmup),
            "--seconds", str(args.seconds),
            "--first", str(first),
            # floor.py's args have no poll (its bare server is measured sleeping, as it was)
            "--poll", "1" if getattr(args, "poll", False) else "0",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.warmup + args.seconds + 600,
    )  # fmt: skip
    after = cores()
    run: dict[str, Any] = json.loads(result.stdout)
    # the whole run, warm-up included; core 1's share includes the loopback's softirq work
    # done on the generator's side (and anything else the machine ran there meanwhile)
    run["core0"] = shares(before["cpu0"], after["cpu0"])
    run["core1"] = shares(before["cpu1"], after["cpu1"])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=20_000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=256, help="phones booting at once")
    parser.add_argument("--tagged", type=float, default=0.25, help="share tagging (SN:<mac>)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--tmp", help="directory for the run's files (default: the system's; /dev/shm: no disk)"
    )
    parser.add_argument(
        "--poll",
        action="store_true",
        help="bootload polls instead of sleeping: no server pays for waking it (see bootload.c)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-boot-", dir=args.tmp))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    disk, said = files_on(base, args.tmp)
    env = bench_env(base)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {mode: [] for mode in MODES} for name in SERVERS
    }
    seeds: dict[str, dict[str, Any]] = {}
    summary = ""
    recorded: dict[str, int] = {}
    try:
        ready = prepare(base, env, args.phones, args.sites)
        bootload, sequence, nginx_port = ready.bootload, ready.sequence, ready.nginx_port
        nginx_program = need("nginx")
        # fleetkey first: one that does not start leaves no nginx behind
        server, url = start_fleetkey(env, base, 1, ["taskset", "-c", "0"])
        nginx = subprocess.Popen(
            ["taskset", "-c", "0", nginx_program, "-c", str(ready.nginx_conf)], text=True
        )
        try:
            ports = {"nginx": nginx_port, "fleetkey": int(url.rsplit(":", 1)[1])}
            pids = {"nginx": nginx.pid, "fleetkey": server.pid}
            wait_listening(nginx_port, nginx, "nginx")
            wait_listening(ports["fleetkey"], server, "fleetkey serve")
            time.sleep(1)
            # phones that booted before: their logs exist, so the measured PUTs replace them
            for name in SERVERS:
                seeds[name] = generate(
                    bootload, ready.seed, ports[name], "keep-alive", 0, args,
                    "--boots", str(args.phones), "--warmup", "0", "--seconds", "3600",
                )  # fmt: skip
            first = dict.fromkeys(SERVERS, 0)  # each server's fleet goes round from run to run
            for number in range(args.rounds):
                names = SERVERS if number % 2 == 0 else SERVERS[::-1]
                for name in names:
                    for mode in MODES:
                        before = thread_cpu(pids[name])
                        run = generate(bootload, sequence, ports[name], mode, first[name], args)
                        time.sleep(SETTLE_S)  # fleetkey's writer and refreshes finish the run
                        run["server_cpu"] = cpu_a_request(
                            before, thread_cpu(pids[name]), run["answers_total"]
                        )
                        first[name] = run["next_phone"]
                        runs[name][mode].append(run)
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)
            server.send_signal(signal.SIGTERM)
            summary = server.communicate(timeout=300)[0].strip()
        with sqlite3.connect(base / "data" / "fleetkey.db") as db:
            recorded = {
                str(status): count
                for status, count in db.execute(
                    "SELECT status, count(*) FROM fetches GROUP BY status"
                )
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, seeds, summary, recorded, (disk, said))


def sum_status(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for status in counts:
        for code, count in status.items():
            total[code] = total.get(code, 0) + count
    return dict(sorted(total.items()))


def mix(status: dict[str, int]) -> str:
    """`200 28.1%  404 53.6%`: each status's share."""
    total = sum(status.values()) or 1
    return "  ".join(f"{code} {count / total:.1%}" for code, count in status.items())


def budget_us(nginx_rps: float) -> float:
    """What 0.8x nginx's rate leaves fleetkey a request, µs of core 0."""
    return 1e6 / (TARGET * nginx_rps)


def cpu_lines(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Each server's CPU a request (medians of the rounds), and what 0.8x nginx's rate leaves
    fleetkey for user time, round by round (nginx's rate and fleetkey's CPU of the same
    round), once system time is paid: fleetkey's own, and, as an estimate, nginx's (the
    kernel's share shrinks as a server gets faster; neither is a bound: nginx's holds its access
    and error logs, which fleetkey does not write). At most: core 0 runs the kernel's own
    threads too, and softirq work lands on whichever thread it interrupts."""

    def each(name: str, mode: str, kind: str, part: str) -> list[float]:
        return [run["server_cpu"][kind][part] for run in runs[name][mode]]

    def median(name: str, mode: str, kind: str, part: str) -> float:
        return statistics.median(each(name, mode, kind, part))

    def left(name: str, mode: str, budgets: list[float]) -> list[float]:
        """Each round's budget less ``name``'s system time of that round."""
        systems = each(name, mode, "all", "system_us")
        return [budget - system for budget, system in zip(budgets, systems, strict=True)]

    lines = ["  CPU a request, µs (each server's threads, from /proc; medians of the rounds):"]
    for name in runs:
        for mode in MODES:
            user, system = (
                median(name, mode, "all", "user_us"),
                median(name, mode, "all", "system_us"),
            )
            lines.append(
                f"    {name:<9} {mode:<11} user {user:6.1f} + system {system:5.1f} "
                f"= {user + system:6.1f}"
            )
            if name != "fleetkey":
                continue
            for kind, label in (("loop", "event loop   "), ("other", "other threads")):
                lines.append(
                    f"      {label} user {median(name, mode, kind, 'user_us'):6.1f} + system "
                    f"{median(name, mode, kind, 'system_us'):5.1f}"
                    + ("  (record writer, refreshes)" if kind == "other" else "")
                )
    for mode in MODES:
        budgets = [budget_us(run["rps"]) for run in runs["nginx"][mode]]
        own, theirs = left("fleetkey", mode, budgets), left("nginx", mode, budgets)
        # how far fleetkey's user time overran what its own system time left, round by round
        over = [
            spent - left
            for spent, left in zip(each("fleetkey", mode, "all", "user_us"), own, strict=True)
        ]
        by_round = f" (by round: {' '.join(f'{o:.1f}' for o in over)})" if len(over) > 1 else ""
        lines += [
            f"  {mode}: {TARGET}x nginx's rate leaves fleetkey at most "
            f"{statistics.median(budgets):.1f} µs a request",
            f"    of core 0; less its system time, {statistics.median(own):.1f} for user time "
            f"(less nginx's, {statistics.median(theirs):.1f});",
            *textwrap.wrap(
                f"it spends {median('fleetkey', mode, 'all', 'user_us'):.1f}, over by "
                f"{statistics.median(over):.1f}{by_round}",
                78,
                initial_indent="    ",
                subsequent_indent="      ",
            ),
        ]
    return lines


def report(
    args: argparse.Namespace,
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    seeds: dict[str, dict[str, Any]],
    summary: str,
    recorded: dict[str, int],
    disk: tuple[dict[str, str | bool | None], list[str]],
) -> None:
    medians = {
        name: {
            mode: statistics.median(run["rps"] for run in values) for mode, values in modes.items()
        }
        for name, modes in runs.items()
    }
    ratios = {mode: medians["fleetkey"][mode] / medians["nginx"][mode] for mode in MODES}
    paired = {
        mode: [
            mine["rps"] / theirs["rps"]
            for mine, theirs in zip(runs["fleetkey"][mode], runs["nginx"][mode], strict=True)
        ]
        for mode in MODES
    }
    fleetkey_runs = [seeds["fleetkey"], *(run for v in runs["fleetkey"].values() for run in v)]
    sent = sum_status(run["status_total"] for run in fleetkey_runs)
    errors = sum(run["errors_total"] for run in fleetkey_runs) + sum(
        run["errors_total"]
        for run in [seeds["nginx"], *(r for v in runs["nginx"].values() for r in v)]
    )
    check = {
        "answers": sum(sent.values()),
        "records": sum(recorded.values()),
        "answers_by_status": sent,
        "records_by_status": dict(sorted(recorded.items())),
        "equal": sent == dict(sorted(recorded.items())),
    }
    if args.json:
        print(
            json.dumps(
                {
                    "sequence": SEQUENCE,
                    "seed_pass": seeds,
                    "rounds": runs,
                    "median_rps": medians,
                    "ratios": ratios,
                    "ratios_by_round": paired,
                    "every_request_recorded": check,
                    "errors": errors,
                    "fleetkey": summary,
                    "filesystem": disk[0],
                    "generator_polls": args.poll,
                    "budget_us": {mode: budget_us(medians["nginx"][mode]) for mode in MODES},
                },
                indent=2,
            )
        )
        return
    print(
        f"{args.phones:,} phones ({args.tagged:.0%} tagging SN), {args.concurrency} booting at "
        f"once, {len(SEQUENCE_STEPS)} requests a boot; {args.rounds} rounds of {args.seconds:g} s "
        f"(+{args.warmup:g} s warm-up) per server and mode, servers in turn; servers on core 0, "
        f"bootload on core 1{' (polling: its idle share says its headroom)' if args.poll else ''}"
    )
    print("\n".join(disk[1]))
    print(
        "  seed pass (every phone PUTs its two logs once, so measured PUTs replace them): "
        + "   ".join(
            f"{name} {mix(seed['status_total'])} at {seed['rps']:,.0f} req/s"
            for name, seed in seeds.items()
        )
    )
    for name, modes in runs.items():
        for mode, values in modes.items():
            rounds = " ".join(f"{run['rps']:,.0f}" for run in values)
            p50 = statistics.median(run["p50_ms"] for run in values)
            p99 = statistics.median(run["p99_ms"] for run in values)
            cpu = statistics.median(run["cpu_pct"] for run in values)
            if args.poll:  # its CPU share is ~100 % then: its idle share says its headroom
                idle = statistics.median(run["idle_pct"] for run in values)
                load = f"idle {idle:3.0f} %"
            else:
                load = f"{cpu:3.0f} %"
            core0 = statistics.median(run["core0"]["busy"] for run in values)
            iowait = statistics.median(run["core0"]["iowait"] for run in values)
            core1 = statistics.median(run["core1"]["busy"] for run in values)
            print(
                f"  {name:<9} {mode:<11} {medians[name][mode]:>7,.0f} req/s  p50 {p50:6.2f} ms  "
                f"p99 {p99:6.2f} ms  core 0 busy {core0:3.0f} % (iowait {iowait:2.0f} %)  "
                f"bootload {load}, core 1 busy {core1:3.0f} %   rounds: {rounds}"
            )
    print(
        f"  ratio fleetkey/nginx: keep-alive {ratios['keep-alive']:.2f}x   close "
        f"{ratios['close']:.2f}x   (target {TARGET}; ratios of the medians)"
    )
    print(
        "  round by round:"
        + "".join(f"   {mode} {' '.join(f'{r:.2f}x' for r in paired[mode])}" for mode in MODES)
    )
    print("\n".join(cpu_lines(runs)))
    print("  status mix (all rounds, measured windows):")
    for name, modes in runs.items():
        for mode, values in modes.items():
            print(f"    {name:<9} {mode:<11} {mix(sum_status(run['status'] for run in values))}")
    print("  by request (all rounds and modes; p99: keep-alive, median over rounds):")
    for index, step in enumerate(SEQUENCE_STEPS):
        line = " ".join(step.split()[:2])
        cells = []
        for name, modes in runs.items():
            status = sum_status(
                run["by_request"][index]["status"] for values in modes.values() for run in values
            )
            p99 = statistics.median(
                run["by_request"][index]["p99_ms"] for run in modes["keep-alive"]
            )
            cells.append(f"{name} {mix(status):<22} p99 {p99:7.2f} ms")
        print(f"    {line:<36} " + "   ".join(cells))
    for name, modes in runs.items():
        every = [seeds[name], *(run for values in modes.values() for run in values)]
        kinds = sum_status(run["error_kinds"] for run in every)
        print(
            f"  {name}: errors {sum(run['errors_total'] for run in every)} "
            f"{kinds if kinds else ''}(malformed answers, resets, timeouts, refused; all runs), "
            f"503 {sum(run['busy_503_total'] for run in every)}, resent after the server closed "
            f"{sum(run['resends'] for run in every)}, unanswered at the end "
            f"{sum(run['unfinished'] for run in every)}"
        )
    verdict = "every answer recorded" if check["equal"] else "MISMATCH"
    print(
        f"  fleetkey: {check['answers']:,} answers received, {check['records']:,} fetch records: "
        f"{verdict}"
    )
    if not check["equal"]:
        print(f"    answers by status {sent}\n    records by status {check['records_by_status']}")
    print(f"  {summary}")


if __name__ == "__main__":
    main()

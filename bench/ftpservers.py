"""The servers bench/ftp.py measures, each pinned to core 0: vsftpd, a bare pyftpdlib, fleetkey.

vsftpd runs anonymous on a throwaway configuration (never the system's), its transfer log on;
pyftpdlib with one user, its command log off and a passive range (which it binds with
SO_REUSEADDR); fleetkey with the shared factory login, its passive ports its default. With a
profile directory, fleetkey's FTP thread and the whole pyftpdlib run under cProfile.
``fleetkey-before`` is the same server from another commit's source (``--before REV``), for a
before/after comparison in one run, on a data directory of its own that its own code made
(``before_fleet``): a store made by one commit's migrations is not another's, and the older
server refused to start on the newer schema.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from benchfleet import FLEETKEY, bench_env, issue_phone_licenses

USER: Final = "PlcmSpIp"

PYFTPDLIB_SERVER = """
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
authorizer = DummyAuthorizer()
authorizer.add_user("PlcmSpIp", "PlcmSpIp", sys.argv[1], perm="elr")
FTPHandler.authorizer = authorizer
# a passive range: pyftpdlib binds it with SO_REUSEADDR; on port 0 (its default) the kernel
# skips ports in TIME_WAIT, and 12 data connections a boot used all of them within a minute
FTPHandler.passive_ports = range(30000, 31000)
server = FTPServer(("127.0.0.1", int(sys.argv[2])), FTPHandler)
server.max_cons = 0
if len(sys.argv) > 3:  # --profile: the whole process, written when SIGTERM stops it
    import cProfile, signal
    def stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    cProfile.run("server.serve_forever()", sys.argv[3])
else:
    server.serve_forever()
"""

FLEETKEY_PROFILED = """
import cProfile, sys
from fleetkey.serve.ftp import server
out = sys.argv.pop(1)
run = server._Listener.run
def profiled(self):  # the FTP thread only: the event loop's work is not pyftpdlib's
    profile = cProfile.Profile()
    profile.enable()
    try:
        run(self)
    finally:
        profile.disable()
        profile.dump_stats(out)
server._Listener.run = profiled
from fleetkey.cli.main import main
main()
"""

VSFTPD_CONF = """listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
anonymous_enable=YES
no_anon_password=YES
anon_root={tree}
local_enable=NO
write_enable=NO
pasv_enable=YES
max_clients=0
max_per_ip=0
xferlog_enable=YES
vsftpd_log_file={log}
xferlog_file={log}
isolate=NO
isolate_network=NO
seccomp_sandbox=NO
background=NO
secure_chroot_dir=/var/run/vsftpd/empty
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.recv(100)
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def before_source(base: Path, rev: str) -> Path:
    """The ``src`` directory of commit ``rev`` of this repository, exported under ``base``;
    ``rev`` may also be a checkout's directory (a worktree of the code before: its ``src``)."""
    checkout = Path(rev)
    if checkout.is_dir():
        if not (checkout / "src" / "fleetkey").is_dir():
            raise SystemExit(f"--before {rev}: a directory without src/fleetkey")
        return checkout.resolve() / "src"
    repo = Path(__file__).resolve().parent.parent
    out = base / "before"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev, "src"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--before {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


def before_fleet(base: Path, source: Path, phones: int) -> tuple[dict[str, str], Path]:
    """``fleetkey-before``'s own data directory under ``base/before``, made by its own code
    (``source``: its ``src``): init and the same phones' licenses, as ``base/data`` is for
    fleetkey. Its environment (data directory, ``PYTHONPATH``) and its tree."""
    home = base / "before-fleet"
    home.mkdir()
    env = bench_env(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    return env, issue_phone_licenses(home, env, phones)


def start_servers(
    base: Path,
    env: dict[str, str],
    tree: Path,
    started: dict[str, subprocess.Popen[str]],
    names: list[str],
    profile: Path | None = None,
    before: dict[str, str] | None = None,
) -> dict[str, int]:
    """Those of ``names``, each pinned to core 0 and idle until its turn; ``before``:
    fleetkey-before's environment (``before_fleet``)."""
    ports: dict[str, int] = {}
    if "vsftpd" in names:
        vsftpd = shutil.which("vsftpd") or shutil.which("vsftpd", path="/usr/sbin")
        if vsftpd is None:
            raise SystemExit("bench/ftp.py needs vsftpd: apt-get install -y vsftpd")
        ports["vsftpd"] = free_port()
        conf = base / "vsftpd.conf"
        conf.write_text(VSFTPD_CONF.format(port=ports["vsftpd"], tree=tree, log=base / "xfer.log"))
        started["vsftpd"] = subprocess.Popen(["taskset", "-c", "0", vsftpd, str(conf)], text=True)
    if "pyftpdlib" in names:
        ports["pyftpdlib"] = free_port()
        script = base / "pyftpdlib_server.py"
        script.write_text(PYFTPDLIB_SERVER)
        command = [sys.executable, str(script), str(tree), str(ports["pyftpdlib"])]
        if profile is not None:
            command.append(str(profile / "pyftpdlib.prof"))
        started["pyftpdlib"] = subprocess.Popen(["taskset", "-c", "0", *command], text=True)
    for name in ("fleetkey", "fleetkey-before"):
        if name not in names:
            continue
        fleetkey = FLEETKEY
        if profile is not None:
            wrapper = base / "fleetkey_profiled.py"
            wrapper.write_text(FLEETKEY_PROFILED)
            fleetkey = [sys.executable, str(wrapper), str(profile / f"{name}.prof")]
        own = dict(env)
        if name == "fleetkey-before":
            assert before is not None  # --before names it
            own = dict(before)
        server = subprocess.Popen(
            ["taskset", "-c", "0", *fleetkey, "serve", "--http", "off", "--ftp", "127.0.0.1:0",
             "--ftp-shared-login", f"{USER}:{USER}", "--ftp-max-connections", "4096"],
            env=own, stdout=subprocess.PIPE, stderr=(base / f"{name}.err").open("w"), text=True,
        )  # fmt: skip  # stderr to a file: a full pipe would stop the server
        started[name] = server
        assert server.stdout is not None
        banner = server.stdout.readline().split()  # fleetkey serving ftp://HOST:PORT …
        if len(banner) < 3:
            server.wait(timeout=60)
            said = (base / f"{name}.err").read_text().strip()
            raise SystemExit(f"{name} did not start (exit {server.returncode}): {said}")
        ports[name] = int(banner[2].rsplit(":", 1)[1])
    for port in ports.values():
        wait_listening(port)
    return ports

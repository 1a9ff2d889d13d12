"""`fleetkey rollout run` as a process, against Kamailio: Ctrl-C and SIGTERM pause the rollout
(never left running), a second run resumes it and notifies every phone exactly once in all,
the exit status says that phones failed, and `rollout retry` queues them again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import PASSPHRASE, Peer, free_port, start_kamailio
from tests.serving import fleetkey_command, fleetkey_in_process, wait_for

SITE = "100000000001"
PHONES = 30


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    started, process = start_kamailio(tmp_path_factory.mktemp("kamailio"), challenge=False)
    yield started
    process.terminate()
    process.wait(timeout=20)


def notified(peer: Peer, prefix: str) -> Counter[str]:
    """How many NOTIFYs Kamailio let through for each MAC starting with ``prefix``."""
    found: Counter[str] = Counter()
    for line in peer.lines("notify"):
        match = re.match(r"sip:(\w{12})@", line["ruri"])
        if match is not None and match.group(1).startswith(prefix):
            found[match.group(1)] += 1
    return found


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.env = {
            **os.environ,
            "FLEETKEY_DATA": str(tmp_path / "data"),
            "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE,
            "FLEETKEY_ACTOR": "alice@cli",
        }
        self.env.pop("FLEETKEY_DB", None)

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*fleetkey_command(), *args], env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == code, f"{args} exited {done.returncode}: {done.stderr}"
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*fleetkey_command(), *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def slow_rollout(cli: Cli, port: int, prefix: str, tmp_path: Path) -> None:
    """A site open now, 30 phones whose contacts are ``port`` on 127.0.0.1, a successor planned
    at ~3.4 check-syncs a second (17 per 5-s slot): rollout 1. Made in this process with the
    CLI's environment (a process a command cost an interpreter and fleetkey's imports)."""

    def run(*args: str) -> None:
        fleetkey_in_process(cli.env, *args)

    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H}:00-{now + timedelta(hours=6):%H}:00"
    run("init")
    run("sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", window)
    rows = "".join(
        f"{prefix}{i:06x},{SITE},VVX_500,sip:{prefix}{i:06x}@127.0.0.1:{port}\n"
        for i in range(PHONES)
    )
    (tmp_path / "phones.csv").write_text("mac,site,model,contact\n" + rows)
    run("phones", "import", str(tmp_path / "phones.csv"))
    for days in (20, 400):
        run("issue", "site", "--serial", SITE, "--features", "corporate-directory",
            "--expires", f"{now.date() + timedelta(days=days)}")  # fmt: skip
    run("rollout", "plan", "--license", "2", "--capacity", "5", "--boot-requests", "1",
        "--slot", "5")  # fmt: skip


@pytest.mark.parametrize(
    ("signum", "prefix"), [(signal.SIGINT, "0004f2"), (signal.SIGTERM, "0004f3")]
)
def test_a_signal_pauses_the_rollout_and_a_second_run_finishes_it_notifying_each_phone_once(
    tmp_path: Path, peer: Peer, signum: signal.Signals, prefix: str
) -> None:
    cli = Cli(tmp_path)
    slow_rollout(cli, peer.port, prefix, tmp_path)
    run = ["rollout", "run", "1", "--confirm-timeout", "1", "--max-attempts", "1"]
    first = cli.start(*run)
    wait_for(lambda: sum(notified(peer, prefix).values()) >= 3, 30)
    first.send_signal(signum)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signum, err
    status = json.loads(cli("rollout", "status", "1", "--json").stdout)
    assert status["state"] == "paused"
    sent = status["phones"].get("notified", 0)
    left = status["phones"].get("pending", 0)
    assert 0 < left < PHONES
    assert sent + left == PHONES  # nothing confirmed (Kamailio is no phone), nothing failed yet
    assert sent == sum(notified(peer, prefix).values())  # claims never sent were given back
    assert (
        f"rollout 1 is paused ({signum.name}): 30 of 30 phones open ({sent} notified, {left} "
        "still to notify); resume with `fleetkey rollout run 1`" in " ".join(err.split())
    )
    events = json.loads(cli("audit", "list", "--json").stdout)
    paused = [e for e in events if e["action"] == "rollout.paused"]
    assert paused[-1]["actor"] == "alice@cli"
    assert paused[-1]["details"]["stopped_by"] == signum.name
    assert "phones" in out  # the status was printed before leaving

    again = cli(*run, "--json", code=1)  # resumes the paused rollout; every phone fails
    report = json.loads(again.stdout)
    assert report["state"] == "failed"
    assert report["phones"] == {"failed": PHONES}
    assert len(report["failures"]) == PHONES  # every one, not the first 20
    assert "error: rollout 1 failed: 30 of 30 phones failed" in again.stderr
    assert "fleetkey rollout retry 1" in again.stderr
    assert sorted(notified(peer, prefix).values()) == [1] * PHONES  # none lost, none twice

    retried = json.loads(cli("rollout", "retry", "1", "--json").stdout)
    assert (retried["requeued"], retried["state"]) == (PHONES, "paused")
    assert retried["phones"] == {"pending": PHONES}
    refused = cli("rollout", "retry", "1", code=1)
    assert "error: rollout 1 has no failed phones to retry" in refused.stderr


GRACE_S = 3.0  # what a stop gives the NOTIFYs in flight when one signal comes
LONG_GRACE_S = 60.0  # when two come: the second must not wait for it
T1_S = 2.0  # Timer F is 64 x T1 = 128 s: no NOTIFY times out while a test waits


@pytest.mark.parametrize("signals", [1, 2])
def test_notifies_nobody_answers_get_the_grace_and_a_second_signal_stops_at_once(
    tmp_path: Path, signals: int
) -> None:
    """Timing on shared cores: the lower bound is the executor's own wait; the upper bounds
    are far from anything load does (tens of seconds) and from Timer F; the store shows the
    NOTIFYs were left in flight, neither answered nor timed out."""
    cli = Cli(tmp_path)
    slow_rollout(cli, free_port(), "0004f4", tmp_path)  # UDP to a port nobody reads
    grace_s = GRACE_S if signals == 1 else LONG_GRACE_S
    first = cli.start("rollout", "run", "1", "--sip-t1", f"{T1_S}", "--stop-grace", f"{grace_s}",
                      "--json")  # fmt: skip

    def sent() -> bool:
        status = json.loads(cli("rollout", "status", "1", "--json").stdout)
        return int(status["phones"].get("notified", 0)) >= 5  # a claim may be unsent yet

    wait_for(sent, 30)
    began = time.monotonic()
    for _ in range(signals):
        first.send_signal(signal.SIGINT)
        time.sleep(0.3)
    out, err = first.communicate(timeout=120)
    took = time.monotonic() - began
    assert first.returncode == 130, err
    if signals == 1:
        assert took >= GRACE_S  # the NOTIFYs in flight had their grace …
        assert took < 60  # … and not Timer F (128 s)
    else:
        assert took < LONG_GRACE_S / 2  # the second signal did not wait for the grace
    status = json.loads(cli("rollout", "status", "1", "--json").stdout)
    assert status["state"] == "paused"
    assert status["phones"].get("notified", 0) >= 3  # sent, unanswered: judged by a later run
    run = json.loads(out)["run"]
    assert run["stopped_by"] == "SIGINT"
    assert run["notified"] >= 5
    assert run["unanswered"] == 0  # none timed out (Timer F): cut at the stop
    assert sum(status["phones"].values()) == PHONES
    paused = [e for e in json.loads(cli("audit", "list", "--json").stdout)
              if e["action"] == "rollout.paused"]  # fmt: skip
    assert [e["details"]["stopped_by"] for e in paused] == ["SIGINT"]

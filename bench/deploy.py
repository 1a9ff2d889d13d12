"""The Show of issue 22 at full size: 3,000 emulated phones at three sites booting through
HAProxy (docs/deploy/haproxy.cfg) in front of three `fleetkey serve` on one PostgreSQL, each
site's successor posted (timed on every server) and rolled out by two executors, one server and
one executor SIGKILLed mid-rollout and the executor started again.

The scenario is tests/fleetrun.py's, the one tests/integration/test_deployment.py runs with
600 phones in CI; here the figures are printed with each claim checked, and the load on the
machine before and after (the emulator, three servers, HAProxy, PostgreSQL and six executors
share its cores).

    .venv/bin/python bench/deploy.py [--phones 3000] [--capacity 600]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

# bench/http.py would stand in for the standard library's http (httpx imports it)
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent
]

from tests.fleetrun import FleetRun, describe, roll_out_through_the_balancer  # noqa: E402
from tests.pg import PostgresServer  # noqa: E402  # the harness starts a throwaway server


def claims(run: FleetRun, record_queue: int) -> list[tuple[str, bool]]:
    """The issue's claims, each with whether this run shows it."""
    expiry = str(datetime.now(UTC).date() + timedelta(days=400))
    delays = [d for by_server in run.post_delays.values() for d in by_server.values()]
    survivors = ("serve1", "serve3")
    return [
        ("every phone has its site's successor", run.installed == {expiry: run.phones}),
        ("every phone confirmed, every rollout done",
         run.targets == {"confirmed": run.phones}
         and set(run.rollout_states.values()) == {"done"}),
        ("every phone rebooted by check-sync once", set(run.checksync_reboots) == {1}),
        ("no phone notified twice", not run.twice and set(run.check_syncs) == {1}),
        ("HAProxy took serve2 out within 5 s",
         run.down_after_s is not None and run.down_after_s < 5),
        ("no phone kept an error (retries succeeded)", run.phones_with_errors == 0),
        ("successor served by all servers within 2 s of posting",
         len(delays) == 9 and max(delays) <= 2.0),
        ("every answer of a surviving server recorded",
         all(run.not_recorded[s] == 0
             and run.answered_by[s] <= run.written[s] - run.polls[s]
             <= run.forwarded_by[s] + run.retries
             for s in survivors)),
        ("serve2's loss bounded by its queue", -run.retries <= run.killed_lost <= record_queue),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=3000)
    parser.add_argument("--capacity", type=float, default=600.0, help="req/s the plans assume")
    parser.add_argument("--record-queue", type=int, default=20_000)
    parser.add_argument("--confirm-timeout", type=float, default=60.0)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    postgres = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="fleetkey-deploy-") as work:
            run = roll_out_through_the_balancer(
                Path(work),
                postgres.create_database(),
                args.phones,
                capacity=args.capacity,
                record_queue=args.record_queue,
                confirm_timeout_s=args.confirm_timeout,
            )
    finally:
        postgres.stop()
    print(f"load after: {os.getloadavg()}")
    print(describe(run))
    shown = claims(run, args.record_queue)
    for claim, holds in shown:
        print(f"  {'yes' if holds else 'NO '}  {claim}")
    return 0 if all(holds for _, holds in shown) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The line `fleetkey serve` prints when it stops: its counts are for people (1,234)."""

from __future__ import annotations

from fleetkey.cli.serveworkers import done, summary
from fleetkey.serve.pool import PoolTotals
from fleetkey.serve.runner import Totals

BIG = Totals(
    requests=1_234_567,
    busy=1_200,
    tftp_transfers=45_000,
    written=1_279_567,
    not_recorded=1_001,
    ftp_transfers=2_500,
    ftp_refused=3_000,
)


def test_the_stopped_line_says_every_count_with_thousands_separators() -> None:
    assert done(BIG) == (
        "1,234,567 requests answered (1,200 busy), 45,000 TFTP transfers, 2,500 FTP transfers "
        "(3,000 connections refused with 421), 1,279,567 fetch records written, "
        "1,001 not recorded"
    )


def test_the_workers_stopped_line_says_its_restarts_and_losses_with_separators() -> None:
    line = summary(PoolTotals(BIG, workers=1_002, killed=1_000, lost=12_345))
    assert line.startswith(
        "stopped: 1,002 workers (1,000 ended early and restarted; 12,345 fetch records were "
        "waiting in their queues): 1,234,567 requests answered"
    ), line


def test_small_counts_read_as_before() -> None:
    small = Totals(requests=60, busy=0, tftp_transfers=None, written=60, not_recorded=0)
    assert done(small) == "60 requests answered (0 busy), 60 fetch records written, 0 not recorded"

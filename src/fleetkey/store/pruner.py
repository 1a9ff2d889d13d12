"""A server's pruning thread (``serve --fetch-retention``): :func:`store.retention.prune` a
minute after start, then every hour, each prune that did something said in one log line
(records removed, days rolled up) and handed to the server (``fleetkey_fetch_records_pruned``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from sqlalchemy import Engine

from fleetkey.clock import Clock
from fleetkey.store.retention import PruneResult, prune

log = logging.getLogger(__name__)

PRUNE_FIRST_S: Final = 60.0  # a server's first prune: once the boot storm of a restart passed
PRUNE_EVERY_S: Final = 3600.0  # and then every hour


def pruned_line(result: PruneResult) -> str | None:
    """What a prune did, in one line for the server's log; None when it did nothing."""
    if not result.days and not result.deleted:
        return None
    days = sorted(result.days)
    if not days:
        rolled = "no day rolled up"
    elif len(days) == 1:
        rolled = f"{days[0]} rolled up"
    else:
        rolled = f"{len(days):,} days rolled up ({days[0]} to {days[-1]})"
    before = result.cutoff.date().isoformat() if result.cutoff is not None else "-"
    return (
        f"retention: {result.deleted:,} fetch records from before {before} removed; "
        f"{rolled} into the daily counts (fetches days)"
    )


def keep_pruning(
    engine: Engine,
    clock: Clock,
    days: int,
    stop: threading.Event,
    *,
    first_s: float = PRUNE_FIRST_S,
    every_s: float = PRUNE_EVERY_S,
    done: Callable[[PruneResult], None] = lambda result: None,
) -> None:
    """A server's pruning thread (``serve --fetch-retention``): a prune ``first_s`` after start,
    then every ``every_s``, until ``stop`` is set (a prune under way stops after its current
    batch). A prune that removed records or rolled up days is said in one log line and handed
    to ``done`` (the server's metrics). A failure is logged with its traceback and tried again
    at the next turn."""
    wait = first_s
    while days and not stop.wait(wait):
        try:
            result = prune(engine, clock.now(), days, stopping=stop.is_set)
            line = pruned_line(result)
            if line is not None:
                log.warning("%s", line)
            done(result)
        except Exception:  # an outer loop: logged, tried again at the next turn
            log.exception("removing old fetch records failed; trying again in %.0f s", every_s)
        wait = every_s


def start_pruning(
    engine: Engine,
    clock: Clock,
    days: int,
    done: Callable[[PruneResult], None] = lambda result: None,
) -> threading.Event:
    """Start a server's pruning thread (:func:`keep_pruning`); setting the event stops it."""
    stop = threading.Event()
    threading.Thread(
        target=keep_pruning,
        args=(engine, clock, days, stop),
        kwargs={"done": done},
        name="fleetkey-pruner",
        daemon=True,
    ).start()
    return stop

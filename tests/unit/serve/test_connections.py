"""The HTTP server's connection registry: caps, deadlines, who is closed first."""

from __future__ import annotations

from dataclasses import dataclass

from fleetkey.serve.http.connections import NEVER, ConnectionLimits, Connections


@dataclass(eq=False)
class Fake:
    remote: str | None
    waiting_since: float = 0.0
    deadline: float = NEVER
    stalled: float = NEVER
    closed: str = ""

    def stalled_since(self) -> float:
        return self.stalled

    def timed_out(self) -> None:
        self.closed = "timed out"

    def abandon(self) -> None:
        self.closed = "abandoned"

    def close_when_idle(self) -> None:  # pragma: no cover  # not used here
        self.closed = "closed"


def test_one_address_gets_at_most_its_cap_and_the_rest_are_refused() -> None:
    registry = Connections(ConnectionLimits(per_address=3, total=100))
    joined = [registry.join(Fake("10.0.0.1")) for _ in range(5)]
    assert joined == [True, True, True, False, False]
    assert registry.join(Fake("10.0.0.2"))
    assert registry.refused == 2


def test_leaving_frees_the_addresss_place() -> None:
    registry = Connections(ConnectionLimits(per_address=1, total=100))
    first = Fake("10.0.0.1")
    assert registry.join(first)
    assert not registry.join(Fake("10.0.0.1"))
    registry.leave(first)
    registry.leave(first)  # twice is harmless
    assert registry.join(Fake("10.0.0.1"))


def test_at_the_total_those_waiting_longest_for_a_request_are_closed_first() -> None:
    registry = Connections(ConnectionLimits(total=200))
    slow = [Fake(f"10.1.0.{n}", waiting_since=float(n)) for n in range(150)]
    busy = [Fake(f"10.2.0.{n}", waiting_since=NEVER) for n in range(50)]  # being answered
    for connection in slow + busy:
        assert registry.join(connection)
    newcomer = Fake("10.3.0.1", waiting_since=1000.0)
    assert registry.join(newcomer)
    assert [c.remote for c in slow if c.closed] == ["10.1.0.0", "10.1.0.1"]  # 1 % of 200
    assert not any(c.closed for c in busy)
    assert registry.evicted == 2
    assert len(registry) == 199


def test_when_nobody_waits_a_newcomer_over_the_total_is_refused() -> None:
    registry = Connections(ConnectionLimits(total=2))
    assert registry.join(Fake("a", waiting_since=NEVER))
    assert registry.join(Fake("b", waiting_since=NEVER))
    assert not registry.join(Fake("c"))


def test_the_sweep_times_out_missed_deadlines_and_abandons_unread_answers() -> None:
    registry = Connections(ConnectionLimits(send_s=60))
    late = Fake("a", deadline=9.0)
    on_time = Fake("b", deadline=11.0)
    unread = Fake("c", stalled=0.0)
    reading = Fake("d", stalled=5.0)
    for connection in (late, on_time, unread, reading):
        registry.join(connection)
    registry.sweep(now=61.0 - 51.0)  # 10 s
    assert (late.closed, on_time.closed, unread.closed, reading.closed) == ("timed out", "", "", "")
    registry.sweep(now=61.0)
    assert (on_time.closed, unread.closed, reading.closed) == ("timed out", "abandoned", "")

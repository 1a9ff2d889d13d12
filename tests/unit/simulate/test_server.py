"""The server as a queue (simulate/server.py), by exact numbers: capacity per second, first come
first served, the boot's own length, 503s for phones waiting past it, and a dead server."""

from __future__ import annotations

import numpy as np
import pytest

from fleetkey.simulate.scenario import Server
from fleetkey.simulate.server import ServerQueue

MINUTES = 60


def queue(period_s: float | None = None, **server: float) -> ServerQueue:
    return ServerQueue(Server(**server), MINUTES, period_s)


class TestCapacity:
    def test_boots_are_answered_at_the_capacity_per_second_in_arrival_order(self) -> None:
        # 60 boots of 12 requests at once, 10 requests a second: one done every 1.2 s
        q = queue(capacity_per_s=10, boot_requests=12, boot_s=1)
        admission = q.admit(np.zeros(60))
        assert admission.ends == pytest.approx(1.2 * np.arange(1, 61), abs=1e-9)
        assert admission.served.all()
        assert q.answered_per_min[:3].tolist() == pytest.approx([600.0, 120.0, 0.0])
        assert q.offered_per_min[:2].tolist() == [720.0, 0.0]

    def test_a_later_batch_waits_behind_the_earlier_one(self) -> None:
        q = queue(capacity_per_s=10, boot_requests=12, boot_s=1)
        first = q.admit(np.zeros(60))
        later = q.admit(np.array([30.0, 31.0]))
        assert later.ends == pytest.approx([72.0 + 1.2, 72.0 + 2.4], abs=1e-9)
        assert later.ends.min() > first.ends.max()
        assert q.answered_per_min[:2].sum() == pytest.approx(60 * 12 + 2 * 12)

    def test_a_batch_arriving_over_several_minutes_takes_each_minutes_capacity(self) -> None:
        q = queue(capacity_per_s=1, boot_requests=30, boot_s=1)
        admission = q.admit(np.array([0.0, 0.0, 0.0, 130.0]))
        # 60 requests a minute: two boots in minute 0, the third in minute 1, the fourth
        # arrives in minute 2 to an idle server
        assert admission.ends == pytest.approx([30.0, 60.0, 90.0, 160.0], abs=1e-9)
        assert q.answered_per_min[:4].tolist() == pytest.approx([60.0, 30.0, 30.0, 0.0])

    def test_a_boot_takes_at_least_its_own_length(self) -> None:
        q = queue(capacity_per_s=1e6, boot_requests=12, boot_s=120)
        admission = q.admit(np.array([0.0, 5.0]))
        assert admission.ends.tolist() == [120.0, 125.0]
        assert q.longest_wait_s == 120.0
        assert not q.refused_per_s().any()  # nobody waited past their boot

    def test_a_backlog_longer_than_the_first_window_looked_at_is_answered_in_order(
        self,
    ) -> None:
        # 300 boots of 60 requests at 1 a second over 10 hours: the last is answered after
        # 300 minutes, past the 240 minutes of free capacity the queue looks at first
        q = ServerQueue(Server(capacity_per_s=1, boot_requests=60, boot_s=1), 600)
        admission = q.admit(np.zeros(300))
        assert admission.ends == pytest.approx(60.0 * np.arange(1, 301), abs=1e-6)
        assert q.longest_wait_s == pytest.approx(300 * 60.0)
        assert not q.longest_open
        assert q.answered_per_min[:301].tolist() == pytest.approx([60.0] * 300 + [0.0])


class TestRefusals:
    def test_each_phone_waiting_past_its_boot_is_refused_once_per_retry_after(self) -> None:
        # 60 requests a boot at 1 a second: done at 60, 120, 180 s; late after 10 s each, so
        # waiting 50 s in minute 0 each, then one and two whole minutes
        q = queue(capacity_per_s=1, boot_requests=60, boot_s=10, retry_after_s=30)
        admission = q.admit(np.zeros(3))
        assert admission.ends.tolist() == pytest.approx([60.0, 120.0, 180.0])
        per_minute = [3 * 50 / 60, 2.0, 1.0, 0.0]  # phones waiting, on average over the minute
        assert q.refused_per_s()[:4].tolist() == pytest.approx([w / 30 for w in per_minute])

    def test_a_wait_inside_one_minute_counts_its_seconds(self) -> None:
        # 20 boots at once, 12 requests at 1 a second: boot k done at 12 (k + 1) s; late
        # after 120 s: boots 10..19 wait 12 j - 120 s (j = 11..20) of minutes 2 to 4
        q = queue(capacity_per_s=1, boot_requests=12, boot_s=120, retry_after_s=30)
        q.admit(np.zeros(20))
        waited = [0.0] * 5
        for j in range(11, 21):
            end = 12.0 * j
            for minute in range(2, 5):
                waited[minute] += max(0.0, min(end, 60.0 * (minute + 1)) - 60.0 * minute)
        expected = [w / 60 / 30 for w in waited]
        assert q.refused_per_s()[:5].tolist() == pytest.approx(expected)
        assert q.refused_per_s()[2] > 0
        assert q.longest_wait_s == pytest.approx(240.0)


class TestDeadServer:
    def test_a_phone_asking_while_it_is_down_boots_from_flash_after_giving_up(self) -> None:
        q = queue(capacity_per_s=10, boot_requests=12, boot_s=10, give_up_s=90)
        q.take_down(60, 600)
        admission = q.admit(np.array([0.0, 100.0]))
        assert admission.served.tolist() == [True, False]
        assert admission.ends.tolist() == pytest.approx([10.0, 190.0])
        assert q.longest_wait_s == pytest.approx(90.0)  # its wait on the dead server counts
        assert q.refused_per_s()[1:10].tolist() == [0.0] * 9  # nothing answers, not even 503

    def test_an_outage_within_a_minute_takes_the_whole_minute_down(self) -> None:
        # down from 90 s to 100 s: rounded out to minute 1 (60-120 s), which answers nothing
        q = queue(capacity_per_s=10, boot_requests=12, boot_s=10, give_up_s=90)
        q.take_down(90, 100)
        assert q.down[:3].tolist() == [False, True, False]
        admission = q.admit(np.array([0.0, 110.0, 120.0]))
        assert admission.served.tolist() == [True, False, True]
        assert admission.ends.tolist() == pytest.approx([10.0, 200.0, 130.0])

    def test_phones_waiting_when_it_goes_down_count_in_the_longest_boot_and_the_503s(
        self,
    ) -> None:
        q = queue(capacity_per_s=1, boot_requests=60, boot_s=10, retry_after_s=30, give_up_s=90)
        q.take_down(60, 600)
        admission = q.admit(np.zeros(3))
        # the first is answered in minute 0; the others wait until the outage, then give up
        assert admission.served.tolist() == [True, False, False]
        assert admission.ends.tolist() == pytest.approx([60.0, 150.0, 150.0])
        assert q.longest_wait_s == pytest.approx(150.0)
        # in minute 0 all three waited past their 10 s, 50 s each, refused; then it was down
        assert q.refused_per_s()[:3].tolist() == pytest.approx([150 / 60 / 30, 0.0, 0.0])
        assert q.answered_per_min[:2].tolist() == pytest.approx(
            [60.0, 0.0]
        )  # the dead ones took nothing


class TestBootsStillWaitingAtTheEnd:
    def test_a_boot_not_answered_by_the_end_counts_until_the_end_as_a_bound(self) -> None:
        # 100 boots of 70 requests at 1 a second from 0 s: one done every 70 s, the 51st at
        # 3,570 s; the other 49 are not answered within the hour and waited at least 3,600 s
        q = queue(capacity_per_s=1, boot_requests=70, boot_s=1)
        admission = q.admit(np.zeros(100))
        assert np.isfinite(admission.ends).sum() == 51
        assert q.longest_wait_s == pytest.approx(3600.0)
        assert q.longest_open
        assert q.waiting_at_end == 49

    def test_boots_done_after_the_period_count_as_waiting_at_its_end(self) -> None:
        # the period ends at 3,000 s: boots 43..51 are done within the queue's hour, after it
        q = queue(period_s=3000, capacity_per_s=1, boot_requests=70, boot_s=1)
        q.admit(np.zeros(100))
        assert q.longest_wait_s == pytest.approx(3570.0)  # known exactly
        assert q.longest_open  # the 49 never answered may have waited longer
        assert q.waiting_at_end == 100 - 42

    def test_a_queue_that_drains_gives_an_exact_longest_boot(self) -> None:
        q = queue(capacity_per_s=1, boot_requests=70, boot_s=1)
        q.admit(np.zeros(10))
        assert q.longest_wait_s == pytest.approx(700.0)
        assert not q.longest_open
        assert q.waiting_at_end == 0

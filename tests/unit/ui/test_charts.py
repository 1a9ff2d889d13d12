"""The dashboard's SVG charts: labels escaped, sizes proportional, the actual rate drawn."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from fleetkey.ui.charts import Expiry, plan_chart, progress_bar, rate_chart, stage_of, timeline

TODAY = date(2026, 6, 1)
AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_stages_follow_the_lead_time_alerts() -> None:
    stages = (60, 30, 14, 7, 1)
    assert [stage_of(d, stages) for d in (90, 60, 31, 30, 8, 1, 0, -1)] == [
        "ok", "60d", "60d", "30d", "14d", "1d", "1d", "expired",
    ]  # fmt: skip


def test_a_timeline_escapes_names_and_links() -> None:
    item = Expiry("<script>x</script>", TODAY + timedelta(days=20), "30d", '/ui/"x', "a & b")
    svg = str(timeline([item], TODAY, 26))
    assert "<script>" not in svg
    assert "&lt;script&gt;x&lt;/script&gt;" in svg
    assert 'href="/ui/&#34;x"' in svg
    assert "<title>a &amp; b</title>" in svg


def test_a_progress_bar_splits_its_width_by_state() -> None:
    svg = str(progress_bar({"confirmed": 3, "pending": 1}, "/ui/rollouts/1", width=400))
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="0" width="([\d.]+)"', svg)]
    assert widths == [300.0, 100.0]
    assert 'href="/ui/rollouts/1?state=pending"' in svg


def test_the_rate_chart_marks_503s_and_the_capacity() -> None:
    svg = str(rate_chart([(10, 0), (20, 5)], capacity_per_s=1.0))
    assert "20 requests, 5 answered 503" in svg
    assert "measured capacity 1/s" in svg
    assert ">2 min ago</text>" in svg  # the time axis says which end is now
    assert ">now</text>" in svg


def test_the_plan_chart_draws_the_actual_rate_when_there_is_one() -> None:
    planned = [(AT, 3.0), (AT + timedelta(seconds=5), 2.0)]
    assert "<polyline" not in str(plan_chart(planned, [], 5.0, 0.7, 5))
    drawn = str(plan_chart(planned, [(AT, 2.5)], 5.0, 0.7, 5))
    assert "<polyline" in drawn
    assert "capacity 5.0/s" in drawn
    assert "budget 3.5/s" in drawn

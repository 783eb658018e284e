"""A series' key ("id") is trusted downstream only when it is the key of its labels;
the console's charts match resolved series by key, not by rebuilding their ids."""

from __future__ import annotations

from sre_agent.readmodel import SeriesBuffers
from sre_agent.schemas import MetricBatch
from sre_agent.schemas.series_refs import SeriesDirectory
from sre_agent.schemas.telemetry import series_id, series_key

LAB = {"service": "pay", "pod": "pay-0"}
OTHER = {"service": "pay", "pod": "pay-1"}
KEY = series_key(series_id("latency", LAB))


def test_a_known_key_sent_with_other_labels_is_a_mismatch_and_loses_its_id() -> None:
    d = SeriesDirectory()
    d.expand(MetricBatch(series=[{"name": "latency", "labels": LAB, "id": KEY,
                                  "points": [(1.0, 1.0)]}]))
    got = d.expand(MetricBatch(series=[{"name": "latency", "labels": OTHER, "id": KEY,
                                        "points": [(2.0, 5.0)]}]))
    assert got.mismatched == [KEY]
    assert "id" not in got.series[0] and got.series[0]["labels"] == OTHER
    again = d.expand(MetricBatch(series=[{"name": "latency", "labels": dict(LAB), "id": KEY,
                                          "points": [(3.0, 1.0)]}]))
    assert again.mismatched == [] and again.series[0]["id"] == KEY


def test_resolved_refs_carry_their_key_and_the_charts_match_by_it() -> None:
    d = SeriesDirectory()
    d.expand(MetricBatch(series=[{"name": "latency", "labels": LAB, "id": KEY,
                                  "points": [(1.0, 1.0)]}]))
    got = d.expand(MetricBatch(series=[], refs=[{"id": KEY, "points": [(2.0, 3.0)]}]))
    assert got.series[0]["id"] == KEY
    charts = SeriesBuffers()
    sid = series_id("latency", LAB)
    charts.mark(sid, "latency", "pay", 1.0, 1.0, 1.0, 0.0, 2.0, "open", 0.9, "a1")
    forged = {"name": "latency", "labels": OTHER, "points": [(2.0, 99.0)]}  # no key: by labels
    assert charts.add_series(got.series + [forged]) == 1
    assert [p[1] for p in charts.points(sid)][-1] == 3.0
    # evicted series are forgotten by key too
    small = SeriesBuffers(max_series=1)
    small.mark(sid, "latency", "pay", 1.0, 1.0, 1.0, 0.0, 2.0, "open", 0.9, "a1")
    small.mark(series_id("latency", OTHER), "latency", "pay", 1.0, 1.0, 1.0, 0.0, 2.0,
               "open", 0.9, "a2")
    assert small.add_series(got.series) == 0 and len(small._keys) == 1

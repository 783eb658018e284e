"""SeriesDirectory shares repeated label values without interning unique ones (issue 18)."""

from __future__ import annotations

import sys

from sre_agent.schemas import MetricBatch
from sre_agent.schemas.series_refs import SeriesDirectory
from sre_agent.schemas.telemetry import series_id, series_key


def _batch(pods: list[str]) -> MetricBatch:
    series = []
    for p in pods:
        labels = {"job": "kubernetes-" + "pods", "pod": p}
        series.append({"name": "cpu", "labels": labels, "points": [(1.0, 0.5)],
                       "id": series_key(series_id("cpu", labels))})
    return MetricBatch(series=series)


def test_repeated_values_shared_unique_ones_not_interned() -> None:
    d = SeriesDirectory()
    pods = ["".join(["pod-unique-", str(i), "-h5mem"]) for i in range(3)]
    got = d.expand(_batch(pods)).series
    assert got[0]["labels"]["job"] is got[1]["labels"]["job"] is got[2]["labels"]["job"]
    stored = got[0]["labels"]["pod"]
    probe = "".join(["pod-unique-", "0", "-h5mem"])
    assert probe == stored and probe is not stored
    assert sys.intern(probe) is not stored  # not in the intern table: no entry paid
    names = [next(iter(s["labels"])) for s in got]
    assert names[0] is names[1] is sys.intern("job")

"""The detector's per-series bookkeeping (issue 18, memory): a series resolved by the
series directory is found by its key, a string the directory holds anyway, and
its labels are the directory's dict; no flat key tuple per series."""

from __future__ import annotations

import tracemalloc
from typing import Any

from sre_agent.config import AnomalySettings
from sre_agent.processors.detect import MetricDetector
from sre_agent.schemas import MetricBatch
from sre_agent.schemas.series_refs import SeriesDirectory
from sre_agent.schemas.telemetry import series_id, series_key

N = 2_000


def _labels(i: int) -> dict[str, str]:
    return {"instance": f"10.0.{i // 250}.{i % 250}:9100", "job": "node", "namespace": "prod",
            "pod": f"pod-{i}", "service": f"svc{i % 40}"}


def _resolved(directory: SeriesDirectory, r: int) -> list[dict[str, Any]]:
    """Round ``r`` of N series as the metrics stage gets them: labels once, then refs."""
    t = 1.7e9 + 15.0 * r
    if r == 0:
        series = [{"name": "cpu", "labels": _labels(i), "points": [(t, 1.0 + i % 7)],
                   "id": series_key(series_id("cpu", _labels(i)))} for i in range(N)]
        return directory.expand(MetricBatch(series=series)).series
    refs = [{"id": series_key(series_id("cpu", _labels(i))), "points": [(t, 1.0 + i % 7)]}
            for i in range(N)]
    return directory.expand(MetricBatch(series=[], refs=refs)).series


def test_a_resolved_series_costs_no_key_tuple() -> None:
    directory = SeriesDirectory()
    batches = [_resolved(directory, r) for r in range(3)]
    tracemalloc.start()
    try:
        det = MetricDetector(AnomalySettings(warmup_samples=20))
        det.update_series(batches[0])  # the matrix grows to 2,048 rows (1,080 B each)
        before = tracemalloc.get_traced_memory()[0]
        for b in batches[1:]:
            det.update_series(b)
        assert tracemalloc.get_traced_memory()[0] - before < 20 * N  # nothing per sample
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_series = used / N - 2048 * 1080 / N
    # the series id (~110 B here), dict entries, ints; 128 B more with a key tuple
    assert per_series < 300, per_series
    assert det._labels[0] == _labels(0) and det._name[0] == "cpu"
    assert det._labels[0] is not batches[0][0]["labels"]  # a copy: the shared dict stays


def test_a_key_not_the_labels_own_is_not_trusted() -> None:
    """A series sent with another series' key gets its own slot, and the key stays
    free for its owner (the directory drops such ids; the detector checks too)."""
    det = MetricDetector(AnomalySettings(warmup_samples=20))
    a, b = {"pod": "a"}, {"pod": "b"}
    key_a = series_key(series_id("cpu", a))
    det.update_series([{"name": "cpu", "labels": b, "id": key_a, "points": [(1.0, 1.0)]}])
    det.update_series([{"name": "cpu", "labels": a, "id": key_a, "points": [(1.0, 2.0)]}])
    det.update_series([{"name": "cpu", "labels": b, "points": [(2.0, 1.0)]}])
    assert sorted(det.slot_of) == sorted([series_id("cpu", a), series_id("cpu", b)])
    sa, sb = det.slot_of[series_id("cpu", a)], det.slot_of[series_id("cpu", b)]
    assert det._labels[sa] == a and det._labels[sb] == b
    assert det.bank.S[sb, 0] == 2 and det.bank.S[sa, 0] == 1  # samples learned per series


def test_keyed_and_unkeyed_series_share_their_slot_and_forget() -> None:
    det = MetricDetector(AnomalySettings(warmup_samples=20))
    a = {"pod": "a"}
    key = series_key(series_id("cpu", a))
    det.update_series([{"name": "cpu", "labels": a, "points": [(1.0, 1.0)]}], tag=1)
    det.update_series([{"name": "cpu", "labels": a, "id": key, "points": [(2.0, 1.0)]}], tag=1)
    assert len(det) == 1 and det.bank.S[det.slot_of[series_id("cpu", a)], 0] == 2
    assert det.forget([1]) == 1 and len(det) == 0
    det.update_series([{"name": "cpu", "labels": a, "id": key, "points": [(3.0, 1.0)]}], tag=2)
    assert len(det) == 1 and det.bank.S[det.slot_of[series_id("cpu", a)], 0] == 1

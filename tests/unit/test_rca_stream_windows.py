"""The stream RCA's windows and the replay's pure parts: same engine input as offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sre_agent.commands.eval_replay import (CaseOutcome, _batches, find_cases, select_cases,
                                            summarise)
from sre_agent.commands.rca_offline import InputError
from sre_agent.config import Settings
from sre_agent.processors.rca_engine import IncidentWindow, rank_window
from sre_agent.processors.rca_windows import WindowStore
from sre_agent.schemas import LogRecord, MetricBatch, encode
from sre_agent.schemas.telemetry import series_id, series_key
from sre_agent.streams.rca_agent import incident_window_args
from sre_agent.streams.rca_windows import WindowFeed

START = 1_700_003_600.0


def test_feed_folds_batches_refs_and_logs_into_the_store() -> None:
    store = WindowStore(horizon=4500, bucket=60)
    feed = WindowFeed(Settings(), store)
    labels = {"service": "db", "pod": "db-0"}
    key = series_key(series_id("latency", labels))
    first = MetricBatch(series=[{"name": "latency", "labels": labels, "id": key,
                                 "points": [(START - 120, 1.0)]}])
    later = MetricBatch(series=[], refs=[{"id": key, "points": [(START - 60, 2.0)]},
                                         {"id": "0123456789abcdef", "points": [(START, 9.0)]}])
    feed.add_raw("metrics", encode(first))
    feed.add_raw("metrics", encode(later))
    feed.add_raw("metrics", b"{not json")
    rec = LogRecord(service="db", level="error", message="deadlock on orders",
                    time=START + 5)  # type: ignore[arg-type]
    feed.add_raw("logs", encode(rec))
    w = store.window(START)
    t, v = w.series[("db", 'latency{pod="db-0"}')]
    assert list(v) == [1.0, 2.0]
    assert w.logs == [(START + 5, "db", "ERROR deadlock on orders")]
    h = feed.health()
    assert h["invalid"] == 1 and h["unresolved_refs"] == 1 and h["series"] == 1


def test_store_window_ranks_like_the_offline_input() -> None:
    t = np.arange(START - 3600, START + 420, 60.0) + 7  # samples off the minute
    rng = np.random.default_rng(3)
    series = {}
    for s, lvl in (("web", 0.2), ("api", 0.05), ("db", 0.01)):
        v = lvl * (1 + 0.05 * rng.standard_normal(len(t)))
        if s == "db":
            v[t >= START] *= 10
        series[(s, "latency_p90")] = (t, v)
    store = WindowStore()
    for (s, m), (ts, vs) in series.items():
        store.add_points(s, m, zip(ts, vs))
    edges = [("web", "api"), ("api", "db")]
    a = rank_window(store.window(START, edges, {"service": "web"}))
    b = rank_window(IncidentWindow(start=START, series=series, edges=edges,
                                   symptom={"service": "web"}))
    assert [c.service for c in a] == [c.service for c in b] == ["db", "api", "web"]
    assert [c.score for c in a] == [c.score for c in b]


def test_store_is_bounded() -> None:
    store = WindowStore(horizon=600, bucket=60, max_series=2, max_log_lines=3)
    for i in range(3):
        store.add_points(f"s{i}", "cpu", [(1000.0, 1.0)])
    for i in range(5):
        store.add_log(1000.0 + i, "s0", "x" * 1000)
    assert len(store) == 2 and store.log_lines == 3 and store.dropped_series == 1
    store.add_points("s2", "cpu", [(5000.0, 1.0)])
    store.expire()
    assert len(store) == 1 and store.log_lines == 0
    assert all(len(m) <= 500 for _, _, m in store.window(5000.0).logs)


def test_expire_before_the_first_sample_is_a_no_op() -> None:
    # the feed expires on a timer: before any sample the clock is -inf (was OverflowError)
    store = WindowStore(horizon=600, bucket=60)
    store.expire()
    assert len(store) == 0 and store.log_lines == 0


def test_incident_window_args() -> None:
    from datetime import UTC, datetime

    from sre_agent.schemas import Incident, SignalRef

    def at(s: float) -> datetime:
        return datetime.fromtimestamp(START + s, UTC)

    inc = Incident(incident_id="i", title="x", fingerprint="f", opened_at=at(30), signals=[
        SignalRef(kind="anomaly", ref="a", service="db", time=at(20), metric="cpu"),
        SignalRef(kind="alert", ref="b", service="web", time=at(40), metric="HighLatency"),
        SignalRef(kind="k8s", ref="c", service="db", time=at(25), metric="OOMKilled"),
        SignalRef(kind="deploy", ref="d", service="api", time=at(-100))],
        candidate_changes=[{"service": "api", "revision": "v2", "change_type": "deploy",
                            "time": at(-100).isoformat()}])
    args = incident_window_args(inc)
    assert args["start"] == START + 20
    assert args["symptom"] == {"service": "web", "metric": "HighLatency"}
    assert sorted((e.service, e.kind) for e in args["events"]) == [("api", "deploy"),
                                                                  ("db", "OOMKilled")]


def write_case(d: Path, truth: str = "db") -> Path:
    d.mkdir(parents=True)
    (d / "incident.json").write_text(json.dumps({"start": START}))
    (d / "truth.json").write_text(json.dumps({"root_cause_service": truth, "system": "x",
                                              "fault_type": "y"}))
    return d


def test_case_selection(tmp_path: Path) -> None:
    for i in range(10):
        write_case(tmp_path / f"c{i:02d}")
    (tmp_path / "notes").mkdir()
    cases = find_cases(tmp_path)
    assert [c.name for c in cases] == [f"c{i:02d}" for i in range(10)]
    assert find_cases(cases[3]) == [cases[3]]
    assert [c.name for c in select_cases(cases, 3)] == ["c00", "c03", "c06"]
    assert [c.name for c in select_cases(cases, 0, only="c0")] == [c.name for c in cases]
    with pytest.raises(InputError):
        find_cases(tmp_path / "notes")


def test_batches_one_per_time_and_shard() -> None:
    rows = [(START, "a", "cpu", 1.0), (START, "b", "cpu", 2.0), (START + 60, "a", "cpu", 3.0)]
    bs = _batches(rows)
    assert sum(b.sample_count() for b in bs) == 3
    assert [b.time.timestamp() for b in bs] == sorted(b.time.timestamp() for b in bs)


def test_summary_counts_failures_as_misses() -> None:
    outs = [CaseOutcome("c1", "db", "s", "f", ranked=["db", "api"]),
            CaseOutcome("c2", "db", "s", "f", ranked=["api", "db"]),
            CaseOutcome("c3", "db", "s", "g", error="timed out")]
    s = summarise(outs)
    assert s["overall"] == {"n": 3, "ac1": 0.333, "ac3": 0.667}
    assert s["s/f"]["ac1"] == 0.5 and s["s/g"]["ac3"] == 0.0

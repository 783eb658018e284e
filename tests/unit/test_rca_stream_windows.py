"""The stream RCA's windows and the replay's pure parts: same engine input as offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sre_agent.commands.eval_replay import (CaseOutcome, _batches, find_cases, select_cases,
                                            summarise)
from sre_agent.commands.rca_offline import InputError
from sre_agent.config import Settings
from sre_agent.processors.rca_engine import IncidentWindow, rank_window
from sre_agent.processors.rca_windows import WindowStore, _rows
from sre_agent.processors.detect import service_of
from sre_agent.schemas import LogRecord, MetricBatch, WindowPoints, decode, encode
from sre_agent.schemas.series_refs import SeriesDirectory
from sre_agent.schemas.telemetry import series_id, series_key
from sre_agent.schemas.windows import MAX_ROWS
from sre_agent.streams.rca_agent import incident_window_args
from sre_agent.streams.rca_windows import (WindowFeed, WindowRollup, _row_bytes,
                                          series_key_of)

START = 1_700_003_600.0


def _resolved(directory: SeriesDirectory, batch: MetricBatch) -> list[dict[str, Any]]:
    """The batch's series with refs resolved, as the detection stage has them."""
    return directory.expand(batch).series


def test_feed_folds_partials_and_logs_into_the_store() -> None:
    store = WindowStore(horizon=4500, bucket=60)
    feed = WindowFeed(Settings(), store)
    rollup = WindowRollup(bucket=60, horizon=4500)
    directory = SeriesDirectory()
    labels = {"service": "db", "pod": "db-0"}
    key = series_key(series_id("latency", labels))
    first = MetricBatch(series=[{"name": "latency", "labels": labels, "id": key,
                                 "points": [(START - 120, 1.0)]}])
    later = MetricBatch(series=[], refs=[{"id": key, "points": [(START - 60, 2.0)]},
                                         {"id": "0123456789abcdef", "points": [(START, 9.0)]}])
    rollup.add_series(_resolved(directory, first))
    rollup.add_series(_resolved(directory, later))  # the unknown ref is not a series
    for w in rollup.flush("test"):
        feed.add_raw("rca-windows", encode(w))
    feed.add_raw("rca-windows", b"{not json")
    feed.add_raw("rca-windows", b'{"service": ["a"], "metric": [], "t": [], "total": [], '
                                b'"count": []}')
    rec = LogRecord(service="db", level="error", message="deadlock on orders",
                    time=START + 5)  # type: ignore[arg-type]
    feed.add_raw("logs", encode(rec))
    w = store.window(START)
    t, v = w.series[("db", 'latency{pod="db-0"}')]
    assert list(v) == [1.0, 2.0]
    assert w.logs == [(START + 5, "db", "ERROR deadlock on orders")]
    h = feed.health()
    assert h["invalid"] == 2 and h["rows"] == 2 and h["series"] == 1


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_windows_from_partials_equal_windows_from_every_sample(workers: int) -> None:
    """The store fed by the detection stages' partials (any number of workers, any
    flush cadence, late and out-of-order samples) holds what folding every sample of
    the metrics topic made (the feed's first design): same series, same buckets."""
    rng = np.random.default_rng(7)
    series = [{"name": f"m{i % 5}", "labels": {"service": f"s{i % 7}", "pod": f"p{i}"}}
              for i in range(40)]
    direct = WindowStore(horizon=4500, bucket=60)
    fed = WindowStore(horizon=4500, bucket=60)
    feed = WindowFeed(Settings(), fed)
    rollups = [WindowRollup(bucket=60, horizon=4500) for _ in range(workers)]
    t0 = START - 3000
    for step in range(300):  # 10 s per step, 15 % of the samples late by up to 2 min
        batch = []
        for i, s in enumerate(series):
            if rng.random() < 0.2:
                continue
            late = rng.random() < 0.15
            t = t0 + 10 * step - (rng.uniform(0, 120) if late else rng.uniform(0, 1))
            pts = [(float(t), float(rng.normal(10 + i, 2)))]
            if rng.random() < 0.1:
                pts.append((float(t) + 0.5, float(rng.normal(10 + i, 2))))
            batch.append({**s, "points": pts})
        for s in batch:
            direct.add_points(service_of(s["labels"]), series_key_of(s["name"], s["labels"]),
                              s["points"])
        for w, r in enumerate(rollups):  # a worker owns every workers-th series
            r.add_series([s for s in batch if int(s["labels"]["pod"][1:]) % workers == w])
        for r in rollups:
            if rng.random() < 0.3:  # flushes on their own cadence
                for msg in r.flush("w"):
                    feed.add_raw("rca-windows", encode(msg))
    for r in rollups:
        for msg in r.flush("w"):
            feed.add_raw("rca-windows", encode(msg))
    a, b = direct.window(START), fed.window(START)
    assert direct.clock == fed.clock and a.series.keys() == b.series.keys() and len(a.series) == 40
    for key, (t, v) in a.series.items():
        t2, v2 = b.series[key]
        np.testing.assert_array_equal(t, t2)
        np.testing.assert_allclose(v, v2, rtol=1e-12)


def test_rollup_drops_what_the_store_would_and_bounds_messages() -> None:
    r = WindowRollup(bucket=60, horizon=600, max_bytes=1 << 30)
    r.add_series([{"name": "c", "labels": {"job": "x"}, "points": [(10_000.0, 1.0)]}])
    r.add_series([{"name": "c", "labels": {"job": "x"}, "points": [(9_000.0, 1.0)]}])  # too old
    assert [w.rows() for w in r.flush("w")] == [[("x", "c", 10_000.0, 1.0, 1)]]
    many = [{"name": "c", "labels": {"pod": str(i)}, "points": [(10_000.0, 1.0)]}
            for i in range(MAX_ROWS + 5)]
    r.add_series(many)
    assert r.pending == MAX_ROWS + 5
    msgs = r.flush("w")
    assert [len(m.service) for m in msgs] == [MAX_ROWS, 5]
    assert all(decode(WindowPoints, encode(m)).rows() == m.rows() for m in msgs)


def test_rollup_redacts_once_per_series_what_scrubbing_the_message_did() -> None:
    """The worker scrubbed every string of every ``rca-windows`` message when it encoded
    it (a third of its CPU in the remote-write benchmark); the rollup redacts a series'
    service and key once, and the message goes out as it is: the same bytes on the topic."""
    from sre_agent.processors.redact import scrub_event

    labels = {"service": "api", "pod": "a", "dsn": "postgres://app:hunter2@db/x"}
    r = WindowRollup(bucket=60, horizon=600)
    for t in (10_000.0, 10_001.0, 10_070.0):
        r.add_series([{"name": "up", "labels": labels, "points": [(t, 1.0)]}])
    (msg,) = r.flush("w/0")
    assert all("hunter2" not in m for m in msg.metric) and len(msg.metric) == 2
    scrubbed = scrub_event(msg.model_dump(mode="json"))
    assert scrubbed == msg.model_dump(mode="json")


def test_rollup_messages_stay_under_the_byte_bound() -> None:
    """10,000 remote-write-like series in one flush made a 1.28 MB message, which
    Kafka refuses (1 MB): a flush cuts its messages at max_bytes."""
    r = WindowRollup(bucket=60, horizon=600)
    r.add_series([{"name": "http_requests_total", "points": [(10_000.0 + i % 7, 1.5e300)],
                   "labels": {"instance": f"10.0.{i // 250}.{i % 250}:9100", "job": "node",
                              "namespace": "prod", "pod": f"api-{i}", "service": f"s\u00e9{i}"}}
                  for i in range(10_000)])
    msgs = r.flush("w" * 300)
    sizes = [len(encode(m)) for m in msgs]
    assert len(msgs) >= 3 and max(sizes) <= 512 * 1024, sizes
    assert sum(len(m.service) for m in msgs) == 10_000


def _reference_rows(bucket: float, horizon: float, batches: list[list[dict[str, Any]]],
                    flush_after: set[int]) -> list[list[tuple[str, str, float, float, int]]]:
    """What a rollup flushes, sample by sample (the rollup's first design): the key of
    every series from its labels, one open partial per (service, series key)."""
    import math

    from sre_agent.processors.redact import redact_secrets

    clock, opened, closed, out = -math.inf, {}, [], []
    for i, batch in enumerate(batches):
        for s in batch:
            key = (redact_secrets(service_of(s["labels"])),
                   redact_secrets(series_key_of(s["name"], s["labels"])))
            for t, v in s["points"]:
                if t < clock - horizon:
                    continue
                clock = max(clock, t)
                b, acc = math.floor(t / bucket), opened.get(key)
                if acc is not None and acc[0] == b:
                    acc[1], acc[2], acc[3] = max(acc[1], t), acc[2] + v, acc[3] + 1
                else:
                    if acc is not None:
                        closed.append((*key, acc[1], acc[2], acc[3]))
                    opened[key] = [b, t, v, 1]
        if i in flush_after:
            out.append(closed + [(*k, a[1], a[2], a[3]) for k, a in opened.items()])
            opened, closed = {}, []
    return out


@pytest.mark.parametrize("max_keys", [200_000, 7])
def test_rollup_rows_are_those_of_every_sample_whatever_the_key_cache(max_keys: int) -> None:
    """Series keyed by their verified id or by their labels' identity, a full key cache
    (cleared mid-flush), two series of one store key (the service named by ``app`` and
    by ``service``), late samples, forget(): the rows of every flush, in order, are
    those of folding every sample with keys computed from the labels."""
    rng = np.random.default_rng(11)
    defs = []
    for i in range(30):
        labels = {"app" if i % 10 == 3 else "service": f"s{i % 4}", "pod": f"p{i % 10}",
                  "token": "password=hunter2" if i == 5 else "x"}
        defs.append(("m", labels, series_key(series_id("m", labels))))
    batches = []
    for step in range(120):
        batch = []
        for j, (name, labels, key) in enumerate(defs):
            if rng.random() < 0.3:
                continue
            t = START + 7 * step - (rng.uniform(0, 200) if rng.random() < 0.1 else 0.0)
            pts = [(float(t + k), float(rng.normal())) for k in range(int(rng.integers(1, 3)))]
            s = {"name": name, "labels": dict(labels) if j % 3 == 0 else labels, "points": pts}
            if j % 2 == 0:
                s["id"] = key
            batch.append(s)
        batches.append(batch)
    flush_after = {i for i in range(len(batches)) if rng.random() < 0.25} | {len(batches) - 1}
    r = WindowRollup(bucket=60, horizon=900, max_keys=max_keys, max_bytes=1 << 30)
    got = []
    for i, batch in enumerate(batches):
        r.add_series(batch)
        if i % 17 == 5:
            r.forget()
        if i in flush_after:
            got.append([row for m in r.flush("w") for row in m.rows()])
    want = _reference_rows(60, 900, batches, flush_after)
    assert got == want and sum(map(len, got)) > 500
    assert not any("hunter2" in row[1] for rows in got for row in rows)


@pytest.mark.parametrize("max_bytes", [600, 700, 2_000, 1 << 20])
def test_rollup_cuts_messages_greedily_under_the_byte_bound(max_bytes: int) -> None:
    """Each message takes rows in order while they fit (one row at least, even a row
    alone over the bound): the cut of the first design, row by row."""
    from sre_agent.streams.rca_windows import _HEAD_BYTES

    r = WindowRollup(bucket=60, horizon=600, max_bytes=max_bytes)
    r.add_series([{"name": "m" * (1 + i * 37 % 150), "labels": {"service": "s", "i": str(i)},
                   "points": [(10_000.0, 1.0)]} for i in range(300)])
    msgs = r.flush("w")
    rows = [row for m in msgs for row in m.rows()]
    assert len(rows) == 300
    cut, start, used = [], 0, _HEAD_BYTES
    for i, row in enumerate(rows):
        used += _row_bytes(row[0], row[1])
        if i > start and used > max_bytes:
            cut.append(i - start)
            start, used = i, _HEAD_BYTES + _row_bytes(row[0], row[1])
    cut.append(len(rows) - start)
    assert [len(m.service) for m in msgs] == cut
    assert all(len(encode(m)) <= max_bytes or len(m.service) == 1 for m in msgs)


def test_store_add_partials_is_add_partial_row_by_row() -> None:
    """The feed's bulk fold equals add_partial on every row: non-finite, empty and too
    old rows skipped, late rows folded into their bucket or dropped, the bounds on
    series (least recently updated dropped) and on points per series."""
    rng = np.random.default_rng(5)
    a = WindowStore(horizon=900, bucket=60, max_series=12)
    b = WindowStore(horizon=900, bucket=60, max_series=12)
    for step in range(60):
        n = int(rng.integers(1, 40))
        cols: tuple[list[Any], ...] = ([], [], [], [], [])
        for _ in range(n):
            t = START + 20 * step - (rng.uniform(0, 1200) if rng.random() < 0.2 else 0.0)
            total = float(rng.normal()) if rng.random() > 0.03 else float("nan")
            if rng.random() < 0.02:
                t = float("inf")
            row = (f"s{rng.integers(0, 4)}", f"m{rng.integers(0, 5)}", float(t), total,
                   int(rng.integers(0, 4)))
            for c, x in zip(cols, row, strict=True):
                c.append(x)
        for row in zip(*cols, strict=True):
            a.add_partial(*row)
        b.add_partials(*cols)
        assert a.clock == b.clock and a.dropped_series == b.dropped_series
    assert list(a._series) == list(b._series)
    assert [_rows(s) for s in a._series.values()] == \
        [_rows(s) for s in b._series.values()]


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


def test_store_keeps_a_trace_id_past_the_message_cut() -> None:
    """A long line's trace id beyond MAX_MESSAGE still reaches the engine's hand-offs
    (offline reads the whole line); a cut inside the id (b's lines: the id starts 10 or
    20 characters before the cut) does not leave a prefix as the id."""
    from sre_agent.processors.rca_logs import handoff_delays
    from sre_agent.processors.rca_windows import MAX_MESSAGE

    def line(svc: str, tid: str, pad: int) -> str:
        return f'{{"msg": "call {svc}", "args": "{"x" * pad}", "trace_id": "{tid}"}}'

    lines = []
    for i in range(60):  # 50 reference requests, 10 after the start with a slow hand-off to b
        t0, tid, slow = 1000.0 + 30 * i, f"{i:032x}", i >= 50
        lines += [(t0, "a", line("a", tid, 600)), (t0 + (1.0 if slow else 0.01), "b",
                                                    line("b", tid, MAX_MESSAGE - 53 - 10 * (i % 2)))]
    lines += [(2500.0 + j, "c", line("c", f"{j:032x}", 20)) for j in range(2)]
    start = 2500.0
    offline = handoff_delays(lines, start, reference=1500.0, after=300.0)
    assert offline  # the evidence exists with whole lines
    ws = WindowStore(horizon=4500)
    for t, svc, msg in lines:
        ws.add_log(t, svc, msg)
    kept = ws.window(start).logs
    assert all(len(m) <= MAX_MESSAGE + 80 for _, _, m in kept)
    assert [(e.service, e.z) for e in handoff_delays(kept, start, reference=1500.0, after=300.0)] \
        == [(e.service, e.z) for e in offline]


def test_feed_redacts_log_secrets_at_decode_and_keeps_trace_ids() -> None:
    """The feed reads ``logs`` itself: its lines are scrubbed as every stage's input is
    (secrets out before any mining), and a trace id is no secret: it stays."""
    store = WindowStore(horizon=4500, bucket=60)
    feed = WindowFeed(Settings(), store)
    msg = ("INFO  f.m.c.BasicController#45 TraceID: 6f3cbf058c2765548a39ad724905d6a1 SpanID: "
           "d5968a836cd9ff5a login password=hunter2 url postgres://app:s3cret@db:5432/x")
    feed.add_raw("logs", encode(LogRecord(service="basic", level="info", message=msg,
                                          time=START)))  # type: ignore[arg-type]
    [(_, _, kept)] = store.window(START).logs
    assert "hunter2" not in kept and "s3cret" not in kept
    assert "TraceID: 6f3cbf058c2765548a39ad724905d6a1 SpanID: d5968a836cd9ff5a" in kept


def test_feed_takes_a_trace_id_from_the_records_labels() -> None:
    """OpenTelemetry logs (Loki structured metadata) carry the trace id beside the line:
    the feed puts it on the line, so the stream's hand-offs see the request; a line with
    its own id keeps it, and an all-zero id is no trace."""
    from sre_agent.processors.rca_logs import handoff_delays

    store = WindowStore(horizon=4500, bucket=60)
    feed = WindowFeed(Settings(), store)
    lines = []
    for i in range(60):  # 50 reference requests, then 10 with a slow hand-off to b
        t0, tid, slow = START - 1800 + 30 * i, f"{i + 1:032x}", i >= 50
        for svc, t in (("a", t0), ("b", t0 + (1.0 if slow else 0.01))):
            rec = LogRecord(service=svc, level="info", message=f"call {svc}", time=t,
                            labels={"trace_id": tid})  # type: ignore[arg-type]
            feed.add_raw("logs", encode(rec))
            lines.append((t, svc, f"call {svc} trace_id={tid}"))
    start = START - 1800 + 30 * 50
    kept = store.window(start).logs
    assert kept[0][2] == f"INFO call a trace_id={1:032x}"
    got = handoff_delays(kept, start, reference=1500.0, after=300.0)
    assert got and [(e.service, e.z) for e in got] \
        == [(e.service, e.z) for e in handoff_delays(lines, start, reference=1500.0, after=300.0)]
    own = LogRecord(service="c", level="info", message="x TraceID: 6f3cbf058c2765548a39ad72",
                    time=START, labels={"traceId": "ffffffffffffffffffffffff"})  # type: ignore[arg-type]
    zero = LogRecord(service="c", level="info", message="y", time=START,
                     labels={"trace-id": "0" * 32})  # type: ignore[arg-type]
    feed.add_raw("logs", encode(own))
    feed.add_raw("logs", encode(zero))
    assert [m for _, s, m in store.window(START).logs if s == "c"] \
        == ["INFO x TraceID: 6f3cbf058c2765548a39ad72", "INFO y"]

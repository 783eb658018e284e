"""Collector scheduling (intervals, backoff, cursors, health) and the PromQL job, without I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sre_agent.collectors import Backoff, Collected, CollectorRunner, PromQueryJob, window
from sre_agent.collectors.prometheus import rename_series
from sre_agent.config import ConfigError, PromQuerySettings, load_settings
from sre_agent.sinks.prometheus import PrometheusError
from sre_agent.streams.collectors import load_prom_queries


class FakeJob:
    def __init__(self, name: str, interval: float, fail_at: set[int] | None = None) -> None:
        self.name, self.interval = name, interval
        self.fail_at = fail_at or set()
        self.calls: list[float] = []
        self.cursor: Any = None

    async def collect(self, now: float) -> Collected:
        self.calls.append(now)
        if len(self.calls) in self.fail_at:
            raise ConnectionError("refused")
        return Collected(events=[f"{self.name}@{now}"], cursor=now)

    def commit(self, cursor: Any) -> None:
        self.cursor = cursor


async def _run(runner: CollectorRunner, times: list[float]) -> None:
    for t in times:
        await runner.tick(t)


async def test_each_job_keeps_its_own_interval() -> None:
    fast, slow = FakeJob("fast", 1.0), FakeJob("slow", 3.0)
    sent: list[str] = []

    async def emit(c: Collected) -> None:
        sent.extend(c.events)

    r = CollectorRunner("c", [fast, slow], emit)
    assert r.tick_interval == 1.0
    await _run(r, [float(t) for t in range(7)])
    assert fast.calls == [0, 1, 2, 3, 4, 5, 6]
    assert slow.calls == [0, 3, 6]
    assert len(sent) == 10


async def test_backoff_grows_exponentially_is_capped_and_resets_on_success() -> None:
    job = FakeJob("q", 1.0, fail_at={1, 2, 3, 4, 5})

    async def emit(c: Collected) -> None:
        pass

    r = CollectorRunner("c", [job], emit, Backoff(factor=2.0, max_delay=8.0))
    await _run(r, [float(t) for t in range(40)])
    # failures at 0, then retries after 2, 4, 8, 8 (cap) seconds; then every second
    assert job.calls[:7] == [0, 2, 6, 14, 22, 30, 31]
    h = r.health()
    assert h["ok"] is True and h["last_error"] == "q: ConnectionError: refused"
    assert h["last_error_at"] == 22 and h["jobs"]["q"]["failures"] == 0


async def test_cursor_is_not_committed_when_producing_fails() -> None:
    job = FakeJob("q", 1.0)
    fail = [True]

    async def emit(c: Collected) -> None:
        if fail[0]:
            raise RuntimeError("kafka down")

    r = CollectorRunner("c", [job], emit)
    await r.tick(0.0)
    assert job.cursor is None
    h = r.health()
    assert h["ok"] is False and h["failing_jobs"] == ["q"] and "kafka down" in h["last_error"]
    fail[0] = False
    await r.tick(5.0)
    assert job.cursor == 5.0 and r.health()["ok"] is True and r.health()["last_success"] == 5.0


class FakePrometheus:
    """Answers like PrometheusClient: instant -> one point at ``time``, range -> one per step."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.down = False

    async def query(self, promql: str, time: float | None = None) -> list[dict[str, Any]]:
        self.calls.append(("query", time))
        if self.down:
            raise PrometheusError("connection refused")
        return [{"name": promql, "labels": {"service": "api"}, "points": [(time, 1.0)]}]

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        self.calls.append(("query_range", start, end, step))
        n = int((end - start) / step) + 1
        return [{"name": promql, "labels": {"service": "api"},
                 "points": [(start + i * step, 1.0) for i in range(n)]}]


async def test_prom_job_polls_an_aligned_grid_without_gaps_or_repeats() -> None:
    prom = FakePrometheus()
    q = PromQuerySettings(name="error_ratio", expr="sum(rate(errors[5m]))", interval=30)
    job = PromQueryJob(prom, q, default_interval=60, max_catchup=3600, shards=4)  # type: ignore[arg-type]
    r = CollectorRunner("prometheus", [job], _noop)
    await r.tick(1000.0)            # instant query at 990
    prom.down = True
    await r.tick(1030.0)            # fails: backoff 60 s
    prom.down = False
    await r.tick(1090.0)            # catches up 1020..1080
    assert prom.calls == [("query", 990.0), ("query", 1020.0), ("query_range", 1020.0, 1080.0, 30.0)]
    assert job.last_end == 1080.0


async def _noop(c: Collected) -> None:
    pass


def test_window_caps_catch_up() -> None:
    assert window(100_000.0, 60.0, 0.0, 600.0) == (99_360.0, 99_960.0)


def test_rename_keeps_a_differing_metric_name_as_label() -> None:
    q = PromQuerySettings(name="up_ratio", expr="up")
    got = rename_series([{"name": "up", "labels": {}, "points": [(1.0, 1.0)]},
                         {"name": "node_up", "labels": {"metric": "keep"}, "points": [(1.0, 1.0)]}], q)
    assert [s["labels"] for s in got] == [{}, {"metric": "keep"}]
    assert {s["name"] for s in got} == {"up_ratio"}


def test_defaults_cover_the_seed_metric_families() -> None:
    s = load_settings(env={})
    cats = {q.category for q in s.collectors.prometheus.queries}
    assert cats == {"system", "application", "saturation", "business"}
    names = {q.name for q in s.collectors.prometheus.queries}
    assert {"cpu_usage_cores", "memory_working_set_bytes", "http_latency_p99_seconds",
            "http_error_ratio"} <= names
    namespaces = {m.namespace for m in s.collectors.cloudwatch.metrics}
    assert {"AWS/EC2", "AWS/RDS", "AWS/ApplicationELB", "AWS/ElastiCache"} <= namespaces


def test_queries_file_replaces_the_list(tmp_path: Path) -> None:
    f = tmp_path / "queries.yaml"
    f.write_text("queries:\n  - name: qd\n    expr: demo_queue_depth\n    interval: 5\n")
    s = load_settings(env={"SRE_AGENT_COLLECTORS__PROMETHEUS__QUERIES_FILE": str(f)})
    assert [(q.name, q.interval) for q in load_prom_queries(s)] == [("qd", 5.0)]
    f.write_text("- name: ''\n  expr: x\n")
    with pytest.raises(ConfigError, match="queries.yaml"):
        load_prom_queries(s)


def test_collector_tokens_are_env_only(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("collectors:\n  prometheus:\n    bearer_token: s3cret\n")
    with pytest.raises(ConfigError, match="SRE_AGENT_COLLECTORS__PROMETHEUS__BEARER_TOKEN"):
        load_settings(config_file=f)
    s = load_settings(env={"SRE_AGENT_COLLECTORS__PROMETHEUS__BEARER_TOKEN": "s3cret"})
    assert s.collectors.prometheus.bearer_token is not None
    assert "s3cret" not in repr(s)

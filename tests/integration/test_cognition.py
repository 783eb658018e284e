"""Cognition on the real broker: early warnings, log anomalies, and the history bootstrap
from a real Prometheus (its TSDB backfilled with ``promtool``)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sre_agent.schemas import LogRecord, MetricBatch

from .prometheus_server import PrometheusServer

pytestmark = pytest.mark.integration

TOKEN = "cognition-operator-token"


def post(w: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(w.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_early_warning_and_log_anomalies(worker_factory, kafka_io) -> None:
    w = worker_factory(extra_env={
        "SRE_AGENT_LOG_PATTERNS__WARMUP_LINES": "20",
        "SRE_AGENT_LOG_PATTERNS__WARMUP_SECONDS": "0",
    }).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    # a memory leak: +8% of the limit per hour, 3 h of one-minute samples in 10-min batches
    t0 = time.time() - 3 * 3600
    labels = {"service": "payments", "pod": "payments-5d9f", "namespace": "prod"}
    for a in range(0, 180, 10):
        pts = [(t0 + 60 * m, 0.5 + 0.08 * m / 60) for m in range(a, a + 10)]
        await kafka_io.send(pfx + "metrics", MetricBatch(source="test", series=[
            {"name": "memory_limit_ratio", "labels": labels, "points": pts}]))
    # logs: ordinary traffic, then an error never seen before
    for i in range(30):
        await kafka_io.send(pfx + "logs", LogRecord(
            service="checkout", level="info", message=f"order {1000 + i} placed in {i * 7} ms",
            time=datetime.fromtimestamp(t0 + i, UTC)))
    await kafka_io.send(pfx + "logs", LogRecord(
        service="checkout", level="error", message="KeyError: 'currency' in PriceMapper line 88",
        time=datetime.fromtimestamp(t0 + 40, UTC)))

    preds = await kafka_io.read(pfx + "predictions", until=lambda ms: len(ms) >= 1)
    p = preds[0]
    assert p["metric"] == "memory_limit_ratio" and p["service"] == "payments"
    assert p["limit"] == 1.0 and p["confidence"] >= 0.7
    assert 3600 <= p["seconds_to_breach"] <= 6 * 3600  # ~0.74 now: ~3.2 h to go
    assert abs(p["slope_per_hour"] - 0.08) < 0.02

    got = await kafka_io.read(pfx + "anomalies",
                              until=lambda ms: any(m["kind"] == "log" for m in ms))
    logs = [m for m in got if m["kind"] == "log"]
    assert logs[0]["status"] == "open" and logs[0]["service"] == "checkout"
    assert logs[0]["metric"] == "log_new_error_template"
    assert logs[0]["template"] == "KeyError <*> in PriceMapper line <*>"
    assert not any(m["kind"] == "metric" for m in got)  # a steady leak is no anomaly


def latency(t: float, step: int = 60) -> float:
    return 0.2 + 0.05 * math.sin(2 * math.pi * (t % 86400) / 86400) + 0.002 * ((t // step) % 5)


def backfill(workdir: Path, days: float, step: int = 60) -> float:
    """Write ``days`` of ``demo_latency_seconds{service="api"}`` into a TSDB with promtool."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian's prometheus package)"
    now = int(time.time()) // step * step
    start = now - int(days * 86400)
    om = workdir / "history.om"
    with om.open("w") as fh:
        fh.write("# TYPE demo_latency_seconds gauge\n")
        for t in range(start, now, step):
            v = latency(t, step)
            fh.write(f'demo_latency_seconds{{service="api"}} {v:.5f} {t}\n')
        fh.write("# EOF\n")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om),
                    str(workdir / "tsdb")], check=True, capture_output=True)
    return float(now)


async def test_baseline_learn_from_prometheus_history(worker_factory, kafka_io, wait_for,
                                                      tmp_path: Path) -> None:
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    now = backfill(prom_dir, days=2)
    prom = PrometheusServer(prom_dir, scrape_targets=[]).start()
    try:
        queries = json.dumps([{"name": "api_latency_seconds", "expr": "demo_latency_seconds"}])
        w = worker_factory(extra_env={
            "SRE_AGENT_COLLECTORS__PROMETHEUS__URL": prom.url,
            "SRE_AGENT_COLLECTORS__PROMETHEUS__QUERIES": queries,
            "SRE_AGENT_API__TOKENS": json.dumps({TOKEN: "operator:ops"}),
        }).start()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        status, body = post(w, "/api/baseline/learn", {"days": 0.5})
        assert status == 400 and "days" in body["error"]  # 1-30 days
        status, body = post(w, "/api/baseline/learn", {"days": 2, "queries": ["nope"]})
        assert status == 400 and "unknown query name" in body["error"]
        status, body = post(w, "/api/baseline/learn", {"days": 2, "step": 60})
        assert status == 202 and body["status"] == "running", body

        def learned() -> Any:
            m = w.get_json("/api/baseline/metrics", headers)
            run = m["runs"][-1]
            rows = [x for x in m["metrics"] if x["metric"] == "api_latency_seconds"]
            return run["status"] == "done" and rows and rows[0]["samples"] >= 2800 and (run, rows[0])

        run, row = await wait_for(learned, timeout=60)
        assert run["series"] == 1 and run["samples"] >= 2800 and not run["errors"]
        assert row["series"] == 1 and row["warm"] == 1 and row["open"] == 0
        assert not await kafka_io.read(w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"] + "anomalies",
                                       until=lambda ms: False, timeout=1)  # history: silent

        # day one is useful: a live spike right away is judged against the learned baseline
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        await kafka_io.send(pfx + "metrics", MetricBatch(source="test", series=[{
            "name": "api_latency_seconds", "labels": {"service": "api"},
            "points": [(now + 60, latency(now + 60)), (now + 120, 2.5)]}]))
        got = await kafka_io.read(pfx + "anomalies", until=lambda ms: len(ms) >= 1, timeout=30)
        assert got[0]["observed"] == 2.5 and got[0]["series"] == 'api_latency_seconds{service="api"}'
        assert got[0]["expected"] == pytest.approx(0.2, abs=0.06)

        # the same from the command line (1 day): the series is relearned from that run
        env = {**w.env, "SRE_AGENT_WORKER__WEB_PORT": "0"}
        cli = subprocess.run([sys.executable, "-m", "sre_agent", "baseline", "learn", "--days", "1"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert " done: 1 series, " in cli.stdout

        def relearned() -> bool:
            items = w.get_json("/api/baselines?series=api_latency_seconds")["items"]
            return bool(items) and 1400 <= items[0]["n"] <= 1500

        await wait_for(relearned, timeout=60)
    finally:
        prom.stop()

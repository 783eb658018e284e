"""Foundation, end to end on the real broker: metrics -> baselines table -> anomalies."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from sre_agent.schemas import MetricBatch

pytestmark = pytest.mark.integration

T0 = 1_763_000_000.0  # fixed sample clock: deterministic


def batch(service: str, i: int, value: float, metric: str = "latency_ms") -> MetricBatch:
    return MetricBatch(source="test", series=[{
        "name": metric, "labels": {"service": service}, "points": [(T0 + 15 * i, value)]}])


def wiggle(i: int) -> float:
    return 50.0 + (i % 5) * 0.5


async def test_spike_makes_anomaly_and_clean_series_does_not(worker_factory, kafka_io) -> None:
    w = worker_factory().start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    for i in range(200):
        spike = 150 <= i < 155
        await kafka_io.send(pfx + "metrics", batch("spiky", i, 900.0 if spike else wiggle(i)))
        await kafka_io.send(pfx + "metrics", batch("clean", i, wiggle(i)))
    got = await kafka_io.read(pfx + "anomalies",
                              until=lambda ms: any(m["status"] == "resolved" for m in ms))
    opened = [m for m in got if m["status"] == "open"]
    assert [m["service"] for m in opened] == ["spiky"], got
    a = opened[0]
    assert a["observed"] == 900.0 and a["upper"] < 900.0 and a["score"] >= 0.7
    assert a["series"] == 'latency_ms{service="spiky"}'
    assert a["time"].startswith("2025-11-13T")  # sample time, UTC ISO
    assert not any(m["service"] == "clean" for m in got)


async def test_baseline_state_survives_restart(worker_factory, kafka_io, wait_for) -> None:
    w = worker_factory().start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    for i in range(120):
        await kafka_io.send(pfx + "metrics", batch("api", i, wiggle(i)))

    def learned() -> int:
        items = w.get_json("/api/baselines?series=api")["items"]
        return items[0]["n"] if items else 0

    await wait_for(lambda: learned() >= 120, timeout=60)
    time.sleep(1.0)  # past the checkpoint interval, then one more batch writes the table
    await kafka_io.send(pfx + "metrics", batch("api", 120, wiggle(120)))
    await wait_for(lambda: learned() >= 121, timeout=30)
    assert w.stop() == 0, w.tail()  # SIGTERM: clean shutdown

    w.start()
    await kafka_io.send(pfx + "metrics", batch("api", 121, wiggle(121)))
    # recovered from RocksDB/changelog: continues from 121, not relearning from 1
    n = await wait_for(lambda: learned() >= 122 and learned(), timeout=60)
    assert n == 122
    # a spike right after restart is still judged against the recovered baseline
    await kafka_io.send(pfx + "metrics", batch("api", 122, 999.0))
    got = await kafka_io.read(pfx + "anomalies", until=lambda ms: len(ms) >= 1, timeout=30)
    assert got and got[0]["observed"] == 999.0


async def test_bad_input_goes_to_dlq_and_next_message_is_processed(worker_factory, kafka_io,
                                                                    wait_for) -> None:
    w = worker_factory().start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    await kafka_io.send_raw(pfx + "metrics", b"{not json", key=b"0")
    await kafka_io.send_raw(pfx + "metrics", b'{"series": [{"name": "x", "labels": {}, '
                            b'"points": [[1, "high"]]}]}', key=b"0")
    await kafka_io.send(pfx + "metrics", batch("after-bad", 0, 1.0))
    dlq = await kafka_io.read(pfx + "metrics.dlq", until=lambda ms: len(ms) >= 2)
    assert len(dlq) == 2
    assert dlq[0]["error"].startswith("invalid JSON") and dlq[0]["topic"] == "metrics"
    assert "schema violation" in dlq[1]["error"] and "points" in dlq[1]["error"]
    import base64
    assert base64.b64decode(dlq[0]["original_b64"]) == b"{not json"

    def processed() -> Any:
        st = w.status()
        return st["dlq"].get("metrics") == 2 and st["samples_in"] >= 1

    await wait_for(processed, timeout=30)
    assert w.proc is not None and w.proc.poll() is None  # still running


async def test_asyncpg_round_trip(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TEMP TABLE t (id int primary key, body jsonb)")
        await conn.execute("INSERT INTO t VALUES ($1, $2)", 1, '{"a": 1}')
        assert await conn.fetchval("SELECT body->>'a' FROM t WHERE id = 1") == "1"
    finally:
        await conn.close()

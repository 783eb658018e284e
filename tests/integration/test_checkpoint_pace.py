"""The metrics stage never queues a checkpoint behind the previous one's records.

2026-12-07 (issue 18): at half its backlog rate the stage's p99 latency grew to 39.7 s.
Every checkpoint rewrites the leaves of every changed series; on a clock alone the next
one was queued while the broker still took the previous one's records, Faust's producer
buffer passed 100 records, and Faust's conductor then holds every stream of the worker
("producer buffer full" in the log) until it drains. Here a backlog is learned with a
checkpoint interval far shorter than the broker needs for one checkpoint's records (small
leaves, many records): the stage must still never fill the producer buffer, and every
sample must be saved once the input stops and the stage checkpoints.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from sre_agent.schemas import MetricBatch
from sre_agent.schemas.telemetry import series_id, shard_of

pytestmark = pytest.mark.integration

T0 = 1_763_000_000.0
SERIES = 400  # ~30 leaves of <= 16 KiB: a checkpoint of both partitions fits Faust's 100
SHARDS = 8
ROUNDS = 60
POINTS = 4


def _messages() -> list[MetricBatch]:
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for j in range(SERIES):
        labels = {"pod": f"pod-{j}"}
        by_shard.setdefault(shard_of(series_id("latency_ms", labels), SHARDS), []).append(
            {"name": "latency_ms", "labels": labels})
    out = []
    for r in range(ROUNDS):
        for shard, rows in sorted(by_shard.items()):
            out.append(MetricBatch(source="test", shard=shard, series=[
                {**row, "points": [(T0 + 15 * (r * POINTS + k), 50.0 + (k + j) % 3)
                                   for k in range(POINTS)]}
                for j, row in enumerate(rows)]))
    return out


async def test_checkpoints_wait_for_the_broker_to_take_the_previous_ones(
        worker_factory: Any, kafka_io: Any, wait_for: Any) -> None:
    w = worker_factory(extra_env={"SRE_AGENT_WORKER__CHECKPOINT_INTERVAL": "0.02",
                                  "SRE_AGENT_WORKER__STATE_RECORD_BYTES": str(16 * 1024)})
    topic = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"] + "metrics"
    msgs = _messages()
    first = [m for m in msgs if m.series[0]["points"][0][0] < T0 + 15 * POINTS]
    rest = msgs[len(first):]

    def samples_in() -> int:
        return int(w.status()["samples_in"])

    # 1. every series once, saved by the stop: their labels (one record per new series,
    #    written once) are not part of what is measured
    w.start()
    for m in first:
        await kafka_io.send(topic, m)
    await wait_for(lambda: samples_in() >= sum(m.sample_count() for m in first), timeout=60)
    assert w.stop(signal.SIGTERM) == 0, w.tail()
    # 2. a backlog, learned as fast as the stage can, checkpoint after checkpoint
    for m in rest:
        await kafka_io.send(topic, m)
    mark = w.log.stat().st_size
    w.start()
    await wait_for(lambda: samples_in() >= sum(m.sample_count() for m in rest), timeout=180,
                   every=0.2)
    assert w.stop(signal.SIGTERM) == 0, w.tail()  # the stop checkpoints what is left
    with w.log.open("rb") as fh:
        fh.seek(mark)
        log = fh.read().decode(errors="replace")
    assert "producer buffer full" not in log, [
        line for line in log.splitlines() if "producer buffer full" in line][:5]
    # 3. what was saved: the series with every sample, learned once
    w.start()
    probe = MetricBatch(source="test", series=[{"name": "latency_ms", "labels": {"pod": "pod-0"},
                                                "points": [(T0 + 15 * ROUNDS * POINTS, 50.0)]}])
    await kafka_io.send(topic, probe)

    def learned() -> int:
        items = w.get_json("/api/baselines?series=pod-0")["items"]
        return int(items[0]["n"]) if items else 0

    n = await wait_for(lambda: learned() >= ROUNDS * POINTS + 1 and learned(), timeout=60)
    assert n == ROUNDS * POINTS + 1

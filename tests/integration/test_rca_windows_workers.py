"""The stream RCA's windows with two workers: each decodes only its own ``metrics``
partitions, yet both have every service's series (through ``rca-windows``), and a
worker started later rebuilds them by replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sre_agent.schemas import MetricBatch

pytestmark = pytest.mark.integration

FAST_GROUP = {"SRE_AGENT_WORKER__SESSION_TIMEOUT": "8",
              "SRE_AGENT_WORKER__HEARTBEAT_INTERVAL": "1"}
T0 = 1_763_000_000.0
SERVICES = 12  # keys spread over the 4 partitions: both workers own some


def _batches(step: int) -> list[MetricBatch]:
    return [MetricBatch(source="test", shard=i, series=[
        {"name": "latency", "labels": {"service": f"svc{i}", "pod": f"svc{i}-0"},
         "points": [(T0 + 15 * step, 1.0 + i)]}]) for i in range(SERVICES)]


def _windows(w: Any) -> dict[str, Any]:
    return w.status()["health"].get("rca_windows") or {}


async def test_every_worker_has_every_series_while_decoding_only_its_partitions(
        worker_factory: Any, kafka_io: Any, wait_for: Any) -> None:
    w1 = worker_factory(extra_env=FAST_GROUP, name="w1").start()
    w2 = worker_factory(extra_env=FAST_GROUP, name="w2")
    await asyncio.to_thread(w2.start)
    prefix = w1.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    topic = prefix + "metrics"

    def split() -> Any:
        parts = [[p for p in w.status()["broker"]["assigned"] if p.startswith(topic + ":")]
                 for w in (w1, w2)]
        return all(parts) and parts

    await wait_for(split, timeout=120)
    step = 0

    async def send_round() -> bool:
        nonlocal step
        for b in _batches(step):
            await kafka_io.send(topic, b)
        step += 1
        return all(_windows(w).get("series", 0) >= SERVICES for w in (w1, w2))

    await wait_for(send_round, timeout=120, every=1.0)
    ins = [int(w.status()["samples_in"]) for w in (w1, w2)]
    assert all(ins) and max(ins) < SERVICES * step, ins  # each decoded only its share
    for w in (w1, w2):
        assert _windows(w)["series"] == SERVICES and _windows(w)["invalid"] == 0
        rollup = w.status()["health"]["rca_window_rollup"]
        assert rollup["ok"] and rollup["rows"] > 0 and rollup["errors"] == 0, rollup
    # a third worker joining later gets the windows back from the topic
    w3 = worker_factory(extra_env=FAST_GROUP, name="w3")
    await asyncio.to_thread(w3.start)
    await wait_for(lambda: _windows(w3).get("caught_up") and _windows(w3)["series"] == SERVICES,
                   timeout=120)

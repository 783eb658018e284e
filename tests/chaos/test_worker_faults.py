"""Worker faults on the session broker: SIGKILL mid-batch, a worker joining, a worker dying.

Each run streams the same deterministic workload and holds the pipeline to the
pure detector's answer: every ``(anomaly_id, status)`` pair on ``anomalies``
exactly once, and every sample learned exactly once in the baselines (state
recovered from the changelog, offsets resumed where they were committed).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from .support import ChaosProducer, Workload, compare, pair_counts, probe_learned, read_all

pytestmark = pytest.mark.integration

#: a dead member leaves the group after this long (Faust reads it from the env)
FAST_GROUP = {"SRE_AGENT_WORKER__SESSION_TIMEOUT": "8",
              "SRE_AGENT_WORKER__HEARTBEAT_INTERVAL": "1"}


async def _outcome(bootstrap: str, prefix: str, wl: Workload,
                   expected: Any) -> dict[str, Any]:
    got = await read_all(bootstrap, prefix + "anomalies", timeout=180,
                         until=lambda ms: set(expected) <= set(pair_counts(ms, wl.tag)))
    return compare(expected, pair_counts(got, wl.tag))


async def test_sigkill_mid_batch_then_restart(worker_factory: Any, kafka_broker: Any,
                                              wait_for: Any) -> None:
    w = worker_factory(extra_env=FAST_GROUP, name="w1").start()
    prefix = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    wl = Workload()
    msgs, expected = wl.messages(), wl.expected()
    samples = sum(b.sample_count() for _, b in msgs)
    async with ChaosProducer(kafka_broker.bootstrap) as producer:
        sending = asyncio.create_task(producer.send_all(prefix + "metrics", msgs, rate=300))
        await wait_for(lambda: w.status()["samples_in"] >= samples // 3, timeout=60, every=0.05)
        w.stop(signal.SIGKILL)  # no flush, no commit, no checkpoint
        w.start()
        await asyncio.wait_for(sending, 120)

    diff = await _outcome(kafka_broker.bootstrap, prefix, wl, expected)
    assert diff == {"missing": [], "duplicated": [], "unexpected": []}, diff
    n = await probe_learned(kafka_broker.bootstrap, prefix, wl, [w], wait_for)
    assert len(n) == wl.series and set(n.values()) == {wl.points + 1}, n


# Was an expected failure: the raw tables' changelogs were made with the json key
# serializer (fixed in streams/tables.py), and offsets could be committed before the state
# of their samples was checkpointed (the metrics agent now acks only after its checkpoint).
async def test_second_worker_joins_then_first_is_killed(worker_factory: Any, kafka_broker: Any,
                                                        wait_for: Any) -> None:
    w1 = worker_factory(extra_env=FAST_GROUP, name="w1").start()
    prefix = w1.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    w2 = worker_factory(extra_env=FAST_GROUP, name="w2")
    wl = Workload()
    msgs, expected = wl.messages(), wl.expected()
    samples = sum(b.sample_count() for _, b in msgs)
    async with ChaosProducer(kafka_broker.bootstrap) as producer:
        sending = asyncio.create_task(producer.send_all(prefix + "metrics", msgs, rate=70))
        await wait_for(lambda: w1.status()["samples_in"] >= samples // 4, timeout=60, every=0.1)
        await asyncio.to_thread(w2.start)  # rebalance: w2 takes a partition with its state
        assignments = [w1.status()["broker"]["assigned"], w2.status()["broker"]["assigned"]]
        await wait_for(lambda: w2.status()["samples_in"] > 0, timeout=60)
        w1.stop(signal.SIGKILL)  # w2 takes everything, state from the changelog
        await asyncio.wait_for(sending, 120)

    diff = await _outcome(kafka_broker.bootstrap, prefix, wl, expected)
    metrics_parts = [[p for p in a if p.startswith(prefix + "metrics:")] for a in assignments]
    assert all(metrics_parts), assignments  # both workers held a metrics partition
    assert diff == {"missing": [], "duplicated": [], "unexpected": []}, diff
    n = await probe_learned(kafka_broker.bootstrap, prefix, wl, [w2], wait_for)
    assert len(n) == wl.series and set(n.values()) == {wl.points + 1}, n

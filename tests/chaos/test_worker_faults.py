"""Worker faults on the session broker: SIGKILL mid-batch, a worker joining, a worker dying.

Each run streams the same deterministic workload and holds the pipeline to the
pure detector's answer: every ``(anomaly_id, status)`` pair on ``anomalies``, none
missing and none unexpected, and every sample learned exactly once in the baselines
(state recovered from the changelog, offsets resumed where they were committed).

A pair may be on the topic twice, never more: the one kill can fall between an anomaly
event and the checkpoint of its transition (two topics, no transactions), and the replay
sends that event again with the same deterministic id. Consumers treat a repeated
``(anomaly_id, status)`` as a duplicate (the correlator emits nothing for it); that is the
"exactly once in effect" of docs/benchmarks/resilience.md. It was asserted away before
and failed 1 run in ~10 (2026-12-07); removing the redelivery itself needs the
re-emitted pairs read back from ``anomalies`` at takeover (not done).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.actions_support import partition_report

from .support import ChaosProducer, Workload, compare, pair_counts, probe_learned, read_all

pytestmark = pytest.mark.integration

#: a dead member leaves the group after this long (Faust reads it from the env)
FAST_GROUP = {"SRE_AGENT_WORKER__SESSION_TIMEOUT": "8",
              "SRE_AGENT_WORKER__HEARTBEAT_INTERVAL": "1"}


async def _outcome(bootstrap: str, prefix: str, wl: Workload,
                   expected: Any) -> dict[str, Any]:
    got = await read_all(bootstrap, prefix + "anomalies", timeout=180,
                         until=lambda ms: set(expected) <= set(pair_counts(ms, wl.tag)))
    diff = compare(expected, pair_counts(got, wl.tag))
    # one kill, one replay: a transition in flight at the kill may come once more
    diff["duplicated"] = [(k, n) for k, n in diff["duplicated"] if n > 2]
    return diff


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
# Was flaky (2 of 4 CI runs): on a loaded machine the assignment callback outlasted the
# session timeout and the group rebalanced over and over (fixed in faust_fixes; its own
# test: tests/integration/test_rebalance_fixes.py); and the workload was sent on a clock,
# so a slow-starting w2 could join after the last record and never get one. Now each
# phase waits for what it needs: w2 joins while records flow, both workers process
# records, w1 is killed while it is processing. Still flaky under load (issue 17): now and
# then the six series of one shard in the partition w1 kept through the join and lost at
# the kill learned one sample less ({400, 401}). One window is closed (Faust's producer
# flush returned with a changelog record on its way, so offsets could be committed ahead
# of the saved state: faust_fixes, tests/integration/test_producer_flush.py); the failure
# was seen again after it, so another one is open.
async def test_second_worker_joins_then_first_is_killed(worker_factory: Any, kafka_broker: Any,
                                                        wait_for: Any) -> None:
    w1 = worker_factory(extra_env=FAST_GROUP, name="w1").start()
    prefix = w1.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    w2 = worker_factory(extra_env=FAST_GROUP, name="w2")
    wl = Workload()
    msgs, expected = wl.messages(), wl.expected()
    q = len(msgs) // 4
    phases = [msgs[:q], msgs[q:2 * q], msgs[2 * q:3 * q], msgs[3 * q:]]
    topic = prefix + "metrics"

    def samples_in(w: Any) -> int:
        return int(w.status()["samples_in"])

    async with ChaosProducer(kafka_broker.bootstrap) as producer:
        # 1. w1 alone learns the first quarter
        await producer.send_all(topic, phases[0])
        first = sum(b.sample_count() for _, b in phases[0])
        await wait_for(lambda: samples_in(w1) >= first, timeout=120)
        # 2. w2 joins while the second quarter flows: rebalance, w2 takes a partition
        #    with its state from the changelog
        sending = asyncio.create_task(producer.send_all(topic, phases[1], rate=70))
        await asyncio.to_thread(w2.start)
        await asyncio.wait_for(sending, 120)
        assignments = [w1.status()["broker"]["assigned"], w2.status()["broker"]["assigned"]]
        metrics_parts = [[p for p in a if p.startswith(topic + ":")] for a in assignments]
        assert all(metrics_parts), assignments  # both workers hold a metrics partition
        # 3. both process the third quarter
        await producer.send_all(topic, phases[2])
        await wait_for(lambda: samples_in(w2) > 0, timeout=120)
        # 4. w1 is killed while it processes the last quarter: w2 takes everything,
        #    state from the changelog, offsets from w1's last commit
        before = samples_in(w1)
        sending = asyncio.create_task(producer.send_all(topic, phases[3], rate=70))
        await wait_for(lambda: samples_in(w1) > before, timeout=120, every=0.05)
        w1.stop(signal.SIGKILL)
        await asyncio.wait_for(sending, 120)

    diff = await _outcome(kafka_broker.bootstrap, prefix, wl, expected)
    if diff != {"missing": [], "duplicated": [], "unexpected": []}:
        st = w2.status()
        print("[outcome] w2:", {k: st.get(k) for k in ("samples_in", "recovery")},
              [a for a in st["broker"]["assigned"] if ".metrics:" in a],
              {k: v for k, v in st["health"].get("state", {}).items()
               if k in ("waiting", "checkpoints", "resumed_behind_commit")})
        print("[outcome] metrics:", {p: (v["end"], v["committed"]) for p, v in (
            await partition_report(kafka_broker.bootstrap, topic,
                                   w2.env["SRE_AGENT_WORKER__APP_ID"])).items()})
    assert diff == {"missing": [], "duplicated": [], "unexpected": []}, diff
    n = await probe_learned(kafka_broker.bootstrap, prefix, wl, [w2], wait_for)
    assert len(n) == wl.series and set(n.values()) == {wl.points + 1}, n

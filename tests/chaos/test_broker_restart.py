"""Broker restart in the middle of a metrics stream, on a broker of its own.

After the broker returns, every metric produced was processed exactly once in
effect: the anomalies on the ``anomalies`` topic are the ones the pure detector
finds on the same samples, none missing and none twice (anomaly ids are
deterministic per series and sample time), and the learned baselines (table
state) count every sample once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import unique

from .support import (
    ChaosProducer,
    Workload,
    compare,
    own_broker,
    pair_counts,
    probe_learned,
    read_all,
    workers,
)

pytestmark = pytest.mark.integration

__all__ = ["own_broker", "workers"]  # fixtures


async def test_broker_restart_mid_stream_loses_and_doubles_nothing(
        own_broker: Any, workers: Any, wait_for: Any) -> None:
    prefix = unique("brk") + "."
    w = workers(own_broker, "w1", prefix).start()
    wl = Workload()
    msgs, expected = wl.messages(), wl.expected()
    samples = sum(b.sample_count() for _, b in msgs)

    async with ChaosProducer(own_broker.bootstrap) as producer:
        sending = asyncio.create_task(producer.send_all(prefix + "metrics", msgs, rate=250))
        # the worker is mid-stream: part processed, part still to come
        await wait_for(lambda: w.status()["samples_in"] >= samples // 5, timeout=60, every=0.1)
        await asyncio.to_thread(own_broker.restart)
        await asyncio.wait_for(sending, 180)
    assert producer.sent == len(msgs)

    got = await read_all(own_broker.bootstrap, prefix + "anomalies", timeout=180,
                         until=lambda ms: set(expected) <= set(pair_counts(ms, wl.tag)))
    diff = compare(expected, pair_counts(got, wl.tag))
    assert w.proc is not None and w.proc.poll() is None, w.tail()
    assert diff == {"missing": [], "duplicated": [], "unexpected": []}, diff

    # table state intact: every sample learned exactly once (not relearned, not skipped)
    n = await probe_learned(own_broker.bootstrap, prefix, wl, [w], wait_for)
    assert len(n) == wl.series and set(n.values()) == {wl.points + 1}, n

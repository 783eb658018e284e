"""The speed work changes no detection result (issue 18 item 6).

The same samples reach the same detector two ways: the old path (one v1
``MetricBatch`` per remote-write request, full labels on every series, as
``to_batches`` produced them) and the new one (remote-write decode with the
wire fast path, the coalescer's v2 messages with refs, the codec, the
:class:`SeriesDirectory`). The anomaly and prediction events must be identical.
Generated series are fine here: this checks plumbing, not detection quality.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import cramjam
import pytest

from sre_agent.collectors import decode_write_request, to_batches
from sre_agent.collectors.coalesce import Coalescer, SeriesCache
from sre_agent.collectors.prompb import WriteRequest
from sre_agent.config import AnomalySettings, PredictionSettings
from sre_agent.processors.detect import MetricDetector
from sre_agent.processors.predict import EarlyWarning
from sre_agent.schemas import MetricBatch, decode, encode
from sre_agent.schemas.series_refs import SeriesDirectory

SERIES, ROUNDS, PER_REQUEST, SHARDS = 300, 80, 120, 8


def _bodies() -> list[bytes]:
    rng = random.Random(5)
    out = []
    labels = [[("__name__", "disk_usage_ratio" if j % 5 == 0 else "latency_ms"),
               ("pod", f"pod-{j}"), ("service", f"svc{j % 9}")] for j in range(SERIES)]
    for r in range(ROUNDS):
        t = 1_763_000_000_000 + r * 60_000
        for start in range(0, SERIES, PER_REQUEST):
            req = WriteRequest()
            for j in range(start, min(SERIES, start + PER_REQUEST)):
                ts = req.timeseries.add()
                for k, v in labels[j]:
                    ts.labels.add(name=k, value=v)
                if j % 5 == 0:  # saturation series climbing towards their limit
                    v = min(0.99, 0.3 + 0.008 * r + rng.gauss(0, 0.002))
                else:
                    v = 50 + rng.gauss(0, 1) + (400 if (r > 40 and j % 37 == r % 37) else 0)
                ts.samples.add(value=v, timestamp=t)
            out.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    return out


def _run(batches: list[MetricBatch]) -> list[dict[str, Any]]:
    det = MetricDetector(AnomalySettings(warmup_samples=20))
    early = EarlyWarning(PredictionSettings())
    events = []
    for b in batches:
        events += det.update(b, tag=b.shard % 2)
        events += early.update(b, tag=b.shard % 2)
    return [e.model_dump(exclude={"event_id", "time"}) for e in events]


def _canonical(batches: list[MetricBatch]) -> list[MetricBatch]:
    """Within a round, the order of series differs between the paths (grouped by
    request vs by shard); per series the sample order is the same. Feed both paths
    one round at a time, series sorted, so the detector sees the same steps."""
    by_t: dict[float, list[Any]] = {}
    for b in batches:
        for s in b.series:
            for p in s["points"]:
                by_t.setdefault(p[0], []).append({"name": s["name"], "labels": s["labels"],
                                                  "points": [p]})
    return [MetricBatch(source="remote-write", series=sorted(
        rows, key=lambda s: (s["name"], sorted(s["labels"].items()))))
        for _, rows in sorted(by_t.items())]


@pytest.mark.parametrize("partitions", [None, 2])
def test_compact_path_gives_the_same_anomalies_as_the_full_label_path(
        partitions: int | None) -> None:
    """``partitions``: the coalescer shares messages among the shards of a partition
    (shard % 2 here, the tag the detector keeps per-partition state under)."""
    bodies = _bodies()
    # old path: one v1 message per request and shard, full labels, through the codec
    old: list[MetricBatch] = []
    for body in bodies:
        res = decode_write_request(body)
        for b in to_batches(res.series, SHARDS, "remote-write").batches:
            old.append(decode(MetricBatch, encode(b)))
    # new path: wire fast path, coalescer (v2 refs), codec, directory
    messages: list[bytes] = []

    async def send(key: bytes, value: bytes) -> None:
        messages.append(value)

    async def produce() -> None:
        c = Coalescer(send, SHARDS, linger=0.0,
                      route=(lambda s: s % partitions) if partitions else None)
        c.regroup()
        cache = SeriesCache(SHARDS)
        for body in bodies:
            await c.submit(decode_write_request(body, cache=cache).items)

    asyncio.run(produce())
    directory = SeriesDirectory()
    new: list[MetricBatch] = []
    for value in messages:
        b = decode(MetricBatch, value)
        got = directory.expand(b)
        assert not got.unresolved and not got.mismatched
        new.append(b.model_copy(update={"series": got.series, "refs": []}))
    assert sum(1 for v in messages if b'"refs":[{' in v) > len(messages) / 2  # refs used
    assert sum(b.sample_count() for b in new) == sum(b.sample_count() for b in old)
    if partitions:  # one message group per partition, keyed by its lowest shard
        assert {b.shard for b in new} == set(range(partitions))
    expected = _run(_canonical(old))
    assert any(e.get("status") == "open" for e in expected)  # anomalies to compare
    assert _run(_canonical(new)) == expected
    # and message by message as each path really delivers them (other batch
    # boundaries and series order; per series the same samples in the same order)
    def key(e: dict[str, Any]) -> str:
        return repr(sorted(e.items()))

    assert sorted(_run(new), key=key) == sorted(_run(old), key=key) == sorted(expected, key=key)

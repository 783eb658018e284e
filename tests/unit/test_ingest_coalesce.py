"""Coalescing at the receiver (issue 18 item 2) and labels once per series (item 3).

The coalescer is driven with a stand-in ``send`` (a coroutine the test controls)
because what is checked is the order of acknowledgements; the real broker path
is covered by tests/integration/test_ingest_remote_write.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from sre_agent.collectors.coalesce import BufferFull, Coalescer, SeriesCache
from sre_agent.schemas import MetricBatch, decode
from sre_agent.schemas.series_refs import SeriesDirectory
from sre_agent.schemas.telemetry import series_id, series_key


def _series(n: int, cache: SeriesCache, t: float = 1.7e9, name: str = "lat") -> list[Any]:
    return [(cache.of(name, {"pod": f"p{j}", "service": f"s{j % 7}"}), [(t, float(j))])
            for j in range(n)]


class Broker:
    """Records messages; ``gate`` (when set) holds every acknowledgement."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def send(self, key: bytes, value: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.messages.append((key, value))

    def batches(self) -> list[MetricBatch]:
        return [decode(MetricBatch, v) for _, v in self.messages]


async def test_requests_coalesce_into_one_message_per_shard() -> None:
    broker, cache = Broker(), SeriesCache(4)
    c = Coalescer(broker.send, 4, linger=0.05)
    items = _series(2000, cache)
    # 40 requests of 50 series (a remote-write shape), all within one linger
    await asyncio.gather(*(c.submit(items[i:i + 50]) for i in range(0, 2000, 50)))
    batches = broker.batches()
    assert sorted(b.shard for b in batches) == [0, 1, 2, 3]
    assert sum(b.sample_count() for b in batches) == 2000
    assert min(len(b.series) for b in batches) > 300  # hundreds of series per message
    assert all(int(k) == b.shard for (k, _), b in zip(broker.messages, batches, strict=True))
    assert c.buffered == 0


async def test_nothing_is_acknowledged_before_the_broker_acknowledged() -> None:
    broker, cache = Broker(), SeriesCache(4)
    broker.gate = asyncio.Event()
    c = Coalescer(broker.send, 4, linger=0.0)
    task = asyncio.ensure_future(c.submit(_series(100, cache)))
    await asyncio.sleep(0.05)  # linger over, messages in flight, no acknowledgement yet
    assert not task.done() and broker.messages == []
    broker.gate.set()
    await asyncio.wait_for(task, 5)
    assert len(broker.messages) == 4


async def test_a_failed_message_fails_the_request_and_keeps_the_labels_unsent() -> None:
    broker, cache = Broker(), SeriesCache(1)
    broker.fail = ConnectionError("broker down")
    c = Coalescer(broker.send, 1, linger=0.0)
    with pytest.raises(ConnectionError):
        await c.submit(_series(3, cache))
    assert c.buffered == 0
    broker.fail = None
    await c.submit(_series(3, cache, t=1.8e9))
    # the failed message never reached the log: the labels go out in full again
    (batch,) = broker.batches()
    assert len(batch.series) == 3 and batch.refs == []


async def test_the_buffer_is_bounded_and_refuses_at_once_when_full() -> None:
    broker, cache = Broker(), SeriesCache(2)
    broker.gate = asyncio.Event()
    c = Coalescer(broker.send, 2, linger=0.0, max_buffered_samples=1000)
    held = [asyncio.ensure_future(c.submit(_series(400, cache))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(BufferFull) as info:
        await c.submit(_series(400, cache))
    assert info.value.retry_after >= 1 and c.buffered == 800
    broker.gate.set()
    await asyncio.gather(*held)
    await c.submit(_series(400, cache))  # room again once acknowledged
    assert c.buffered == 0


async def test_labels_travel_once_then_as_refs_and_again_after_the_refresh() -> None:
    broker, cache = Broker(), SeriesCache(1)
    now = [0.0]
    c = Coalescer(broker.send, 1, linger=0.0, label_refresh=60.0, clock=lambda: now[0])
    await c.submit(_series(10, cache, t=1.0e9))
    await c.submit(_series(10, cache, t=1.1e9))
    now[0] = 61.0
    await c.submit(_series(10, cache, t=1.2e9))
    first, second, third = broker.batches()
    assert (len(first.series), len(first.refs)) == (10, 0)
    assert (len(second.series), len(second.refs)) == (0, 10)
    assert (len(third.series), len(third.refs)) == (10, 0)
    assert len(broker.messages[1][1]) < len(broker.messages[0][1])


async def test_refs_resolve_to_exactly_the_series_that_were_sent() -> None:
    broker, cache = Broker(), SeriesCache(3)
    c = Coalescer(broker.send, 3, linger=0.0)
    sent = []
    for r in range(3):
        items = _series(50, cache, t=1.7e9 + r)
        sent += [(m.name, m.labels, p) for m, p in items]
        await c.submit(items)
    d = SeriesDirectory()
    got = []
    for b in broker.batches():
        x = d.expand(b)
        assert not x.unresolved and not x.mismatched
        got += [(s["name"], s["labels"], s["points"]) for s in x.series]
    key = lambda s: (series_id(s[0], s[1]), s[2])  # noqa: E731
    assert sorted(got, key=key) == sorted(sent, key=key)


def test_a_definition_whose_id_is_not_its_labels_key_is_not_learned() -> None:
    good = series_key(series_id("cpu", {"pod": "a"}))
    forged = MetricBatch(series=[{"name": "cpu", "labels": {"pod": "evil"}, "id": good,
                                  "points": [(1.0, 1.0)]}])
    d = SeriesDirectory()
    got = d.expand(forged)
    assert got.mismatched == [good] and good not in d
    assert len(got.series) == 1  # the series itself is still learned under its own labels


def test_a_consumer_that_missed_the_labels_recovers_them_from_saved_state() -> None:
    k = series_key(series_id("cpu", {"pod": "a"}))
    first = MetricBatch(series=[{"name": "cpu", "labels": {"pod": "a"}, "id": k,
                                 "points": [(1.0, 1.0)]}])
    later = MetricBatch(series=[], refs=[{"id": k, "points": [(2.0, 2.0)]}])
    owner = SeriesDirectory()
    owner.expand(first, tag=3)
    saved = owner.take_new(3)  # what the checkpoint writes to the series-labels table
    assert owner.take_new(3) == {}
    successor = SeriesDirectory(load=saved.get)  # a new owner of partition 3
    got = successor.expand(later, tag=3)
    assert got.series == [{"name": "cpu", "labels": {"pod": "a"}, "points": [(2.0, 2.0)],
                           "id": k}]
    assert successor.take_new() == {}  # restored, not new
    assert successor.forget([3]) == 1 and k not in successor
    # a tampered saved value is not trusted either
    bad = SeriesDirectory(load=lambda key: orjson.dumps(["cpu", {"pod": "b"}]))
    assert bad.expand(later).unresolved


def test_v1_messages_are_still_accepted() -> None:
    v1 = orjson.dumps({"schema_version": 1, "source": "old", "shard": 1, "series": [
        {"name": "cpu", "labels": {"pod": "a"}, "points": [[1.7e9, 0.5]]}]})
    b = decode(MetricBatch, v1)
    assert b.schema_version == 1 and b.refs == [] and b.sample_count() == 1
    assert SeriesDirectory().expand(b).series == b.series


def test_secrets_in_labels_are_redacted_once_at_the_source() -> None:
    cache = SeriesCache(4)
    m = cache.of("db_up", {"target": "postgres://app:s3cret@db:5432/x", "api_token": "abc",
                           "pod": "p1"})
    assert m.labels == {"target": "postgres://<redacted:credentials>@db:5432/x",
                        "api_token": "<redacted:secret>", "pod": "p1"}
    assert "s3cret" not in m.sid and "abc" not in m.sid
    assert cache.of("db_up", {"target": "postgres://app:s3cret@db:5432/x", "api_token": "abc",
                              "pod": "p1"}) is m  # cached: redacted once per series


def test_label_values_redacted_once_per_pair_give_what_redacting_the_labels_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo of redacted label values (speed) changes no series: same labels, id and
    shard as redacting every series' labels whole, secrets included, and stays bounded."""
    from sre_agent.collectors import coalesce
    from sre_agent.processors.redact import redact_obj

    monkeypatch.setattr(coalesce, "MAX_CLEAN_MEMO", 8)
    cache = SeriesCache(16)
    for j in range(40):
        labels = {"target": "postgres://app:s3cret@db:5432/x", "api_token": f"t{j % 3}",
                  "job": "api", "pod": f"p{j}", "long": "v" * 3000}
        m = cache.make("db_up", dict(labels), ("db_up", j))
        want = {k: v[:coalesce.MAX_LABEL_VALUE]
                for k, v in redact_obj(labels, personal=False).items()}
        assert m.labels == want
        assert m.sid == series_id("db_up", want)
        assert m.key == series_key(m.sid) and m.shard == coalesce.shard_of(m.sid, 16)
        assert len(cache._clean) <= 8


async def test_small_messages_wait_up_to_max_linger_big_ones_go_at_the_linger() -> None:
    broker, cache = Broker(), SeriesCache(2)
    c = Coalescer(broker.send, 2, linger=0.02, min_series_per_message=50, max_linger=0.4)
    items = _series(200, cache)
    big = [x for x in items if x[0].shard == 0][:60]
    small = [x for x in items if x[0].shard == 1][:5]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    done: dict[str, float] = {}

    async def timed(name: str, part: list[Any]) -> None:
        await c.submit(part)
        done[name] = loop.time() - t0

    await asyncio.gather(timed("big", big), timed("small", small))
    # the 60-series shard left at a linger tick, the 5-series one waited for company up to
    # max_linger (timers never fire early: a lower bound, not a timing race)
    assert done["big"] < done["small"] and done["small"] >= 0.35
    assert [len(b.series) for b in broker.batches()] == [60, 5]


async def test_the_shards_of_one_partition_share_messages_keyed_to_that_partition() -> None:
    """64 shards on 4 partitions made messages of ~110 series (per shard) where one per
    partition carries ~16x more: each per-message cost (producer request, Faust delivery,
    decode, model step) is paid that much less often. A series still goes to the
    partition of its own shard, so its definition precedes its refs there."""
    broker, cache = Broker(), SeriesCache(16)
    part = [None]  # no metadata yet: per shard
    route = lambda s: None if part[0] is None else s * 7 % part[0]  # noqa: E731
    c = Coalescer(broker.send, 16, linger=0.0, route=route)
    items = _series(800, cache)
    await c.submit(items)
    assert len(broker.messages) == 16 and c.health()["message_groups"] == 16
    part[0] = 4
    await c.submit(_series(800, cache, t=1.8e9))
    assert c.health()["message_groups"] == 4
    broker.messages.clear()
    await c.submit(_series(800, cache, t=1.9e9))
    batches = broker.batches()
    assert len(batches) == 4 and sum(b.sample_count() for b in batches) == 800
    shard_of_key = {m.key: m.shard for m, _ in items}
    for (key, _), b in zip(broker.messages, batches, strict=True):
        assert int(key) == b.shard == min(s for s in range(16) if route(s) == route(b.shard))
        assert {route(shard_of_key[r["id"]]) for r in b.refs} == {route(b.shard)}
        assert not b.series  # the labels went before, to the same partition
    # partitions added: the grouping changes and every series is defined again
    part[0] = 8
    c._grouped_at = -1e9
    await c.submit(_series(800, cache, t=2.0e9))
    broker.messages.clear()
    await c.submit(_series(800, cache, t=2.1e9))
    assert len(broker.batches()) == 8
    assert sum(len(b.series) for b in broker.batches()) == 800


async def test_a_series_without_points_does_not_spoil_its_message() -> None:
    """An item with no points became a series with ``"points": []``, which the schema
    refuses (at least one point): the consumer dead-lettered the whole message, every
    other series of its partition group with it."""
    broker, cache = Broker(), SeriesCache(1)
    c = Coalescer(broker.send, 1, linger=0.0)
    empty, full = _series(2, cache)
    await c.submit([(empty[0], []), full])
    (batch,) = broker.batches()  # decodes: no schema violation
    assert batch.sample_count() == 1 and len(batch.series) == 1
    assert c.buffered == 0


async def test_points_lists_are_held_as_given_and_never_mutated() -> None:
    """The coalescer holds a request's points lists without copying them (issue 18, CPU)
    and never changes them: a series sent twice in one linger is joined into a new list,
    in order, and the first request's list is left as it was."""
    broker, cache = Broker(), SeriesCache(1)
    c = Coalescer(broker.send, 1, linger=0.05)
    first, second = _series(3, cache, t=1.7e9), _series(3, cache, t=1.7e9 + 15)
    before = [list(p) for _, p in first]
    await asyncio.gather(c.submit(first), c.submit(second))
    assert [list(p) for _, p in first] == before
    (batch,) = broker.batches()
    assert [[tuple(p) for p in s["points"]] for s in batch.series] == [
        [(1.7e9, float(j)), (1.7e9 + 15, float(j))] for j in range(3)]

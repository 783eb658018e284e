"""A message that one stream processed and another skipped or dropped is not waited for.

``incidents`` feeds three streams (rca, knowledge, incident-tickets), so each of its
messages is handed to three queues with a reference count of three. A stream that
takes a message while the flow is suspended (a rebalance or shutdown began) skips it.
Faust's Cython stream iterator returns no event for a skipped message, so its count
was never decremented: the message, tracked by the stream that processed it, stayed
unacknowledged for good and ``Consumer.wait_empty`` waited for it at every rebalance
and shutdown (``bench/bench_cognition.py stream``: the worker did not stop within
120 s of SIGTERM, ``wait_empty: Waiting for tasks [(1, <ConsumerMessage: ...incidents...
offset=9>)]``). :func:`sre_agent.streams.faust_fixes.apply` makes every stream use the
pure-Python iterator, which acknowledges a skipped event. Faust's Cython iterator runs
side by side here and keeps the message.

The same wait came from the queues Faust empties at every rebalance and shutdown
(``flow_control.clear()``, right before ``wait_empty``): an event dropped there never
took its reference off its message, which the stream that processed it kept alive as
its last message. A dropped event now releases its message, unacknowledged (read
again after the commit).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust import streams as faust_streams
from faust.types.tuples import ConsumerMessage

from sre_agent.streams import faust_fixes


async def _processed_by_one_skipped_by_other() -> tuple[Any, Any]:
    """Two streams get one message; the first processes it with the flow on, the
    second takes it after the flow was suspended. The message and the consumer."""
    app = faust.App("faust-stream-ack-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.finalize()
    consumer, channels, message = _two_streams(app)
    for channel in channels:
        await channel.queue.put(faust.Event(app, b"k", b"v", {}, message))

    async def drain(stream: Any) -> None:
        async for _ in stream.events():
            pass

    tasks = [asyncio.ensure_future(drain(app.stream(channels[0])))]
    for _ in range(20):  # processed and acknowledged once it asks for the next one
        await asyncio.sleep(0.01)
    assert message.tracked and message in consumer._unacked_messages
    app.flow_control.suspend()  # a rebalance or shutdown begins
    tasks.append(asyncio.ensure_future(drain(app.stream(channels[1]))))
    for _ in range(20):
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return message, consumer


async def test_a_message_skipped_by_one_of_its_streams_is_not_waited_for(
        monkeypatch: Any) -> None:
    faust_fixes.apply()
    assert faust_streams._CStreamIterator is None
    message, consumer = await _processed_by_one_skipped_by_other()
    assert message.refcount == 0 and message.acked
    assert message not in consumer._unacked_messages  # wait_empty does not wait for it


async def test_faust_cython_iterator_keeps_a_skipped_message_unacknowledged(
        monkeypatch: Any) -> None:
    from faust._cython import streams as cython  # a pinned dependency: never skipped
    monkeypatch.setattr(faust_streams, "_CStreamIterator", cython.StreamIterator)
    message, consumer = await _processed_by_one_skipped_by_other()
    assert message.refcount == 1 and not message.acked
    assert message in consumer._unacked_messages  # wait_empty waits for it forever


def _two_streams(app: Any) -> tuple[Any, list[Any], Any]:
    consumer = app.consumer
    app.flow_control.resume()
    app.topics._acking_topics.add("incidents")
    channels = [app.channel().clone(is_iterator=True) for _ in range(2)]
    message = ConsumerMessage(topic="incidents", partition=0, offset=9, timestamp=0.0,
                              timestamp_type=0, headers=[], key=b"k", value=b"v",
                              checksum=None, generation_id=app.consumer_generation_id)
    message.incref(len(channels))  # what the conductor does before handing it on
    return consumer, channels, message


async def _processed_by_one_dropped_from_other(clear: Any) -> tuple[Any, Any]:
    """The first stream processes the message; its event for the second stream is still
    queued when a rebalance or shutdown empties the queues (``clear(app)``)."""
    app = faust.App("faust-stream-drop-test", broker="kafka://127.0.0.1:1",
                    store="memory://")
    app.finalize()
    consumer, channels, message = _two_streams(app)
    # set by the first seek: the flow control knows the consumer from then on
    app.flow_control.__dict__[faust_fixes.HANDED_ON] = consumer
    for channel in channels:
        await channel.queue.put(faust.Event(app, b"k", b"v", {}, message))

    async def drain(stream: Any) -> None:
        async for _ in stream.events():
            pass

    task = asyncio.ensure_future(drain(app.stream(channels[0])))
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert message.refcount == 1 and message in consumer._unacked_messages
    app.flow_control.suspend()
    clear(app)
    assert channels[1].queue.empty()
    # the first stream's iterator still holds the message (its last one): it stays alive
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return message, consumer


async def test_a_message_dropped_from_a_stream_queue_is_not_waited_for() -> None:
    faust_fixes.apply()
    message, consumer = await _processed_by_one_dropped_from_other(
        lambda app: app.flow_control.clear())
    assert message.refcount == 0 and message not in consumer._unacked_messages
    assert not message.acked  # not committed: read again after the rebalance or restart
    message, consumer = await _processed_by_one_dropped_from_other(
        lambda app: faust_fixes.faust_flow_clear(app.flow_control))  # Faust's own
    assert message.refcount == 1 and message in consumer._unacked_messages  # waited for


def test_a_changelog_being_created_is_no_partition_mismatch(monkeypatch: Any) -> None:
    """tests/chaos/test_ha_workers.py: three workers starting at once; one's consumer
    saw a changelog topic another was creating with 0 partitions, and Faust's check at
    the table's first write crashed the agent (PartitionsMismatch ... has 0 partitions):
    its events were lost, two plans never made. A count of 0 is left unjudged."""
    from faust.exceptions import PartitionsMismatch

    app = faust.App("faust-partitions-test", broker="kafka://127.0.0.1:1", store="memory://")
    table = app.Table("kb", default=int, partitions=4)
    app.finalize()
    counts = {"incidents": 4, table.changelog_topic_name: 0}
    monkeypatch.setattr(type(app.consumer), "topic_partitions",
                        lambda self, topic: counts.get(topic))
    faust_fixes.apply()
    with pytest.raises(PartitionsMismatch):  # Faust's own check
        faust_fixes.faust_verify_partitions(table, "incidents")
    table._verify_source_topic_partitions("incidents")  # being created: not judged yet
    assert "incidents" not in table._verified_source_topics_for_partitions
    counts[table.changelog_topic_name] = 2  # a real mismatch still raises
    with pytest.raises(PartitionsMismatch):
        table._verify_source_topic_partitions("incidents")
    counts[table.changelog_topic_name] = 4
    table._verify_source_topic_partitions("incidents")
    assert "incidents" in table._verified_source_topics_for_partitions

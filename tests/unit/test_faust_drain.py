"""Faust's fetch loop must not mark as read what the streams never took.

After a rebalance, the loop may still go through the batch it fetched before it; those
messages carry the old generation and the streams skip them, but Faust's loop marked
them read after the seek to the committed offset, so the refetched copies below the
read offset were dropped: one sample lost per shard in the chaos test
(``test_second_worker_joins_then_first_is_killed``, learned counts {400, 401}). The
loop in :mod:`sre_agent.streams.faust_fixes` reads a message only when it was
delivered in the current generation. Faust's own loop runs side by side here and
loses the message.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import mode
from faust.types import TP as FaustTP

from sre_agent.streams import faust_fixes

TP = FaustTP("metrics", 1)


def _msg(offset: int, generation: int) -> Any:
    return SimpleNamespace(offset=offset, generation_id=generation, topic="metrics",
                           key=b"k", value=b"v")


class _Loop:
    """The attributes ``Consumer._drain_messages`` uses, with a scripted fetch."""

    def __init__(self, batches: list[list[Any]], generation: int, read_offset: int,
                 slow_delivery: set[int] | None = None) -> None:
        self.batches = list(batches)
        self.delivered: list[tuple[int, int]] = []
        self.slow = slow_delivery or set()
        self._stopped, self._crashed = asyncio.Event(), asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._read_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self._read_offset[TP] = read_offset  # the rebalance's seek to the committed offset
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self._commit_every = None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True),
                                   consumer_generation_id=generation)
        self.should_stop = False
        self.flow_active = False  # no tail check unless a test turns the flow on
        self.app.flow_control = SimpleNamespace(is_active=lambda: self.flow_active)
        self.end: int | None = None  # the partition's highwater
        self.consumer_stopped_errors = ()
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
        self.log = SimpleNamespace(dev=lambda *a, **k: None, info=lambda *a, **k: None,
                                   exception=lambda *a, **k: None)
        self.wait_first = mode.Service.wait_first.__get__(self)

    async def sleep(self, _: float) -> None:
        await asyncio.sleep(0)

    def assignment(self) -> set[Any]:
        return {TP}

    def _is_changelog_tp(self, tp: Any) -> bool:
        return tp.topic.endswith("-changelog")

    def highwater(self, tp: Any) -> int | None:
        return self.end

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        pass

    async def callback(self, message: Any) -> None:
        if message.offset in self.slow:  # a full stream queue; the flow is suspended
            self.slow.discard(message.offset)
            self.suspend_flow.set()
            await asyncio.sleep(10)
        self.delivered.append((message.offset, message.generation_id))

    def getmany(self, timeout: float) -> Any:
        async def batch() -> Any:
            if not self.batches:
                self._stopped.set()
                return
            for m in self.batches.pop(0):
                yield TP, m
        return batch()


async def _run(drain: Any, state: _Loop) -> list[tuple[int, int]]:
    await asyncio.wait_for(drain(state, SimpleNamespace(_stopped=asyncio.Event())), 5)
    return state.delivered


def _patched() -> Any:
    faust_fixes.apply()
    assert faust_fixes.faust_drain_messages is not None
    return faust_fixes._drain_messages


async def test_a_message_fetched_before_a_rebalance_is_read_again_after_its_seek() -> None:
    # the old batch (generation 1) reaches the loop after the seek; then the refetch
    batches = [[_msg(400, 1), _msg(401, 1)], [_msg(400, 2), _msg(401, 2)]]
    fixed = await _run(_patched(), _Loop(batches, generation=2, read_offset=400))
    assert [o for o, g in fixed if g == 2] == [400, 401]  # the streams get both
    faust = await _run(faust_fixes.faust_drain_messages,
                       _Loop(batches, generation=2, read_offset=400))
    assert [o for o, g in faust if g == 2] == [401]  # Faust's loop: 400 never reaches them


async def test_a_delivery_cut_short_by_a_rebalance_does_not_move_the_read_offset() -> None:
    state = _Loop([[_msg(401, 2)]], generation=2, read_offset=400, slow_delivery={401})
    await _run(_patched(), state)
    assert state.delivered == [] and state._read_offset[TP] == 400  # fetched again later
    state = _Loop([[_msg(401, 2)]], generation=2, read_offset=400, slow_delivery={401})
    await _run(faust_fixes.faust_drain_messages, state)
    assert state.delivered == [] and state._read_offset[TP] == 401  # Faust: read, never taken


def _committer(acked: list[int], committed: int | None) -> Any:
    """The attributes ``Consumer._new_offset`` uses."""
    state = SimpleNamespace(_acked=defaultdict(list), _gap=defaultdict(lambda: None),
                            _committed_offset=defaultdict(lambda: None),
                            _acked_index=defaultdict(set))
    state._acked[TP] = list(acked)
    state._acked_index[TP] = set(acked)
    state._committed_offset[TP] = committed
    return state


async def test_a_commit_never_passes_a_message_the_streams_did_not_acknowledge() -> None:
    """Seen in test_votes_durable (approvals partition 0, offset 0 lost): after the
    restart Faust resumed the stream partitions before it sought them, the stream
    processed offsets 1 and 2 read from where the consumer stood, and Faust committed
    3 - with no committed offset it does not check the head at all. And with one, it
    lets the message at the committed offset itself go (the chaos test's 407)."""
    _patched()
    # Faust's own: commits over the message at the committed offset
    assert faust_fixes.faust_new_offset(_committer([6, 7], 5), TP) == 8
    assert faust_fixes._new_offset(_committer([6, 7], 5), TP) is None
    assert faust_fixes._new_offset(_committer([5, 6, 7, 9], 5), TP) == 8
    assert faust_fixes._new_offset(_committer([0, 1, 2], None), TP) == 3
    # what the streams got after a rebalance and before the seek was read from wherever
    # the consumer stood: nothing is committed until the partition is sought
    assert faust_fixes.faust_new_offset(_committer([1, 2], None), TP) == 3
    early = _committer([1, 2], None)
    early.app = SimpleNamespace(consumer_generation_id=2)
    early.flow_active = True
    early.__dict__[faust_fixes.SOUGHT] = {TP: 1}
    assert faust_fixes._new_offset(early, TP) is None
    early.__dict__[faust_fixes.SOUGHT] = {TP: 2}  # sought: committed None, from 0
    early._committed_offset[TP] = 0
    assert faust_fixes._new_offset(early, TP) is None  # 0 never acknowledged


async def test_a_partition_is_handed_on_in_order_from_where_it_was_sought() -> None:
    """Records read from a stale position (the consumer stood past the committed offset)
    are read again from the expected offset once; a jump that is still there after that
    is a real gap (compaction, transaction markers) and acknowledged as one."""
    from intervaltree import IntervalTree

    _patched()
    seeks: list[int] = []

    def loop(batches: list[list[Any]]) -> _Loop:
        state = _Loop(batches, generation=2, read_offset=5)
        state._gap = defaultdict(IntervalTree)
        state.__dict__[faust_fixes.EXPECTED] = {TP: 5}  # sought to the committed offset

        async def seek(tp: Any, offset: int) -> None:
            seeks.append(offset)
            state._read_offset[tp] = offset
        state.seek = seek
        return state

    # stale: 7 and 8 come first; read again from 5, then 5..8 in order
    state = loop([[_msg(7, 2), _msg(8, 2)], [_msg(5, 2), _msg(6, 2), _msg(7, 2), _msg(8, 2)]])
    assert [o for o, _ in await _run(_patched(), state)] == [5, 6, 7, 8]
    assert seeks == [5] and not state._gap[TP]
    # a real gap: 5 and 6 do not exist; after one more read from 5 it is acked as a gap
    seeks.clear()
    state = loop([[_msg(7, 2)], [_msg(7, 2), _msg(8, 2)]])
    assert [o for o, _ in await _run(_patched(), state)] == [7, 8]
    assert seeks == [5] and sorted(state._gap[TP]) and \
        (min(i.begin for i in state._gap[TP]), max(i.end for i in state._gap[TP])) == (5, 7)


async def test_an_offset_skipped_behind_acknowledged_ones_is_read_again(monkeypatch: Any) -> None:
    """test_votes_durable: a restarted worker's stream skipped approvals offsets 1 and 2
    and processed 0 and 3 in the same generation; the commit held at 1, but nothing read
    1 and 2 again until the next rebalance. A hole at the committed offset that lasts
    is read again, once."""
    _patched()
    sought: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        sought.append((tp, offset))

    consumer = _committer([3], 1)
    consumer.flow_active, consumer.seek = True, seek
    consumer.app = SimpleNamespace(consumer_generation_id=2)
    consumer.__dict__[faust_fixes.SOUGHT] = {TP: 2}
    now = [100.0]
    monkeypatch.setattr(faust_fixes.time, "monotonic", lambda: now[0])
    assert faust_fixes._new_offset(consumer, TP) is None  # first seen
    now[0] += faust_fixes.HOLE_GRACE / 2
    assert faust_fixes._new_offset(consumer, TP) is None  # a slow stream, maybe
    await asyncio.sleep(0)
    assert sought == []
    now[0] += faust_fixes.HOLE_GRACE
    assert faust_fixes._new_offset(consumer, TP) is None
    await asyncio.sleep(0)
    assert sought == [(TP, 1)] and consumer.__dict__[faust_fixes.EXPECTED][TP] == 1
    now[0] += 10 * faust_fixes.HOLE_GRACE
    assert faust_fixes._new_offset(consumer, TP) is None
    await asyncio.sleep(0)
    assert sought == [(TP, 1)]  # once: a message no stream takes stays as in Faust
    consumer._acked[TP] = [1, 2, 3]  # read again and acknowledged
    assert faust_fixes._new_offset(consumer, TP) == 4


class _Msg:
    """A consumer message as ``Consumer.ack`` sees it (hashable by identity)."""

    def __init__(self, offset: int) -> None:
        self.acked, self.tp, self.offset, self.topic = False, TP, offset, "metrics"


def test_a_second_copy_of_an_acknowledged_message_is_not_waited_for() -> None:
    """A message read again after a seek, before the next commit, has the offset of one
    already acknowledged; Faust's ack then left the copy in its unacknowledged set and
    every rebalance waited for it (wait_empty) forever."""
    from faust.transport.consumer import Consumer

    def consumer(*messages: _Msg) -> Any:
        return SimpleNamespace(
            _committed_offset=defaultdict(lambda: None), _acked_index=defaultdict(set),
            _acked=defaultdict(list), _n_acked=0, _unacked_messages=set(messages),
            _waiting_for_ack=None,
            app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True)))

    _patched()
    first, copy = _Msg(7), _Msg(7)
    c = consumer(first, copy)
    faust_fixes.faust_ack(c, first)
    faust_fixes.faust_ack(c, copy)
    assert c._unacked_messages == {copy}  # Faust's own: waited for forever
    first, copy = _Msg(7), _Msg(7)
    c = consumer(first, copy)
    Consumer.ack(c, first)
    Consumer.ack(c, copy)
    assert not c._unacked_messages


def test_a_message_a_stream_skipped_is_not_acknowledged() -> None:
    """A Faust stream skips a message it takes while the flow is suspended (a rebalance
    began) or that was fetched in an older generation, and acknowledges it like a
    processed one: the revocation's commit then went over it and the partition's next
    owner started after it (an approved action the executor never claimed,
    test_votes_durable). Such a message was never tracked; it stays unacknowledged, so
    the commit holds at it. A processed (tracked) message and a message Faust acks
    without a stream (a decode error, flow on) are acknowledged as before."""
    from faust.transport.consumer import Consumer

    flow = SimpleNamespace(active=True)

    def consumer() -> Any:
        return SimpleNamespace(
            _committed_offset=defaultdict(lambda: None), _acked_index=defaultdict(set),
            _acked=defaultdict(list), _n_acked=0, _unacked_messages=set(),
            _waiting_for_ack=None,
            app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True),
                                flow_control=SimpleNamespace(is_active=lambda: flow.active),
                                consumer_generation_id=3))

    def message(offset: int, tracked: bool, generation: int = 3) -> _Msg:
        m = _Msg(offset)
        m.tracked, m.generation_id = tracked, generation  # type: ignore[attr-defined]
        return m

    _patched()
    flow.active = False  # a rebalance began: the stream skips what it takes
    c = consumer()
    faust_fixes.faust_ack(c, message(5, tracked=False))
    assert c._acked[TP] == [5]  # Faust's own: committed as if processed
    c = consumer()
    assert Consumer.ack(c, message(4, tracked=True))  # processed before the suspension
    assert not Consumer.ack(c, message(5, tracked=False))
    assert c._acked[TP] == [4]
    flow.active = True
    assert not Consumer.ack(c, message(6, tracked=False, generation=2))  # older generation
    assert Consumer.ack(c, message(7, tracked=False))  # acked by Faust without a stream
    assert Consumer.ack(c, message(8, tracked=True))
    assert c._acked[TP] == [4, 7, 8]


async def test_a_message_skipped_while_the_flow_was_suspended_is_read_again() -> None:
    """tests/chaos/test_ha_workers.py: a survivor took over sre-actions partition 3; its
    one record reached the stream after the partition was resumed and sought but before
    the flow was resumed, the stream skipped it, and with nothing after it no commit or
    hole check read it again: an approved action never ran. Once the flow is on, the
    fetch loop seeks the partition back to the first skipped offset, once."""
    from faust.transport.consumer import Consumer

    _patched()
    flow = SimpleNamespace(active=False)
    sought: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        sought.append((tp, offset))

    c = SimpleNamespace(
        _committed_offset=defaultdict(lambda: None), _acked_index=defaultdict(set),
        _acked=defaultdict(list), _n_acked=0, _unacked_messages=set(), _waiting_for_ack=None,
        assignment=lambda: {TP}, seek=seek,
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True),
                            flow_control=SimpleNamespace(is_active=lambda: flow.active),
                            consumer_generation_id=3))
    for offset in (1, 0):
        m = _Msg(offset)
        m.tracked, m.generation_id = False, 3  # type: ignore[attr-defined]
        assert not Consumer.ack(c, m)
    expected: dict[Any, int] = {TP: 2}
    verified: dict[Any, int] = {TP: 2}
    await faust_fixes._read_skipped_again(c, expected, verified)
    assert sought == []  # the flow is still suspended
    flow.active = True
    await faust_fixes._read_skipped_again(c, expected, verified)
    assert sought == [(TP, 0)] and expected == {TP: 0} and verified == {}
    await faust_fixes._read_skipped_again(c, expected, verified)
    assert sought == [(TP, 0)]  # once


def _ticking_clock(monkeypatch: Any) -> None:
    """The fetch loop's clock advances 0.5 s at each reading (the tail check's grace
    passes within a dozen empty fetches)."""
    clock = [100.0]

    def monotonic() -> float:
        clock[0] += 0.5
        return clock[0]

    monkeypatch.setattr(faust_fixes, "_clock", monotonic)


def _tail_loop(batches: list[list[Any]], expected: int, seeks: list[int],
               **kw: Any) -> _Loop:
    """A loop with the flow on, the partition's highwater 6, the streams expecting
    ``expected`` next, and each seek's offset recorded in ``seeks``."""
    state = _Loop(batches, generation=2, **kw)
    state.flow_active, state.end = True, 6
    state.__dict__[faust_fixes.EXPECTED] = {TP: expected}

    async def seek(tp: Any, offset: int) -> None:
        seeks.append(offset)

    state.seek = seek  # type: ignore[attr-defined]
    return state


async def test_the_last_record_of_a_partition_dropped_before_the_streams_is_read_again(
        monkeypatch: Any) -> None:
    """tests/chaos/test_ha_workers.py: the one record of a taken-over sre-actions
    partition never reached the executor and nothing read it again (a dropped record is
    otherwise noticed by the jump of a later one). When the log holds records past the
    expected offset and none came for a while, the partition is read again from it,
    once per offset."""
    _patched()
    _ticking_clock(monkeypatch)
    seeks: list[int] = []
    # the delivery of 5 is cut short (the flow was suspended), then nothing comes
    state = _tail_loop([[_msg(5, 2)]] + [[] for _ in range(12)], 5, seeks, read_offset=5,
                       slow_delivery={5})
    assert await _run(faust_fixes._drain_messages, state) == []
    assert seeks == [5]  # once, after the grace
    # all handed on: nothing to read again
    await _run(faust_fixes._drain_messages, _tail_loop([[] for _ in range(12)], 6, seeks,
                                                       read_offset=6))
    assert seeks == [5]


async def test_a_partition_not_fetched_past_its_expected_offset_is_not_read_again(
        monkeypatch: Any) -> None:
    """bench_cognition.py stream: the tail re-read fired 40+ times a run on partitions
    whose records were simply not fetched yet (a quiet partition's new record, one
    starved behind busy partitions), each seek throwing a fetch away. Only a partition
    the client has fetched past the expected offset can have lost a record."""
    _patched()
    _ticking_clock(monkeypatch)
    position = {TP: 5}
    monkeypatch.setattr(faust_fixes, "_fetch_position", lambda consumer, tp: position[tp])
    seeks: list[int] = []
    # the log holds 5 (highwater 6), the client has not handed it out yet: no seek
    await _run(faust_fixes._drain_messages, _tail_loop([[] for _ in range(12)], 5, seeks,
                                                       read_offset=5))
    assert seeks == []
    # the client handed 5 out (position 6) and the streams never got it: read again
    position[TP] = 6
    await _run(faust_fixes._drain_messages, _tail_loop([[] for _ in range(12)], 5, seeks,
                                                       read_offset=5))
    assert seeks == [5]


async def test_an_event_handed_on_after_the_seek_survives_the_flow_resume() -> None:
    """tests/chaos/test_ha_workers.py: a survivor took over an sre-actions partition and
    its one record never reached the executor, with nothing left to read (the log's end
    = the offset expected next). Faust's recovery seeks the stream partitions, then
    resumes the flow, which empties every stream queue ("clear on resume": what the
    seek will fetch again). The seek runs in a task, so the fetch loop can hand a record
    on from the sought position before the resume; a stream busy with an earlier event
    has not taken it yet, the resume drops it, and nothing fetches it again. The resume
    now keeps what the fetch loop handed on since the seek (current generation, below
    the offset it expects next) and drops the rest as before."""
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    _patched()

    def handed_on_after_the_seek() -> tuple[Any, Any, _Loop]:
        flow = FlowControlEvent(initially_suspended=False)
        queue: Any = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
        state = _Loop([[_msg(0, 2)]], generation=2, read_offset=0)
        state.__dict__[faust_fixes.EXPECTED] = {TP: 0}  # sought to the log's beginning
        state.end = 1

        async def callback(message: Any) -> None:  # the conductor: into the stream's queue
            message.tp = TP
            queue.put_nowait(SimpleNamespace(message=message))
        state.callback = callback  # type: ignore[method-assign]
        return flow, queue, state

    flow, queue, state = handed_on_after_the_seek()
    await _run(faust_fixes._drain_messages, state)
    assert queue.qsize() == 1 and state.__dict__[faust_fixes.EXPECTED][TP] == 1
    faust_fixes.faust_flow_resume(flow)  # Faust's own resume
    assert queue.qsize() == 0  # dropped, and the loop expects 1 = the log's end:
    assert state.__dict__[faust_fixes.EXPECTED][TP] == state.end  # never fetched again

    flow, queue, state = handed_on_after_the_seek()
    await _run(faust_fixes._drain_messages, state)
    flow.__dict__[faust_fixes.HANDED_ON] = state  # set by the first seek
    stale = SimpleNamespace(message=SimpleNamespace(tp=TP, offset=0, generation_id=1))
    ahead = SimpleNamespace(message=SimpleNamespace(tp=TP, offset=1, generation_id=2))
    queue.put_nowait(stale)  # an older generation's: the streams skip it anyway
    queue.put_nowait(ahead)  # at or past the offset expected: the loop hands it on again
    flow.resume()
    assert flow.is_active()
    assert [e.message.offset for e in queue._queue] == [0]  # the one handed on is kept
    assert queue.get_nowait().message.generation_id == 2


async def test_an_event_put_in_the_queue_survives_a_resume_before_the_loop_moves_on() -> None:
    """tests/chaos/test_ha_workers.py run 60 (HA loop, 7 Dec): a survivor's fetch loop
    handed sre-actions:1 offset 1 on at the very moment the recovery resumed the flow
    (the record's last_seen 05.482-05.494, "Worker ready" 05.493, logged right after the
    resume); the executor never got it, no "kept queued events" line, the loop expected
    2, the commit stayed at 1, handover empty. The delivery (a task of its own) puts the
    event in the stream's queue and ends; the loop learns it only two event-loop steps
    later and then moves its expected offset past it. A resume in between saw the
    event at the expected offset ("will be fetched again"), dropped it, and the loop
    then moved past it. The resume now also keeps the event of the delivery in flight."""
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    _patched()
    flow = FlowControlEvent(initially_suspended=False)
    queue: Any = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
    state = _Loop([[_msg(1, 3)]], generation=3, read_offset=1)
    state.__dict__[faust_fixes.EXPECTED] = {TP: 1}  # sought to the committed offset 1
    flow.__dict__[faust_fixes.HANDED_ON] = state  # set by the seek
    state.end = 2

    async def callback(message: Any) -> None:  # the conductor: into the stream's queue
        message.tp = TP
        queue.put_nowait(SimpleNamespace(message=message))
        # the recovery's step that resumes the flow runs before the loop's wake-up
        asyncio.get_running_loop().call_soon(flow.resume)
    state.callback = callback  # type: ignore[method-assign]

    await _run(faust_fixes._drain_messages, state)
    assert state.__dict__[faust_fixes.EXPECTED][TP] == 2 == state.end  # never fetched again
    assert [e.message.offset for e in queue._queue] == [1]  # so the event must stay
    assert not state.__dict__.get(faust_fixes.DELIVERING)  # the delivery is over


async def test_a_producer_flush_that_waits_long_says_on_what(monkeypatch: Any,
                                                            caplog: Any) -> None:
    """A diagnostic: the HA chaos test's survivors had commits (each waits for a producer
    flush) hang for 29 s and for over a minute, with nothing in the log to say what the
    producer waited on. A flush still waiting reports the producer's state every
    FLUSH_REPORT_SECONDS, and returns as before."""
    import logging

    from faust.transport.drivers.aiokafka import Producer

    _patched()
    monkeypatch.setattr(faust_fixes, "FLUSH_REPORT_SECONDS", 0.05)
    acked = asyncio.Event()

    async def client_flush() -> None:
        await acked.wait()

    async def buffer_flush() -> None:
        pass

    tp = FaustTP("approvals", 0)
    sender = SimpleNamespace(_in_flight={0}, _muted_partitions={tp},
                             sender_task=asyncio.ensure_future(asyncio.sleep(10)))
    head = SimpleNamespace(remaining_linger=lambda: None, expired=lambda: False)
    client = SimpleNamespace(
        flush=client_flush, _sender=sender,
        _message_accumulator=SimpleNamespace(_batches={tp: [head]}, _pending_batches=[]),
        _metadata=SimpleNamespace(leader_for_partition=lambda tp: -1),
        client=SimpleNamespace(_md_update_fut=None, _sync_task=sender.sender_task))
    producer = SimpleNamespace(buffer=SimpleNamespace(flush=buffer_flush, size=0),
                               _producer=client, _transaction_producers={})
    with caplog.at_level(logging.WARNING, logger=faust_fixes.__name__):
        flushing = asyncio.ensure_future(Producer.flush(producer))
        await asyncio.sleep(0.12)
        assert not flushing.done()
        acked.set()
        await asyncio.wait_for(flushing, 1)
    sender.sender_task.cancel()
    reports = [r.getMessage() for r in caplog.records if "producer flush" in r.getMessage()]
    assert reports and "'approvals:0': 1" in reports[0] and "in_flight_nodes': [0]" in reports[0]
    assert "'sender': 'running'" in reports[0] and "'leader': -1" in reports[0]


async def test_a_topic_a_producer_sends_to_stays_in_its_metadata() -> None:
    """aiokafka's client fetches all topics' metadata while it tracks none; a send to a
    topic found there did not track it, so the next update (asking for the tracked
    topics only, e.g. after the first send to a topic created later) dropped it, and a
    batch waiting for it had no leader until its 20-minute time-out: the HA chaos test's
    survivors had commits, a revocation and a vote's acknowledgement wait on it."""
    from aiokafka.client import AIOKafkaClient

    _patched()

    def client() -> Any:
        c = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")
        # the all-topics snapshot (MetadataRequest(None) while nothing is tracked)
        c.cluster._partitions = {"feedback": {0: object(), 1: object()}}
        return c

    c = client()
    assert await faust_fixes.aiokafka_wait_on_metadata(c, "feedback") == {0, 1}
    assert "feedback" not in c._topics  # aiokafka's own: the next update leaves it out
    c = client()
    assert await c._wait_on_metadata("feedback") == {0, 1}
    assert c._topics == {"feedback"}  # asked for by every update from now on

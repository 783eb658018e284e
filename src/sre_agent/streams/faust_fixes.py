"""Fixes for faust-streaming 0.15.3 defects that lose messages; applied by ``create_app``.

Faust rewinds a stream partition to its committed offset whenever it dropped
records it had already fetched: after changelog recovery ("Seek stream
partitions to committed offsets") and when a fetch returns while the flow is
suspended by a rebalance. It does so with aiokafka's ``seek_to_committed``,
which seeks only when the committed offset is > 0 (``if offset and offset > 0``).
A partition the group never committed on (a new topic, a partition that got
its first record during a rebalance) is therefore not rewound: the position
stays *after* the dropped records and they are never processed. Seen in the HA
test: three workers, one killed, the first ``sre-actions`` record of a
partition taken over by a survivor was fetched during the takeover, dropped,
and the approved action never ran (committed offset None, record at offset 0,
consumer idle).

The fix rewinds such partitions to the beginning of the log, which is what the
group's ``auto_offset_reset="earliest"`` means for a partition without a
commit (and what committed offset 0 means). Changelog partitions are left
alone: table recovery positions them itself.

A member that stays in the group while it sets up its partitions. aiokafka
(0.14.0) stops heartbeating when it rejoins the group and starts again only
after the ``on_partitions_assigned`` listener returned; Faust's listener opens
every table's stores and starts recovery, and faust's RocksDB store runs a full
``gc.collect()`` for every table on every rebalance. On a loaded machine that
took ~1 s per table, 9-10 s in all: longer than the session timeout, so the
coordinator expelled the live member, the group rebalanced again, and the next
assignment was expelled the same way - a rebalance storm in which the
partitions of a killed worker were not served for minutes (the chaos test
``test_second_worker_joins_then_first_is_killed``, 2 of 4 CI runs; worker.log:
"Heartbeat failed: local member_id was not recognized" ~9 s after each
"Executing _on_partitions_assigned", generation after generation). The Java
client heartbeats from a background thread while its assignment callback runs;
so does this one now: the heartbeat task is started before the listener is
called, so the session timeout only ever expires for a member that is gone, not
for one whose callback is slow (a rebalance requested meanwhile is seen by that
heartbeat and done once the callback returns). And the store collects garbage
only when a rebalance actually dropped one of its databases.

A local table copy is trusted only if this worker built it as the active owner.
A standby copy can silently miss changelog records: Faust drops records it has
fetched in several places (flow suspended mid-batch, generation changed, paused
partition) and rewinds only stream partitions afterwards, so a standby's read
position can pass records it never applied, while its persisted offset (the
last record applied) looks complete. When the standby was promoted, recovery
started from that offset and read nothing: the chaos test's survivor served a
taken-over partition with groups of series 200 samples behind or missing
(w2's RocksDB lacked keys the changelog held below its persisted offset). Now a
changelog partition that becomes active on a worker that was not its active
owner in the previous generation is recovered from the start of its log (the
puts overwrite whatever the local copy held); one the worker keeps active
resumes from its persisted offset as before. The cost is reading a compacted
changelog partition on takeover and at start (blob-grouped tables keep it small).

A producer flush that returns only once every record given to the producer is in
the Kafka client. Faust commits offsets right after ``producer.flush()``, so the
changelog records of the state that learned the committed messages must be on the
broker by then. ``ProducerBuffer.flush`` returned early in two ways: its sender task
pops a record from the queue before handing it to the client, so a flush that found
the queue empty returned while that record was still on its way (e.g. the client
waiting for a full changelog batch to drain), and it gave up after 0.1 s without a
record sent (a busy loop). Both were seen in the chaos test's workers on a loaded
machine, at commits and at a partition handover: a ``baselines`` leaf record not yet
acknowledged when the flush returned. The offsets can then go out ahead of the
state: a worker SIGKILLed just after such a commit leaves the changelog behind its
committed offsets, and whoever takes its partitions over restores series missing
what that write saved and never reads those samples again (own test:
``tests/integration/test_producer_flush.py``). This closes one window; the chaos
test ``test_second_worker_joins_then_first_is_killed`` still lost one sample of one
shard now and then afterwards (issue 17), so it was not the only one. Now the flush waits, with
no time limit, until the queue is empty and no record is being handed over; the
client's own flush that follows then waits for every record to be acknowledged.

A fetched message counts as read only once it was delivered. Faust's fetch loop
(``Consumer._drain_messages``) hands each message to the streams with
``wait_first(callback(message), suspend_flow.wait())`` and then records its offset as
read whether the delivery finished or was cut short by a rebalance suspending the flow
(a stream's full queue makes the delivery wait). The loop can go on through its
pre-rebalance batch after the rebalance's seek to the committed offset has reset the
read offsets, so a kept partition's read offset jumps past messages never delivered:
the refetched ones below it are dropped as already read, and Faust's commit, which
treats a head one past the committed offset as contiguous, commits over the one at
the committed offset. A chaos run lost exactly one sample of one shard that way
(``test_second_worker_joins_then_first_is_killed``: learned counts {400, 401} in the
partition the killed worker had kept through a join). Messages of the batch
fetched before the rebalance carry the old generation, and the streams skip them
after it, yet the loop marked them read. The loop below is Faust 0.15.3's with two
changes: a message of an older generation is neither delivered nor read (the seek
fetches it again), and the read offset moves only when the delivery completed.
Agents here are idempotent on redelivery. Test: ``tests/unit/test_faust_drain.py``.

Each partition is handed on in order, and a commit never passes a message the streams
did not acknowledge. Faust's ``Consumer._new_offset`` commits the run of acknowledged
offsets at the head of its list; it checks that run against the committed offset only
when there is one, and even then lets the message *at* the committed offset go
(``min(acked) - committed > 1``), because its gap bookkeeping mixes "next offset to
read" (after a seek) with "last offset read" (after a delivery). So when a stream
skipped a message and acknowledged the next ones, the commit went over it. Both
failure signatures left in CI on 2026-12-07 came from there: test_votes_durable, where a
restarted worker committed 3 on ``approvals`` partition 0 with offsets 1 and 2
acknowledged and the vote at 0 never counted (after a rebalance Faust resumes the
stream partitions *before* it seeks them, and during table recovery the flow is
already on, so the agents got records read from wherever the consumer stood), and the
chaos test, whose worker went on from 408 with 407 committed and never read (its log:
the commit went to 675 over 407). Nothing is committed now for a partition before it
was sought in the current generation (:data:`SOUGHT`). The fetch loop knows the next
offset each partition should hand on (set by every seek, moved by every delivery): a record past it is read again from
there once, and only a jump that is still there is a gap (offsets that do not exist:
compaction, transaction markers), recorded exactly. The commit starts at the committed
offset exactly; when the message there stays unacknowledged for :data:`HOLE_GRACE`
seconds while later ones are acknowledged (a stream skipped it), the partition is read
again from it, once (:func:`_mend_hole`). (A first version tracked every offset handed
on until acknowledged; Faust drops redelivered messages a stream already processed
without acknowledging them again, so that blocked commits and re-read partitions
endlessly.) Tests: ``tests/unit/test_faust_drain.py`` (Faust's own loop and commit
side by side).

A second copy of an acknowledged message is forgotten when acknowledged. Faust's
``Consumer.ack`` removes a message from the set that ``wait_empty`` waits on only when
its offset was not acknowledged yet; a copy read again after a seek, before the next
commit, stayed there, and the next rebalance waited for it forever (a chaos-test
survivor stuck in its rebalance, the killed worker's partition never read:
"wait_empty: Waiting for tasks [... offset=2>]" every 10 s).

And a guard whatever the cause: a stage may record with its state how far that state
has learned each partition, and the partition then resumes there after a rebalance
when the group's commit is ahead of it (:func:`resume_from_state`; the metrics agent
writes its position after its leaves, in the same changelog partition). A commit ahead
of the saved state then costs a replay, not a sample. Test:
``test_a_commit_ahead_of_the_saved_state_is_not_trusted``.

A flow resume keeps what the fetch loop will not hand on again. Faust's
``FlowControlEvent.resume`` empties every stream queue ("clear on resume": what sits
there before a rebalance's seek is fetched again after it). Its recovery seeks the
stream partitions and then resumes the flow (``Recovery.on_recovery_completed``), but
the seek runs in a task (``Service.wait_first``) while the flow is already on for the
changelogs, so the fetch loop can hand a record on from the sought position before the
resume; a stream busy with an earlier event has not taken it yet, the resume drops it,
and nothing fetches it again (the loop expects the next offset, the log ends there, no
commit covers it, no later record jumps). Found reading Faust's code while chasing
tests/chaos/test_ha_workers.py's failure that came after the tail re-read
(``_read_undelivered_tail``) existed: a taken-over ``sre-actions`` partition's one record
never reached the executor and the re-read did not fire. Seen in the HA test's workers
with the resume logging what it dropped: in a normal run, a taken-over ``rca-results``
record (a later record's hole check read it again); with the seek-to-resume window
widened to 1.5 s, ``sre-actions`` partition 2's two records, dropped while the executor
ran another partition's action, ``/status`` handover empty, committed offset none: two
approved actions never ran (the original failure's signature). Now the resume drops
only entries of an older generation or at/after the offset the loop expects next
(fetched again), and keeps the ones handed on since the seek. Test: ``test_an_event_handed_on_after_the_seek_survives_the_flow_resume``.
It also keeps the event of the delivery in flight: the delivery (a task) puts it in the
queue and ends, and the loop moves its expected offset past it only when it wakes up,
two event-loop steps later; a resume in between took it for one to be fetched again and
dropped it silently. Seen in the HA loop's run 60 (7 Dec): a survivor's loop handed
``sre-actions:1`` offset 1 on as the recovery resumed the flow (the record's time
05.482-05.494 from the loop's ``last_seen``, "Worker ready" 05.493), no kept-events
line, the loop expected 2, the commit stayed at 1, the executor idle: an approved action
never ran. Test: ``test_an_event_put_in_the_queue_survives_a_resume_before_the_loop_moves_on``.

Every stream goes through the pure-Python iterator (``Stream._py_aiter``), never the
Cython one (``faust._cython.streams.StreamIterator``). The Cython iterator returns no
event for a message it skips (taken while the flow is suspended, or of an older
generation), so the message's reference count is never decremented: a message
delivered to several streams (``incidents`` feeds rca, knowledge and incident-tickets)
that one stream processed and another skipped stays unacknowledged, and ``wait_empty``
waits for it. The Cython path also inlines ``Consumer.ack``, so the ack fixes above
never ran for stream acknowledgements. The Python iterator acknowledges a skipped
event through ``Consumer.ack``, as Faust intends. Found reading Faust's code while
chasing the stop below. Test: ``tests/unit/test_faust_stream_ack.py``.

An event dropped from a stream queue takes its reference off its message. Faust
empties the stream queues at every rebalance and at shutdown (``flow_control.clear()``,
right before ``wait_empty``) and on a flow resume, without decrementing the messages
of the dropped events. A message handed to several streams (``incidents``: rca,
knowledge, incident-tickets) that one stream had processed and another still had
queued then never reaches a count of zero, and stays alive as long as the stream that
processed it holds it as its last message (its iterator's local, until the next one
comes; after a suspension none does): ``wait_empty`` waited for it for good. Seen in
``bench/bench_cognition.py stream``: the worker did not stop within 120 s of SIGTERM
(5 of 5 runs), ``wait_empty: Waiting for tasks [(1, <ConsumerMessage: ...incidents...
offset=9>)]`` every 20 s; the message tracked, refcount 1, no stream queue holding it,
held by the frames of the streams that had processed it (py-spy: the main thread in
``wait_empty``). The same wait stalled a two-worker run's rebalance (docs/benchmarks.md,
issue 18). Now a message left with no reference by the drop is no longer waited for;
it is not acknowledged either, so the commit stays below it and it is read again
(redelivery is idempotent here). Test: ``tests/unit/test_faust_stream_ack.py``.

A producer keeps the metadata of every topic it sends to. aiokafka's client asks for
all topics while it tracks none, and for the tracked ones only after that; each answer
replaces the whole metadata. A send finds its topic in the all-topics snapshot and does
not track it (Faust's topic declaration refreshes the producer's metadata while it
tracks none: a snapshot of all topics), so the first send to a topic the snapshot lacks
(``rca-windows``, ``logs``: declared while the workers run, by whichever needs them
first) narrows the next update to that topic, and every other topic drops out of the
producer's metadata. A batch already waiting for such a
topic then has no leader; the sender asks for a metadata update of the tracked topics,
which never brings it back, and the batch waits until another send to its topic or its
time-out (Faust: ``producer_request_timeout``, 20 min). Every commit waits for it (a
producer flush), and so does a revocation. Found reading aiokafka's code after the HA
chaos test showed a survivor's ``feedback`` batch waiting 130 s with nothing in flight,
nothing muted and the sender running (the flush report below: what a batch without a
leader looks like; the leader itself was not in that report yet); before that, a plan
that never reached an approval manager while a commit waited 29 s, and a vote
unacknowledged for 15 s with the group stuck in a rebalance for over a minute behind a
revocation waiting on a commit. Now a topic known only from the snapshot is tracked at
its first send. Test: ``test_a_topic_a_producer_sends_to_stays_in_its_metadata``.

A table does not take a topic still being created for a partition mismatch. Faust
checks at a table's first write from a source topic that the source and the changelog
have as many partitions, and its consumer's metadata shows a topic that another worker
is creating with none: ``PartitionsMismatch (... the changelog topic ... has 0
partitions)`` crashed the agent, and the events it had taken were lost. Seen in
tests/chaos/test_ha_workers.py (three workers starting at once, under the chaos suite's
load): the knowledge and planner agents of one worker crashed, two plans were never
made. A count of 0 is now left unjudged until the next write (a Kafka topic has at least
one partition); a real mismatch still raises. Test:
``test_a_changelog_being_created_is_no_partition_mismatch``.

A changelog record the fetch dropped is read again. Faust's ``Consumer.getmany`` drops
records it already took from the Kafka client when the flow is off (a rebalance, or
table recovery before it turns the flow on again), when the generation changed or when
the partition was paused meanwhile, and then seeks the *stream* partitions to their
committed offsets; nothing commits on a changelog partition, so its dropped records were
never read again and recovery waited for them for good. Seen in the chaos test
``test_second_worker_joins_then_first_is_killed`` (2 of 8 CI runs on 2026-12-07, ~1 in 70
alone): the survivor took over a partition whose standby it had read to the end,
recovery sought its changelogs to 0 and then "No event received for active tp" every
5 s for minutes, active_remaining 54. Now each dropped changelog record is noted and,
after the batch, its partition is sought back to the first one if the client still
stands right after the last (checked and sought in the consumer's thread in one step:
anywhere else, recovery sought it since). As a net for any other way to the same
stall, a recovery that has had no record of an active changelog partition for 20 s
while short of its highwater logs where that partition's fetch path stands and, if the
client is past the next offset recovery needs, reads it again from there (a re-read is
harmless: recovery applies only offsets past the ones it has). Tests:
``tests/unit/test_faust_changelog_refetch.py`` (Faust's ``getmany`` side by side).

Also a hook, not a fix: before Faust waits for every fetched message to be acked
(``Consumer.wait_empty``, on each rebalance and at shutdown) it calls the
callables in :data:`BEFORE_WAIT_EMPTY` on the app, so an agent that holds acks
back until its state is saved (the metrics agent) can save and ack first
instead of stalling the rebalance.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.group_coordinator import GroupCoordinator
from faust.stores import rocksdb as faust_rocksdb
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
import faust
from faust import streams as faust_streams
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Producer as FaustKafkaProducer
from faust.transport.producer import ProducerBuffer
from mode.utils.queues import FlowControlEvent
from faust.utils.functional import consecutive_numbers

__all__ = ["BEFORE_WAIT_EMPTY", "REWINDS", "STATE_POSITIONS", "apply", "before_wait_empty",
           "handover", "resume_from_state"]

#: app attribute: list of ``async () -> None`` run before ``Consumer.wait_empty``
BEFORE_WAIT_EMPTY = "sre_before_wait_empty"
#: app attribute: topic -> ``(partition) -> offset | None``, how far a stage's saved
#: state has learned that partition (see :func:`resume_from_state`)
STATE_POSITIONS = "sre_state_positions"
#: per topic: how often a partition resumed at its state's position, behind the commit
REWINDS: dict[str, int] = {}

_log = logging.getLogger(__name__)

_applied = False


def apply() -> None:
    """Patch once per process (idempotent)."""
    global _applied
    if _applied:
        return
    original = AIOKafkaConsumerThread.seek_to_committed

    async def seek_to_committed(self: Any) -> Mapping[Any, int]:
        offsets = dict(await original(self))
        consumer = self.consumer
        rewind = [tp for tp, offset in offsets.items()
                  if not offset and not self.consumer._is_changelog_tp(tp)]
        begins: dict[Any, int] = {}
        if rewind:
            client = self._ensure_consumer()
            await self.call_thread(client.seek_to_beginning, *rewind)
            # where the log begins: the commit's head from now on
            begins = dict(await self.call_thread(client.beginning_offsets, rewind))
        positions = getattr(self.app, STATE_POSITIONS, {})
        for tp, committed in list(offsets.items()):
            position_of = positions.get(tp.topic)
            if position_of is None or not committed:
                continue
            try:
                position = position_of(tp.partition)
            except Exception as exc:  # noqa: BLE001 - the commit is the fallback
                _log.warning("state position of %s unreadable (%s): resuming at the "
                             "committed offset %s", tp, exc, committed)
                continue
            if position is not None and 0 <= position < committed:
                _log.warning("%s: the saved state learned up to offset %d, the group "
                             "committed %d: resuming at %d (the state decides)",
                             tp, position, committed, position)
                await self.call_thread(self._ensure_consumer().seek, tp, position)
                offsets[tp] = position
                REWINDS[tp.topic] = REWINDS.get(tp.topic, 0) + 1
        sought = consumer.__dict__.setdefault(SOUGHT, {})
        generation = self.app.consumer_generation_id
        # from now on a flow resume keeps what the fetch loop will not hand on again
        self.app.flow_control.__dict__.setdefault(HANDED_ON, consumer)
        expected = consumer.__dict__.setdefault(EXPECTED, {})
        consumer.__dict__[BEGINNINGS] = begins
        sought_at = consumer.__dict__.setdefault(SOUGHT_AT, {})
        now = time.monotonic()
        for tp, offset in offsets.items():
            sought[tp] = generation
            sought_at[tp] = now
            start = offset if offset else begins.get(tp)
            if start is None:
                expected.pop(tp, None)
            else:
                expected[tp] = start
            # acknowledgements from before the seek are of messages read again from here
            consumer._acked.pop(tp, None)
            consumer._acked_index.pop(tp, None)
            consumer._gap.pop(tp, None)
            # skipped ones were not acknowledged: the commit, and so this seek, is at or
            # before them
            consumer.__dict__.get(SKIPS, {}).pop(tp, None)
        return offsets

    seek_to_committed.__doc__ = original.__doc__
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]

    # the Cython stream iterator never acknowledges a message it skips (module doc)
    faust_streams._CStreamIterator = None

    global faust_verify_partitions
    original_verify = faust_verify_partitions = Collection._verify_source_topic_partitions

    def verify_source_topic_partitions(self: Any, source_topic: str) -> None:
        if source_topic not in self._verified_source_topics_for_partitions:
            counts = (self.app.consumer.topic_partitions(source_topic),
                      self.app.consumer.topic_partitions(self.changelog_topic_name))
            if 0 in counts:  # a topic being created has no partitions yet: not judged
                return
        original_verify(self, source_topic)

    verify_source_topic_partitions.__doc__ = original_verify.__doc__
    Collection._verify_source_topic_partitions = verify_source_topic_partitions  # type: ignore[method-assign]

    global faust_ack
    original_ack = faust_ack = Consumer.ack

    def ack(self: Any, message: Any) -> bool:
        if _skipped_by_stream(self, message):
            return False
        done = original_ack(self, message)
        # Faust forgets an acknowledged message only when its offset was not already
        # acknowledged; a second copy of it (read again after a seek, before the next
        # commit) then stayed "unacknowledged" forever and every rebalance waited for it
        # in wait_empty: a survivor stuck in its rebalance, its new partitions unread
        # (the chaos test; the worker's log: "wait_empty: Waiting for tasks ...")
        if message.acked:
            self._unacked_messages.discard(message)
        return done

    ack.__doc__ = original_ack.__doc__
    Consumer.ack = ack  # type: ignore[method-assign]

    original_perform_seek = Consumer.perform_seek

    async def perform_seek(self: Any) -> None:
        await original_perform_seek(self)
        # Faust keeps no committed offset for a partition read from the log's beginning
        # (it maps 0 to None), so its commit would not check the head there at all
        for tp, begin in self.__dict__.pop(BEGINNINGS, {}).items():
            self._committed_offset[tp] = begin

    perform_seek.__doc__ = original_perform_seek.__doc__
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]

    global aiokafka_wait_on_metadata
    original_wait_on_metadata = aiokafka_wait_on_metadata = AIOKafkaClient._wait_on_metadata

    async def _wait_on_metadata(self: Any, topic: str) -> Any:
        if topic not in self._topics and self.cluster.partitions_for_topic(topic) is not None:
            # known only from a snapshot of all topics: track it, so the next update,
            # which asks for the tracked topics only, keeps it
            self.add_topic(topic)
        return await original_wait_on_metadata(self, topic)

    _wait_on_metadata.__doc__ = original_wait_on_metadata.__doc__
    AIOKafkaClient._wait_on_metadata = _wait_on_metadata  # type: ignore[method-assign]

    original_producer_flush = FaustKafkaProducer.flush

    async def producer_flush(self: Any) -> None:
        await _reporting_slow(original_producer_flush(self), lambda: producer_state(self),
                              "producer flush")

    producer_flush.__doc__ = original_producer_flush.__doc__
    FaustKafkaProducer.flush = producer_flush  # type: ignore[method-assign]

    global faust_flow_resume
    original_resume = faust_flow_resume = FlowControlEvent.resume

    def resume(self: Any) -> None:
        consumer = self.__dict__.get(HANDED_ON)
        if consumer is None:
            return original_resume(self)
        self._suspend.clear()
        self._resume.set()
        _clear_on_resume(self, consumer)
        return None

    resume.__doc__ = original_resume.__doc__
    FlowControlEvent.resume = resume  # type: ignore[method-assign]

    global faust_flow_clear
    original_clear = faust_flow_clear = FlowControlEvent.clear

    def clear(self: Any) -> None:
        consumer = self.__dict__.get(HANDED_ON)
        if consumer is not None:
            for queue in list(self._queues):
                _release_dropped(consumer, queue._queue)
        original_clear(self)

    clear.__doc__ = original_clear.__doc__
    FlowControlEvent.clear = clear  # type: ignore[method-assign]

    original_wait_empty = Consumer.wait_empty

    async def wait_empty(self: Any) -> None:
        for hook in list(getattr(self.app, BEFORE_WAIT_EMPTY, ())):
            await hook()
        await original_wait_empty(self)

    wait_empty.__doc__ = original_wait_empty.__doc__
    Consumer.wait_empty = wait_empty  # type: ignore[method-assign]

    original_join_complete = GroupCoordinator._on_join_complete

    async def _on_join_complete(self: Any, *args: Any, **kwargs: Any) -> None:
        # generation and member id are those of the join just completed: heartbeat
        # with them while the listener runs (ensure_active_group's own start after
        # the listener is then a no-op; a rejoin stops the task as before)
        self._start_heartbeat_task()
        await original_join_complete(self, *args, **kwargs)

    _on_join_complete.__doc__ = original_join_complete.__doc__
    GroupCoordinator._on_join_complete = _on_join_complete  # type: ignore[method-assign]

    def revoke_partitions(self: Any, table: Any, tps: Any) -> None:
        dropped = False
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                if self._dbs.pop(tp.partition, None) is not None:
                    self.logger.info(f"closing db {tp.topic} partition {tp.partition}")
                    dropped = True
        if dropped:  # a database caught in a cycle releases its lock for a reopen
            gc.collect()

    revoke_partitions.__doc__ = faust_rocksdb.Store.revoke_partitions.__doc__
    faust_rocksdb.Store.revoke_partitions = revoke_partitions  # type: ignore[method-assign]

    original_on_rebalance = Recovery.on_rebalance
    original_add_active = Recovery.add_active
    original_completed = Recovery.on_recovery_completed

    def add_active(self: Any, table: Any, tp: Any) -> None:
        original_add_active(self, table, tp)
        if tp not in getattr(self, "sre_owned", ()):
            self.active_offsets[tp] = None  # not built as its owner: read the whole log

    async def on_rebalance(self: Any, *args: Any, **kwargs: Any) -> None:
        # calls add_active for the new actives (no await in between); a partition that
        # is not active any more is not owned any more, whatever comes next
        await original_on_rebalance(self, *args, **kwargs)
        self.sre_owned = getattr(self, "sre_owned", set()) & set(self.active_tps)

    async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
        await original_completed(self, generation_id)
        if self.app.consumer_generation_id == generation_id:
            self.sre_owned = set(self.active_tps)  # recovered in order up to the end

    original_verify_path = AIOKafkaConsumerThread.verify_recovery_event_path

    def verify_recovery_event_path(self: Any, now: float, tp: Any) -> None:
        original_verify_path(self, now, tp)
        _report_recovery_stall(self, now, tp)

    verify_recovery_event_path.__doc__ = original_verify_path.__doc__
    AIOKafkaConsumerThread.verify_recovery_event_path = verify_recovery_event_path  # type: ignore[method-assign]

    for name, fun in (("add_active", add_active), ("on_rebalance", on_rebalance),
                      ("on_recovery_completed", on_recovery_completed)):
        fun.__doc__ = getattr(Recovery, name).__doc__
        setattr(Recovery, name, fun)

    original_send_pending = ProducerBuffer._send_pending
    original_flush = ProducerBuffer.flush

    async def _send_pending(self: Any, fut: Any) -> None:
        # called by the sender task right after it popped ``fut`` (no await between)
        self.sre_in_flight = getattr(self, "sre_in_flight", 0) + 1
        try:
            await original_send_pending(self, fut)
        finally:
            self.sre_in_flight -= 1

    async def flush(self: Any) -> None:
        while self.state == "running" and (self.size or getattr(self, "sre_in_flight", 0)):
            self.message_sent.clear()  # set by the sender task after each record
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass  # still sending (a slow broker): keep waiting, never return early
        if self.state != "running":  # stopping or crashed: Faust's own flush
            await original_flush(self)

    for name, fun in (("_send_pending", _send_pending), ("flush", flush)):
        fun.__doc__ = getattr(ProducerBuffer, name).__doc__
        setattr(ProducerBuffer, name, fun)

    if faust.__version__ != FAUST_DRAIN_VERSION:  # the loop below is a copy of that one
        raise RuntimeError(f"streams/faust_fixes.py copies Consumer._drain_messages of "
                           f"faust-streaming {FAUST_DRAIN_VERSION}, found {faust.__version__}: "
                           f"review the copy")
    global faust_drain_messages, faust_new_offset
    faust_drain_messages = Consumer._drain_messages
    _drain_messages.__doc__ = faust_drain_messages.__doc__
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    faust_new_offset = Consumer._new_offset
    _new_offset.__doc__ = faust_new_offset.__doc__
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    global faust_getmany
    faust_getmany = Consumer.getmany
    getmany.__doc__ = faust_getmany.__doc__
    Consumer.getmany = getmany  # type: ignore[method-assign]
    _applied = True


#: the faust-streaming release whose ``Consumer._drain_messages`` is copied below
FAUST_DRAIN_VERSION = "0.15.3"
#: Faust's own loop and commit offset, kept once replaced (the tests run them side by side)
faust_drain_messages: Any = None
faust_new_offset: Any = None
faust_getmany: Any = None
faust_ack: Any = None
faust_flow_resume: Any = None
aiokafka_wait_on_metadata: Any = None
#: flow-control attribute: the consumer whose fetch loop's expected offsets decide what
#: a flow resume may drop from the stream queues (set at the first seek)
HANDED_ON = "sre_handed_on"


#: seconds between the reports of a producer flush still waiting (every commit and
#: every rebalance's revocation wait for one)
FLUSH_REPORT_SECONDS = 5.0


async def _reporting_slow(work: Awaitable[Any], state: Callable[[], Any], what: str) -> Any:
    """Await ``work``; every :data:`FLUSH_REPORT_SECONDS` it is still running, log how
    long and ``state()``. A diagnostic: in the HA chaos test a survivor's commit waited
    29 s, and once for over a minute (its revocation with it, the whole group stuck in
    the rebalance), and a vote was not acknowledged in 15 s, with nothing in the log to
    say what the producer waited on."""
    task = asyncio.ensure_future(work)
    waited = 0.0
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=FLUSH_REPORT_SECONDS)
            if done:
                return task.result()
            waited += FLUSH_REPORT_SECONDS
            try:
                detail = state()
            except Exception as exc:  # noqa: BLE001 - a report must not fail the flush
                detail = f"state unreadable: {exc!r}"
            _log.warning("%s still waiting after %.0f s: %s", what, waited, detail)
    except asyncio.CancelledError:
        task.cancel()
        raise


def producer_state(producer: Any) -> dict[str, Any]:
    """What a Faust producer holds: its buffer (table writes), and in the Kafka client
    the batches per partition, the nodes with a request in flight, muted partitions and
    whether the sender task is alive."""
    buffer = producer.buffer
    out: dict[str, Any] = {"buffer": buffer.size,
                           "buffer_in_flight": getattr(buffer, "sre_in_flight", 0)}
    client = producer._producer
    if client is None:
        return out
    acc = client._message_accumulator
    out["batches"] = {f"{tp.topic}:{tp.partition}": len(b) for tp, b in acc._batches.items()
                      if b}
    # why the sender does not take them: no leader known (it then waits on a metadata
    # update), still lingering, expired
    heads: dict[str, Any] = {}
    for tp, batches in list(acc._batches.items()):
        if batches:
            head = batches[0]
            heads[f"{tp.topic}:{tp.partition}"] = {
                "leader": client._metadata.leader_for_partition(tp),
                "linger": head.remaining_linger(), "expired": head.expired()}
    out["heads"] = heads
    md = client.client
    fut, sync = md._md_update_fut, md._sync_task
    out["metadata_update"] = "none" if fut is None else "done" if fut.done() else "pending"
    out["metadata_sync"] = "none" if sync is None else "running" if not sync.done() else "done"
    out["pending_batches"] = len(acc._pending_batches)
    sender = client._sender
    out["in_flight_nodes"] = sorted(sender._in_flight)
    out["muted"] = sorted(f"{tp.topic}:{tp.partition}" for tp in sender._muted_partitions)
    task = sender.sender_task
    out["sender"] = ("none" if task is None else "running" if not task.done()
                     else f"done: {task.exception()!r}" if not task.cancelled() else "cancelled")
    return out


#: seconds without an event of an active changelog partition since recovery start
#: before its fetch path is reported (Faust itself warns after 30 s without saying why)
STALL_REPORT_AFTER = 20.0
_stall_reported: dict[Any, float] = {}


def _report_recovery_stall(thread: Any, now: float, tp: Any) -> None:
    """Log, at most every 30 s per partition, where the fetch path of an active changelog
    partition stands when recovery, still short of its highwater, has had no event of it
    for :data:`STALL_REPORT_AFTER` seconds (Faust's own warning, "No event received for
    active tp", says nothing of why), and read it again from the next offset recovery
    needs if the client already stands past that (:func:`_seek_back_if_past`)."""
    try:
        consumer = thread.consumer
        recovery = consumer.app.tables.recovery
        started = recovery._recovery_started_at
        if started is None or not recovery.in_recovery:
            return
        quiet_since = recovery._active_events_received_at.get(tp, started)
        highwater, last = recovery.active_highwaters.get(tp), recovery.active_offsets.get(tp)
        if (now - quiet_since < STALL_REPORT_AFTER
                or highwater is None or (last is not None and last >= highwater)
                or now - _stall_reported.get(tp, 0.0) < 30.0):
            return
        _stall_reported[tp] = now
        _log.warning("recovery stalled on %s: %s", tp, recovery_stall_state(consumer, tp))
        if tp in recovery.active_tps:
            task = asyncio.ensure_future(
                _seek_back_if_past(consumer, tp, 0 if last is None or last < 0 else last + 1))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    except Exception as exc:  # noqa: BLE001 - a report must never break recovery
        _log.info("recovery stall report of %s failed: %r", tp, exc)


async def _seek_back_if_past(consumer: Any, tp: Any, start: int) -> None:
    """Seek ``tp`` back to ``start`` (the next offset recovery needs) if the client
    already stands past it: records between were fetched and never reached recovery
    (see :func:`_read_changelogs_again` for the one way known; this is the net for any
    other). Recovery applies only offsets past the ones it has, so a re-read is harmless."""
    thread = consumer._thread

    def seek_back() -> int | None:
        client = thread._ensure_consumer()
        assignment = client._subscription.subscription.assignment
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None or not state.has_valid_position or state.position <= start:
            return None
        position = int(state.position)
        client.seek(tp, start)
        return position

    position = await thread.call_thread(seek_back)
    if position is not None:
        read = consumer._read_offset.get(tp)
        if read is not None and read > start:
            consumer._read_offset[tp] = start if start else None
        _log.warning("%s: recovery needs offset %d, the client stood at %d: reading "
                     "again from %d", tp, start, position, start)


def recovery_stall_state(consumer: Any, tp: Any) -> dict[str, Any]:
    """Where one partition stands on the way from the broker to table recovery."""
    app = consumer.app
    recovery = app.tables.recovery
    out: dict[str, Any] = {
        "generation": app.consumer_generation_id,
        "flow_active": consumer.flow_active,
        "flow_control_active": app.flow_control.is_active(),
        "faust_active": tp in (consumer._active_partitions or ()),
        "faust_paused": tp in consumer._paused_partitions,
        "faust_buffered": tp in consumer._buffered_partitions,
        "read_offset": consumer._read_offset.get(tp),
        "active_offset": recovery.active_offsets.get(tp),
        "active_highwater": recovery.active_highwaters.get(tp),
        "in_standby_tps": tp in recovery.standby_tps,
        "changelog_queue": recovery.tables.changelog_queue.qsize(),
        "fetch_loop_in_getmany": CONSUMER_FETCHING in consumer.diag.flags,
        "expected": consumer.__dict__.get(EXPECTED, {}).get(tp),
    }
    try:
        client = consumer._thread._ensure_consumer()
        fetcher = client._fetcher
        assignment = client._subscription.subscription.assignment
        state = assignment.state_value(tp) if assignment is not None else None
        out["client_assigned"] = state is not None
        if state is not None:
            out["client_position"] = state.position if state.has_valid_position else None
            out["client_paused"] = state.paused
            out["client_highwater"] = state.highwater
            out["client_polled_ms_ago"] = (None if not state.timestamp
                                           else int(time.time() * 1000 - state.timestamp))
        held = fetcher._records.get(tp)
        out["client_buffered"] = None if held is None else type(held).__name__
    except Exception as exc:  # noqa: BLE001 - not started or stopping
        out["client"] = repr(exc)
    return out


def _handed_on(consumer: Any, item: Any) -> bool:
    """Whether ``item`` (a stream queue's entry) was handed on by the fetch loop since
    its partition's last seek, so that the loop will not hand it on again: a message of
    the current generation below the offset the loop expects next."""
    message = getattr(item, "message", None)
    if message is None or message.generation_id != consumer.app.consumer_generation_id:
        return False
    expected = consumer.__dict__.get(EXPECTED, {}).get(message.tp)
    if expected is not None and message.offset < expected:
        return True
    # the delivery in flight: its event is in the queue, but the loop moves its
    # expected offset past it only once it wakes up, two event-loop steps later
    return consumer.__dict__.get(DELIVERING, {}).get(message.tp) == message.offset


def _clear_on_resume(flow: Any, consumer: Any) -> None:
    """Faust's ``FlowControlEvent.resume`` empties every stream queue, dropping what
    a rebalance's seek will fetch again; keep the entries it will not fetch again."""
    for queue in list(flow._queues):
        entries = queue._queue
        if not entries:
            continue
        kept = [e for e in entries if _handed_on(consumer, e)]
        if kept:
            _log.warning("flow resumed: kept %d queued events the fetch loop will not "
                         "hand on again (Faust drops them): %s", len(kept), _offsets(kept))
        if len(kept) < len(entries):
            keep = {id(e) for e in kept}
            dropped = [e for e in entries if id(e) not in keep]
            # the loop fetches these again: said, so that a drop the loop does not
            # make good shows in the log (the HA test's lost actions were silent drops)
            _log.info("flow resumed: dropped %d queued events to be fetched again: %s",
                      len(dropped), _offsets(dropped))
            _release_dropped(consumer, dropped)
        entries.clear()
        entries.extend(kept)


def _offsets(events: list[Any]) -> dict[str, list[int]]:
    """``{"topic:partition": [offsets]}`` of stream-queue events, for the log."""
    out: dict[str, list[int]] = {}
    for e in events:
        m = getattr(e, "message", None)
        if m is not None:
            out.setdefault(f"{m.tp.topic}:{m.tp.partition}", []).append(m.offset)
    return out


faust_flow_clear: Any = None
faust_verify_partitions: Any = None


def _release_dropped(consumer: Any, entries: Any) -> None:
    """Stream-queue events about to be dropped: each takes its reference off its
    message, and a message no stream holds any more is no longer waited for by
    ``wait_empty``. It is not acknowledged: the commit stays below it and it is read
    again (see the module doc)."""
    for event in list(entries):
        message = getattr(event, "message", None)
        if not hasattr(message, "decref") or message.acked:
            continue
        if not message.decref():
            consumer._unacked_messages.discard(message)
#: consumer attribute: tp -> the next offset the streams should be handed (set by a
#: seek, moved by each delivery; unknown after a seek to the log's beginning)
EXPECTED = "sre_expected"
#: consumer attribute: tp -> the offset the fetch loop is delivering to the streams
#: right now (its expected offset moves past it once the delivery is over)
DELIVERING = "sre_delivering"
#: consumer attribute: tp -> the generation in which it was last sought
SOUGHT = "sre_sought"
#: consumer attribute: tp -> the log's first offset, for partitions the last seek read
#: from the beginning (no commit yet)
BEGINNINGS = "sre_beginnings"


#: seconds the message at the committed offset may stay unacknowledged while later
#: ones are acknowledged before its partition is read again from it (a stream
#: processes a partition in order, so such a hole means the message was skipped;
#: redelivery is idempotent here)
HOLE_GRACE = 3.0
#: consumer attribute: tp -> [the unacknowledged offset, when first seen, read again]
HOLES = "sre_holes"


def _mend_hole(self: Any, tp: Any, first: int) -> None:
    """Read ``tp`` again from ``first`` (its committed offset) once, when the message
    there has stayed unacknowledged for :data:`HOLE_GRACE` seconds while later ones were
    acknowledged.

    A stream skips a message it was handed in two cases (fetched in an older
    generation, or taken while the flow was suspended) and counts on the next seek to
    hand it over again. Seen in test_votes_durable: a restarted worker's stream skipped
    ``approvals`` offsets 1 and 2 while it processed 0 and 3 in the same generation,
    and no seek followed; the commit held at 1, but the two votes were not counted
    until the next rebalance."""
    holes = self.__dict__.setdefault(HOLES, {})
    now = time.monotonic()
    seen = holes.get(tp)
    if seen is None or seen[0] != first:
        holes[tp] = [first, now, False]
        return
    if seen[2] or now - seen[1] < HOLE_GRACE or not self.flow_active:
        return  # read again once only: a message no stream takes stays as in Faust
    seen[2] = True
    _log.warning("%s: offset %d skipped by the streams (later ones acknowledged): "
                 "reading again from it", tp, first)
    self.__dict__.setdefault(EXPECTED, {})[tp] = first
    task = asyncio.ensure_future(self.seek(tp, first))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


_tasks: set[Any] = set()


def _skipped_by_stream(self: Any, message: Any) -> bool:
    """Whether a stream let ``message`` go without processing it.

    A Faust stream skips a message it takes while the flow is suspended (a rebalance
    began) or that was fetched in an older generation, and then acknowledges it like a
    processed one: the revocation's commit went over it and the partition's next owner
    started after it (found reading Faust's stream while chasing approved actions that
    never ran after a kill). Such a message was never tracked (the stream tracks a message
    only once it passed that check), so it stays unacknowledged here: the commit holds
    at it and the next seek hands it over again (redelivery is idempotent)."""
    if getattr(message, "tracked", True):
        return False
    app = self.app
    if not app.topics.acks_enabled_for(message.topic):
        return False
    if message.generation_id != app.consumer_generation_id:
        return True  # the seek of the new generation hands it over again
    if app.flow_control.is_active():
        return False
    # Skipped in the current generation (Faust resumes the partitions and seeks them
    # before it resumes the flow after a recovery): read again from here once the flow
    # is on (the fetch loop does it), unless a rebalance seeks the partition first
    skips = self.__dict__.setdefault(SKIPS, {})
    seen = skips.get(message.tp)
    if seen is None or seen[0] != message.generation_id or message.offset < seen[1]:
        skips[message.tp] = (message.generation_id, message.offset)
    return True


#: consumer attribute: tp -> when it was last sought (monotonic seconds)
SOUGHT_AT = "sre_sought_at"
#: the fetch loop's clock (a test replaces it without touching asyncio's)
_clock = time.monotonic


async def _read_undelivered_tail(self: Any, expected: dict[Any, int],
                                 verified: dict[Any, int], last_seen: dict[Any, float],
                                 stalled: dict[Any, int], now: float) -> None:
    """Seek a partition back to its expected offset, once per offset, when the log
    holds records past it and none of them came for :data:`HOLE_GRACE` seconds.

    Whatever drops a fetched record before the streams get it (a delivery cut short by
    a suspended flow, a record stamped with an older generation) counts on a later
    record's jump or on the next rebalance's seek to read it again; the last record of
    a partition has no later one. Seen in tests/chaos/test_ha_workers.py: the one
    record of a taken-over ``sre-actions`` partition never reached the executor, and no
    commit was ever made for it. A spurious seek only fetches again what was not
    handed on.

    Only a partition the client has fetched past the expected offset lost a record
    (:func:`_fetch_position`: records leave the client's buffer only through the loop,
    which hands each on or drops it). One whose position is still there has its
    records in flight or not fetched yet (a quiet partition whose new record just
    came, one starved behind busy ones while the fetch answer's size went to others):
    a seek there found nothing dropped and threw away the fetch in flight, every few
    seconds under load (bench_cognition.py stream: 40+ re-reads of metrics partitions
    in a run)."""
    if not self.flow_active or not self.app.flow_control.is_active():
        return
    assigned = self.assignment()
    sought_at = self.__dict__.get(SOUGHT_AT, {})
    for tp, exp in list(expected.items()):
        if exp is None or tp not in assigned or stalled.get(tp) == exp:
            continue
        quiet_since = max(last_seen.setdefault(tp, now), sought_at.get(tp, 0.0))
        if now - quiet_since < HOLE_GRACE:
            continue
        try:
            end = self.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched yet: nothing known to be missing
            continue
        if end is None or end <= exp:
            continue
        position = _fetch_position(self, tp)
        if position is not None and position <= exp:
            continue  # not fetched past the expected offset yet: nothing was dropped
        stalled[tp] = exp
        _log.warning("%s: records up to %d in the log, none handed on from %d for %.0f s: "
                     "reading again from %d", tp, end, exp, now - quiet_since, exp)
        verified.pop(tp, None)
        last_seen[tp] = now
        await self.seek(tp, exp)


def _fetch_position(consumer: Any, tp: Any) -> int | None:
    """The offset of the next record the Kafka client returns for ``tp`` (it moves as
    the fetch loop takes records out of the client's buffer), or None if unknown."""
    try:
        client = consumer._thread._ensure_consumer()
        state = client._subscription.subscription.assignment.state_value(tp)
        return int(state.position) if state is not None and state.has_valid_position else None
    except Exception:  # noqa: BLE001 - not started, stopping or no assignment
        return None


#: consumer attribute: tp -> (generation, the first offset a stream skipped in it
#: while the flow was suspended), read again once the flow is on
SKIPS = "sre_skips"


async def _read_skipped_again(self: Any, expected: dict[Any, int],
                              verified: dict[Any, int]) -> None:
    """Seek each partition a stream skipped messages of (flow suspended, same
    generation) back to the first of them, once the flow is on again.

    Faust's recovery resumes and seeks the partitions before it resumes the flow; a
    record that reaches a stream in between is skipped, and with nothing after it no
    commit or hole check would ever read it again (a candidate cause, from Faust's code,
    of tests/chaos/test_ha_workers.py's action that never ran; not confirmed by a log)."""
    skips = self.__dict__.get(SKIPS)
    if not skips or not self.app.flow_control.is_active():
        return
    generation = self.app.consumer_generation_id
    assigned = self.assignment()
    for tp, (gen, offset) in list(skips.items()):
        del skips[tp]
        committed = self._committed_offset.get(tp)
        if gen != generation or tp not in assigned or (
                committed is not None and offset < committed):
            continue
        _log.warning("%s: offset %d skipped by a stream while the flow was suspended: "
                     "reading again from it", tp, offset)
        expected[tp] = offset
        verified.pop(tp, None)
        await self.seek(tp, offset)


def _new_offset(self: Any, tp: Any) -> int | None:
    # Faust 0.15.3's Consumer._new_offset; the changes are marked CHANGED
    acked = self._acked[tp]
    if acked:
        max_offset = max(acked)
        gap_for_tp = self._gap[tp]
        if gap_for_tp:
            candidates = gap_for_tp.overlap(0, max_offset)
            sorted_candidates = sorted(candidates, key=lambda x: x.begin)
            if sorted_candidates:
                stuff_to_add: list[int] = []
                for entry in sorted_candidates:
                    stuff_to_add.extend(range(entry.begin, entry.end))
                new_max_offset = max(stuff_to_add[-1], max_offset + 1)
                acked.extend(stuff_to_add)
                gap_for_tp.chop(0, new_max_offset)
        acked.sort()
        # CHANGED: nothing is committed for a partition before it was sought in this
        # generation: Faust resumes the stream partitions before it seeks them, so what
        # the streams got in between was read from wherever the consumer stood (a
        # restarted worker read approvals from offset 1 and committed 3 over offset 0)
        sought = self.__dict__.get(SOUGHT)
        if sought is not None and sought.get(tp) != self.app.consumer_generation_id:
            return None
        committed_offset = self._committed_offset[tp]
        # CHANGED: the committed offset is the next one to read, and gaps are recorded
        # exactly (missing offsets only): the run must start at it, not one after it
        if committed_offset is not None and min(acked) > committed_offset:
            if sought is not None:
                _mend_hole(self, tp, committed_offset)
            return None
        batch = next(consecutive_numbers(acked))
        acked[: len(batch)] = []
        self._acked_index[tp].difference_update(batch)
        return batch[-1] + 1
    return None


#: consumer attribute: changelog tp -> [first, last] offsets of records taken from the
#: Kafka client and not handed on (see :func:`getmany`)
NOT_HANDED_ON = "sre_not_handed_on"


def _note_not_handed_on(consumer: Any, tp: Any, offset: int) -> bool:
    """Note a record of ``tp`` taken from the client and dropped; True if ``tp`` is a
    changelog partition (the only ones nothing else reads again)."""
    if not consumer._is_changelog_tp(tp):
        return False
    span = consumer.__dict__.setdefault(NOT_HANDED_ON, {}).get(tp)
    if span is None:
        consumer.__dict__[NOT_HANDED_ON][tp] = [offset, offset]
    else:
        span[0], span[1] = min(span[0], offset), max(span[1], offset)
    return True


async def getmany(self: Any, timeout: float) -> Any:
    # Faust 0.15.3's Consumer.getmany; the changes are marked CHANGED
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return

    records_it = self.scheduler.iterate(records)
    to_message = self._to_message  # localize
    dropped: set[Any] = set()  # CHANGED: changelog partitions with a record dropped
    if self.flow_active:
        for tp, record in records_it:
            if tp in dropped:  # CHANGED: what is not handed on stays a suffix
                _note_not_handed_on(self, tp, record.offset)
                continue
            if not self.flow_active:
                _drop_rest(self, tp, record, records_it)  # CHANGED
                break
            new_generation_id = self.app.consumer_generation_id
            if new_generation_id != generation_id:
                self.log.dev(
                    "Generation id changed from %r to %r. Cancelling getmany.",
                    generation_id,
                    new_generation_id,
                )
                _drop_rest(self, tp, record, records_it)  # CHANGED
                break
            if (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                highwater_mark = self.highwater(tp)
                self.app.monitor.track_tp_end_offset(tp, highwater_mark)
                # convert timestamp to seconds from int milliseconds.
                yield tp, to_message(tp, record)
            elif _note_not_handed_on(self, tp, record.offset):  # CHANGED
                dropped.add(tp)
    else:
        self.log.dev(
            "getmany called while flow not active. Seek back to committed offsets."
        )
        for tp, record in records_it:  # CHANGED: the seek below skips changelogs
            _note_not_handed_on(self, tp, record.offset)
        try:
            await self.perform_seek()
        except Exception as ex:
            self.log.warning(f"exception performing seek when flow not active {ex}")


def _drop_rest(consumer: Any, tp: Any, record: Any, records_it: Any) -> None:
    """Note ``record`` and every record left in the batch as not handed on."""
    _note_not_handed_on(consumer, tp, record.offset)
    for other, rest in records_it:
        _note_not_handed_on(consumer, other, rest.offset)


async def _read_changelogs_again(self: Any) -> None:
    """Seek each changelog partition back to the first record the fetch took from the
    Kafka client and dropped, if the client still stands right after the last one.

    Faust's fetch drops records it already took from the client in several places (the
    flow stopped while the fetch was out, the generation changed, the partition paused
    meanwhile) and counts on the seek to the committed offset to fetch them again; that
    seek never moves a changelog partition (nothing commits on it). So a changelog
    record fetched after table recovery had sought its partition, and dropped because
    the flow was not on again yet, was never read: recovery waited for it for good. Seen
    in tests/chaos/test_worker_faults.py (``test_second_worker_joins_then_first_is_killed``,
    2 of 8 CI runs on 2026-12-07, ~1 in 70 runs alone): a survivor took over a partition whose standby it had read
    to the end, recovery sought its changelogs to 0, and "No event received for active
    tp" came every 5 s with the client at the log's end. The check and the seek run in
    the consumer's thread, one step: a client that stands anywhere else was sought since
    (by recovery, which knows where to read), and is left alone. Reading a changelog
    record twice is harmless: recovery applies only offsets past the ones it has."""
    spans = self.__dict__.get(NOT_HANDED_ON)
    if not spans:
        return
    todo = {tp: tuple(span) for tp, span in spans.items()}
    spans.clear()
    thread = self._thread

    def seek_back() -> list[tuple[Any, int, int]]:
        client = thread._ensure_consumer()
        assignment = client._subscription.subscription.assignment
        done = []
        for tp, (first, last) in todo.items():
            state = assignment.state_value(tp) if assignment is not None else None
            if state is None or not state.has_valid_position or state.position != last + 1:
                continue
            client.seek(tp, first)
            done.append((tp, first, last))
        return done

    try:
        done = await thread.call_thread(seek_back)
    except Exception as exc:  # noqa: BLE001 - stopping or reassigned: a later seek decides
        _log.info("changelog records dropped by the fetch not read again: %r", exc)
        return
    for tp, first, last in done:
        read = self._read_offset.get(tp)
        if read is not None and read > first:
            self._read_offset[tp] = first if first else None
        _log.warning("%s: offsets %d-%d were fetched and dropped before recovery or a "
                     "standby got them: reading again from %d", tp, first, last, first)


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - the loop
    # Faust 0.15.3's Consumer._drain_messages; the changes are marked CHANGED
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    expected = self.__dict__.setdefault(EXPECTED, {})  # CHANGED
    delivering = self.__dict__.setdefault(DELIVERING, {})  # CHANGED: see _handed_on
    verified: dict[Any, int] = {}  # CHANGED: expected offsets already read again
    reseek: dict[Any, int] = {}  # CHANGED: partitions to read again after this batch
    last_seen: dict[Any, float] = {}  # CHANGED: tp -> when a record of it last came
    stalled: dict[Any, int] = {}  # CHANGED: tp -> expected offset already read again
    next_tail_check = 0.0  # CHANGED
    stale: dict[Any, Any] = {}  # CHANGED: tp -> older generation last logged
    monotonic = _clock  # CHANGED

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    last_seen[tp] = monotonic()  # CHANGED
                    if tp in reseek:  # CHANGED: read again from its expected offset
                        continue
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        acked_topic = acks_enabled_for(message.topic)
                        if message.generation_id != self.app.consumer_generation_id:
                            # CHANGED: fetched before a rebalance, delivered after it:
                            # the streams skip it and the seek fetches it again, so it
                            # is not read (marked read, it pushed the read offset past
                            # the refetch); no seek comes for a changelog: noted
                            _note_not_handed_on(self, tp, offset)
                            if stale.get(tp) != message.generation_id:
                                stale[tp] = message.generation_id
                                _log.info("%s: offset %d fetched in generation %s, now %s: "
                                          "left for the seek", tp, offset,
                                          message.generation_id,
                                          self.app.consumer_generation_id)
                            continue
                        # CHANGED: each partition is delivered in order from where it
                        # was sought. A jump past the expected offset is read again from
                        # there once; if it is still there the offsets do not exist
                        # (compaction, transaction markers): a gap, acked as such.
                        # (Faust's gap test used the read offset, which a seek sets to
                        # the next offset to read and a delivery to the last one read.)
                        exp = expected.get(tp) if acked_topic else None
                        if exp is not None and offset > exp:
                            if verified.get(tp) != exp:
                                verified[tp] = exp
                                reseek[tp] = exp
                                _log.warning("%s: offset %d fetched where %d was "
                                             "expected: reading again from %d",
                                             tp, offset, exp, exp)
                                continue
                            gaps = self._gap[tp]
                            gaps.addi(exp, offset)
                            gaps.merge_overlaps()
                        if commit_every is not None:
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        delivering[tp] = offset  # CHANGED: a resume keeps its event
                        delivery = callback(message)
                        try:
                            waited = await self.wait_first(delivery,
                                                           self.suspend_flow.wait())
                        finally:
                            delivering.pop(tp, None)  # CHANGED
                        if delivery in waited.done:  # CHANGED: read only once delivered
                            set_read_offset(tp, offset)
                            if acked_topic and (exp is None or offset >= exp):
                                expected[tp] = offset + 1
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                while reseek:  # CHANGED
                    tp, exp = reseek.popitem()
                    await self.seek(tp, exp)
                await _read_changelogs_again(self)  # CHANGED
                await _read_skipped_again(self, expected, verified)  # CHANGED
                now = monotonic()  # CHANGED
                if now >= next_tail_check:
                    next_tail_check = now + 1.0
                    await _read_undelivered_tail(self, expected, verified, last_seen,
                                                 stalled, now)
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def handover(app: Any) -> dict[str, dict[str, Any]]:
    """Partitions whose log holds records past the offset their streams expect next:
    ``{"topic:p": {"expected", "end", "paused", "fetching", "since_seek_seconds"}}`` (for
    ``/status``; a partition that stays here is not being read). ``paused``: by Faust
    (its own set: it never pauses the Kafka client) or the client; ``fetching``: among
    the partitions the fetch loop asks for (a full stream buffer takes one out)."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        assigned = consumer.assignment()
        paused = set(consumer._thread._ensure_consumer().paused())
        paused |= set(getattr(consumer, "_paused_partitions", ()) or ())
        active = set(consumer._active_partitions or ())
    except Exception:  # noqa: BLE001 - not started or stopping: nothing to say
        return out
    sought_at = consumer.__dict__.get(SOUGHT_AT, {})
    now = _clock()
    for tp, exp in list(consumer.__dict__.get(EXPECTED, {}).items()):
        if exp is None or tp not in assigned:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:  # noqa: BLE001
            end = None
        if end is not None and end <= exp:
            continue
        out[f"{tp.topic}:{tp.partition}"] = {
            "expected": exp, "end": end, "paused": tp in paused, "fetching": tp in active,
            "since_seek_seconds": round(now - sought_at[tp], 1) if tp in sought_at else None}
    return out


def before_wait_empty(app: Any, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` before Faust waits for in-flight messages to be acked."""
    hooks = getattr(app, BEFORE_WAIT_EMPTY, None)
    if hooks is None:
        hooks = []
        setattr(app, BEFORE_WAIT_EMPTY, hooks)
    hooks.append(hook)


def resume_from_state(app: Any, topic: str, position_of: Callable[[int], int | None]) -> None:
    """Resume ``topic``'s partitions no later than their saved state's position.

    After every rebalance Faust seeks each stream partition to the group's committed
    offset. For ``topic`` the seek then asks ``position_of(partition)`` - the first
    offset the stage's saved state (its table, restored from the changelog) has *not*
    learned - and resumes there when that is behind the commit. A commit can only run
    ahead of the saved state through a defect (the fetch loop, producer flush and
    recovery defects above were such); whatever the cause, the stage then relearns
    what its state lacks instead of skipping it for good. This is the "store the
    offsets with the state" pattern of the Kafka consumer's documentation.
    """
    positions = getattr(app, STATE_POSITIONS, None)
    if positions is None:
        positions = {}
        setattr(app, STATE_POSITIONS, positions)
    positions[topic] = position_of

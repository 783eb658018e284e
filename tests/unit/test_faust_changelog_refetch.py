"""A changelog record the fetch took from the Kafka client and dropped is read again.

Faust's ``Consumer.getmany`` drops records it already took from the client when the
flow is off (a rebalance, or table recovery before it resumes the flow), when the
generation changed, or when the partition was paused meanwhile, and then seeks the
stream partitions to their committed offsets. Nothing commits on a changelog partition,
so that seek never moves one: its dropped records were never read again, and table
recovery waited for them for good (tests/chaos/test_worker_faults.py,
``test_second_worker_joins_then_first_is_killed``: "No event received for active tp"
every 5 s, the client at the log's end). Faust's own ``getmany`` runs side by side here
and loses the records.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP as FaustTP

from sre_agent.streams import faust_fixes

CHANGELOG = FaustTP("app-baselines-changelog", 1)
STREAM = FaustTP("metrics", 1)


class _State:
    def __init__(self) -> None:
        self.position = 0
        self.has_valid_position = True


class _Client:
    """The slice of aiokafka's consumer the re-read uses: a position per partition
    and a log; a fetch takes what lies past the position and moves it to the end."""

    def __init__(self, logs: dict[Any, int]) -> None:
        self.logs = logs  # tp -> end offset
        self.states = {tp: _State() for tp in logs}
        self.seeks: list[tuple[Any, int]] = []
        assignment = SimpleNamespace(state_value=self.states.get)
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.states[tp].position = offset

    def fetch(self) -> dict[Any, list[Any]]:
        out = {}
        for tp, end in self.logs.items():
            st = self.states[tp]
            if st.position < end:
                out[tp] = [SimpleNamespace(offset=o) for o in range(st.position, end)]
                st.position = end
        return out


class _Thread:
    def __init__(self, client: _Client) -> None:
        self.client = client

    def _ensure_consumer(self) -> _Client:
        return self.client

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        return fun(*args)


class _Consumer:
    """The attributes ``Consumer.getmany`` uses, over the fake client."""

    def __init__(self, client: _Client, flow_active: bool) -> None:
        self.client = client
        self._thread = _Thread(client)
        self.flow_active = flow_active
        self.should_stop = False
        self.app = SimpleNamespace(consumer_generation_id=3,
                                   monitor=SimpleNamespace(track_tp_end_offset=lambda *a: None))
        self.scheduler = DefaultSchedulingStrategy()
        self._buffered_partitions: set[Any] = set()
        self._read_offset: dict[Any, int | None] = {}
        self.active: set[Any] = set(client.logs)
        self.log = SimpleNamespace(dev=lambda *a, **k: None, warning=lambda *a, **k: None)
        self.stream_seeks = 0

    async def _wait_next_records(self, timeout: float) -> Any:
        # the fetch went out while the flow was on and returns after recovery sought
        # the partitions, before it turned the flow on again
        return self.client.fetch(), self.active

    async def perform_seek(self) -> None:
        self.stream_seeks += 1  # seeks stream partitions to their commits only

    def _is_changelog_tp(self, tp: Any) -> bool:
        return tp.topic.endswith("-changelog")

    def highwater(self, tp: Any) -> int:
        return self.client.logs[tp]

    def _to_message(self, tp: Any, record: Any) -> Any:
        return SimpleNamespace(tp=tp, offset=record.offset)


async def _take(getmany: Any, consumer: _Consumer) -> list[tuple[Any, int]]:
    return [(tp, m.offset) async for tp, m in getmany(consumer, 1.0)]


async def _recovery(getmany: Any, reread: bool) -> list[tuple[Any, int]]:
    """Recovery sought the changelog to 0; the fetch returns its records while the flow
    is still off; then the flow comes on and the loop fetches again."""
    client = _Client({CHANGELOG: 4, STREAM: 2})
    consumer = _Consumer(client, flow_active=False)
    assert await _take(getmany, consumer) == []  # dropped: the flow is off
    assert consumer.stream_seeks == 1
    if reread:
        await faust_fixes._read_changelogs_again(consumer)
    consumer.flow_active = True
    return await _take(getmany, consumer)


def test_faust_loses_the_changelog_records_it_took_while_the_flow_was_off() -> None:
    got = asyncio.run(_recovery(faust_fixes.faust_getmany or _faust_getmany(), reread=False))
    assert (CHANGELOG, 0) not in got  # recovery waits for offsets 0-3 for good


def test_changelog_records_taken_while_the_flow_was_off_are_read_again() -> None:
    got = asyncio.run(_recovery(faust_fixes.getmany, reread=True))
    assert [o for tp, o in got if tp == CHANGELOG] == [0, 1, 2, 3]


def test_a_partition_sought_after_the_drop_is_left_where_it_was_sought() -> None:
    async def run() -> list[tuple[Any, int]]:
        client = _Client({CHANGELOG: 4})
        consumer = _Consumer(client, flow_active=False)
        await _take(faust_fixes.getmany, consumer)
        client.seek(CHANGELOG, 2)  # recovery sought it since: it knows where to read
        await faust_fixes._read_changelogs_again(consumer)
        assert client.seeks == [(CHANGELOG, 2)]
        consumer.flow_active = True
        return await _take(faust_fixes.getmany, consumer)

    assert asyncio.run(run()) == [(CHANGELOG, 2), (CHANGELOG, 3)]


def test_a_paused_changelog_partition_keeps_its_dropped_records_in_order() -> None:
    async def run() -> list[tuple[Any, int]]:
        client = _Client({CHANGELOG: 3, STREAM: 2})
        consumer = _Consumer(client, flow_active=True)
        consumer.active = {STREAM}  # paused between the fetch and the hand-on
        got = await _take(faust_fixes.getmany, consumer)
        assert got == [(STREAM, 0), (STREAM, 1)]
        await faust_fixes._read_changelogs_again(consumer)
        consumer.active = {STREAM, CHANGELOG}
        return await _take(faust_fixes.getmany, consumer)

    assert asyncio.run(run()) == [(CHANGELOG, 0), (CHANGELOG, 1), (CHANGELOG, 2)]


def _faust_getmany() -> Any:
    from faust.transport.consumer import Consumer
    return Consumer.getmany


def _stalled(position: int, last: int, highwater: int) -> tuple[Any, _Client]:
    """A consumer thread whose recovery waits on CHANGELOG (``last`` applied of
    ``highwater``) with no event of it for a minute; the client stands at ``position``."""
    client = _Client({CHANGELOG: highwater + 1})
    client.states[CHANGELOG].position = position
    consumer = _Consumer(client, flow_active=True)
    recovery = SimpleNamespace(
        _recovery_started_at=0.0, in_recovery=True, _active_events_received_at={},
        active_highwaters={CHANGELOG: highwater}, active_offsets={CHANGELOG: last},
        active_tps={CHANGELOG}, standby_tps=set(),
        tables=SimpleNamespace(changelog_queue=asyncio.Queue()))
    consumer.app.tables = recovery.tables
    recovery.tables.recovery = recovery
    consumer.app.flow_control = SimpleNamespace(is_active=lambda: True)
    consumer._active_partitions = {CHANGELOG}
    consumer._paused_partitions = set()
    consumer.diag = SimpleNamespace(flags=set())
    return SimpleNamespace(consumer=consumer), client


async def _watch(thread: Any) -> None:
    faust_fixes._stall_reported.clear()
    faust_fixes._report_recovery_stall(thread, 60.0, CHANGELOG)
    await asyncio.gather(*list(faust_fixes._tasks))


def test_a_recovery_stalled_with_the_client_past_what_it_needs_reads_again() -> None:
    thread, client = _stalled(position=44, last=-1, highwater=43)
    asyncio.run(_watch(thread))
    assert client.seeks == [(CHANGELOG, 0)]
    thread, client = _stalled(position=44, last=20, highwater=43)
    asyncio.run(_watch(thread))
    assert client.seeks == [(CHANGELOG, 21)]


def test_a_recovery_still_fetching_is_left_alone() -> None:
    thread, client = _stalled(position=0, last=-1, highwater=43)  # a slow broker
    asyncio.run(_watch(thread))
    assert client.seeks == []

"""A group-less reader of whole topics, replayed from a point in time on start.

The read model's projection and the stream RCA's window feed both need every
partition of their topics on every worker: they join no consumer group, commit
nothing, seek each partition on start (each subclass says where, from
``now - lookback`` typically, so a restarted worker rebuilds its state by
replay) and fold every record. On errors (broker away, topic deleted) the
reader reconnects with backoff and goes on where it was, folding nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..config import Settings
from ..sinks.kafka import client_kwargs

__all__ = ["GrouplessReader"]

log = logging.getLogger(__name__)


class GrouplessReader:
    """Reads every partition of ``topics`` (un-prefixed names) into :meth:`fold`."""

    #: how this reader is named in logs
    label = "group-less reader"

    def __init__(self, settings: Settings, topics: Iterable[str],
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        #: full topic name -> un-prefixed name
        self.names = {settings.topic(t): t for t in topics}
        self.caught_up = False
        #: set once every record that was in the topics at start is folded
        self.ready = asyncio.Event()
        self.errors = 0
        self.last_error: str | None = None
        #: end offsets at start: caught up once every position reaches them
        self._targets: dict[TopicPartition, int] = {}
        #: next offset to read per partition
        self._pos: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    # ---------------------------------------------------------------- subclass hooks
    def fold(self, topic: str, value: bytes | None) -> None:
        """Fold one record of ``topic`` (un-prefixed)."""
        raise NotImplementedError

    async def start_offsets(self, c: AIOKafkaConsumer, tps: list[TopicPartition],
                            ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Where each partition is read from on a fresh start (default: its end)."""
        return dict(ends)

    def polled(self, got_records: bool) -> None:
        """Called after every poll (housekeeping)."""

    def on_caught_up(self) -> None:
        """Called once, when every record that was there at start is folded."""

    # ---------------------------------------------------------------- helpers
    async def since(self, c: AIOKafkaConsumer, tps: list[TopicPartition], seconds: float,
                    ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Per partition, the first offset written in the last ``seconds`` (else its end)."""
        if not tps:
            return {}
        since_ms = int((self.clock() - seconds) * 1000)
        starts = await c.offsets_for_times({tp: since_ms for tp in tps})
        return {tp: starts[tp].offset if starts.get(tp) is not None else ends[tp] for tp in tps}

    def lag(self) -> int:
        """Messages behind the partitions' high watermarks (0 when unknown)."""
        c = self._consumer
        if c is None:
            return 0
        total = 0
        for tp, pos in self._pos.items():
            hw = c.highwater(tp)
            if hw is not None:
                total += max(0, hw - pos)
        return total

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Consume until cancelled; reconnect with backoff on errors."""
        backoff = 1.0
        while True:
            try:
                await self._run_once()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away, topic deleted ...: retry
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("%s failed, retrying in %.0fs: %s", self.label, backoff,
                            self.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _partitions(self, c: AIOKafkaConsumer) -> list[TopicPartition]:
        """All partitions of the topics, waiting for the app to create them.

        Subscribed without a group, the consumer is assigned every partition of
        the topics it finds in the metadata.
        """
        while True:
            tps = c.assignment()
            missing = set(self.names) - {tp.topic for tp in tps}
            if not missing:
                return sorted(tps)
            log.debug("%s waits for topics %s", self.label, sorted(missing))
            await asyncio.sleep(0.5)

    async def _run_once(self) -> None:
        c = AIOKafkaConsumer(*self.names, **client_kwargs(self.settings.kafka), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             metadata_max_age_ms=5_000, fetch_max_wait_ms=200)
        await c.start()
        self._consumer = c
        try:
            tps = await self._partitions(c)
            # end offsets first: a record produced while we look (a fresh topic's first
            # one, say) is then at or after the offset we seek to, never skipped
            ends = await c.end_offsets(tps)
            fresh = [tp for tp in tps if tp not in self._pos]
            starts = await self.start_offsets(c, fresh, ends) if fresh else {}
            for tp in tps:
                # reconnecting: go on where we were, fold nothing twice
                c.seek(tp, self._pos[tp] if tp in self._pos else starts[tp])
            self._pos = {tp: await c.position(tp) for tp in tps}
            self._targets = ends
            self.last_error = None
            names = self.names
            while True:
                batches = await c.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batches.items():
                    topic = names[tp.topic]
                    for r in records:
                        self.fold(topic, r.value)
                    if records:
                        self._pos[tp] = records[-1].offset + 1
                if not batches:  # idle: trust the consumer's positions (gaps, control records)
                    self._pos = {tp: await c.position(tp) for tp in self._pos}
                self.polled(bool(batches))
                if not self.caught_up:
                    self.caught_up = all(self._pos.get(tp, 0) >= end
                                         for tp, end in self._targets.items())
                    if self.caught_up:
                        self.ready.set()
                        self.on_caught_up()
        finally:
            self._consumer = None
            await c.stop()

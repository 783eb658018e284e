"""Feeds the read model from the output topics, on every worker.

Why a group-less consumer and not a Faust agent: with several replicas, an
agent sees only the partitions assigned to its worker, while the API behind a
Service may be answered by any replica. Each worker therefore reads *all*
partitions of the (low-volume) output topics, from ``now - lookback`` on
start, so its read model is complete and survives restarts by replay; compacted
topics (``silences``) are read from their beginning. It
commits nothing and joins no group, so the pipeline's consumer group is not
affected. Invalid events are only counted: the stage that owns the topic
routes them to its DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..config import Settings
from ..readmodel import TOPICS, ReadModel
from ..sinks.kafka import client_kwargs
from .topics import COMPACTED

__all__ = ["Projection"]

log = logging.getLogger(__name__)


class Projection:
    """Group-less consumer of :data:`~sre_agent.readmodel.TOPICS` into a read model."""

    def __init__(
        self, settings: Settings, model: ReadModel, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.model = model
        self.clock = clock
        self.names = {settings.topic(t): t for t in TOPICS}
        self.caught_up = False
        #: set once the model holds every record that was in the topics at start
        self.ready = asyncio.Event()
        self.errors = 0
        self.last_error: str | None = None
        self._targets: dict[TopicPartition, int] = {}
        #: next offset to read per partition
        self._pos: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.last_error is None,
            "caught_up": self.caught_up,
            "errors": self.errors,
            "last_error": self.last_error,
            "partitions": len(self._targets),
            "lag": self.lag(),
        }

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
                log.warning(
                    "read-model projection failed, retrying in %.0fs: %s", backoff, self.last_error
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _partitions(self, c: AIOKafkaConsumer) -> list[TopicPartition]:
        """All partitions of the projected topics, waiting for the app to create them.

        Subscribed without a group, the consumer is assigned every partition of
        the topics it finds in the metadata.
        """
        while True:
            tps = c.assignment()
            missing = set(self.names) - {tp.topic for tp in tps}
            if not missing:
                return sorted(tps)
            log.debug("read model waits for topics %s", sorted(missing))
            await asyncio.sleep(0.5)

    async def _run_once(self) -> None:
        c = AIOKafkaConsumer(
            *self.names,
            **client_kwargs(self.settings.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            fetch_max_wait_ms=200,
        )
        await c.start()
        self._consumer = c
        try:
            tps = await self._partitions(c)
            since_ms = int(
                (self.clock() - self.settings.api.readmodel_lookback_hours * 3600) * 1000
            )
            # end offsets first: a record produced while we look (a fresh topic's first
            # one, say) is then at or after the offset we seek to, never skipped
            ends = await c.end_offsets(tps)
            starts = await c.offsets_for_times({tp: since_ms for tp in tps})
            # collections are bounded: older messages than this per partition would be evicted
            cap = 2 * self.settings.api.readmodel_max_items
            begins = await c.beginning_offsets([tp for tp in tps if self.names[tp.topic]
                                                in COMPACTED])
            for tp in tps:
                found = starts.get(tp)
                if tp in self._pos:  # reconnecting: go on where we were, fold nothing twice
                    c.seek(tp, self._pos[tp])
                elif tp in begins:  # compacted (silences): every key's latest value counts
                    c.seek(tp, begins[tp])
                elif found is not None:
                    c.seek(tp, max(found.offset, ends[tp] - cap))
                else:  # nothing newer than the lookback in this partition
                    c.seek(tp, ends[tp])
            self._pos = {tp: await c.position(tp) for tp in tps}
            self._targets = ends
            self.last_error = None
            log.info(
                "read model replaying %d partitions from %.1f h ago",
                len(tps),
                self.settings.api.readmodel_lookback_hours,
            )
            while True:
                batches = await c.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batches.items():
                    topic = self.names[tp.topic]
                    for r in records:
                        self.model.update_raw(topic, r.value)
                    if records:
                        self._pos[tp] = records[-1].offset + 1
                if not batches:  # idle: trust the consumer's positions (gaps, control records)
                    self._pos = {tp: await c.position(tp) for tp in self._pos}
                if not self.caught_up:
                    self.caught_up = all(
                        self._pos.get(tp, 0) >= end for tp, end in self._targets.items()
                    )
                    if self.caught_up:
                        self.ready.set()
                        log.info("read model caught up: %s", dict(self.model.events))
        finally:
            self._consumer = None
            await c.stop()

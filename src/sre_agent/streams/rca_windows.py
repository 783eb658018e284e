"""Feeds the stream RCA's evidence windows from ``metrics`` and ``logs``, on every worker.

Why a group-less consumer and not a Faust agent: the RCA of an incident runs on
the worker that owns the incident's partition, but needs *every* service's
series and lines around the incident, and the pipeline's consumer group
spreads ``metrics``/``logs`` partitions over the workers. Like the read model's
projection, each worker therefore reads all partitions itself, from
``now - horizon`` at start (so a restarted worker has its windows back), joins
no group and commits nothing. It keeps only one point per series and bucket
(:class:`~sre_agent.processors.rca_windows.WindowStore`), so memory is bounded
whatever the sample rate. Refs of metrics schema v2 are resolved with its own
:class:`~sre_agent.schemas.series_refs.SeriesDirectory` (a ref seen before its
labels' refresh is skipped). Invalid messages are only counted: the stage that
owns the topic routes them to its DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..config import Settings
from ..processors.detect import service_of
from ..processors.rca_logs import line_level
from ..processors.rca_windows import WindowStore
from ..schemas import DecodeError, LogRecord, MetricBatch, decode
from ..schemas.series_refs import SeriesDirectory
from ..sinks.kafka import client_kwargs

__all__ = ["WindowFeed", "series_key_of"]

log = logging.getLogger(__name__)

_SERVICE_LABELS = ("service", "app", "job")


def series_key_of(name: str, labels: dict[str, str]) -> str:
    """The engine's metric key: the name plus the labels other than the service's.

    >>> series_key_of("cpu", {"service": "api"}), series_key_of("cpu", {"service": "api", "pod": "a"})
    ('cpu', 'cpu{pod="a"}')
    """
    used = next((k for k in _SERVICE_LABELS if labels.get(k)), None)
    rest = {k: v for k, v in labels.items() if k != used}
    if not rest:
        return name
    return name + "{" + ",".join(f'{k}="{rest[k]}"' for k in sorted(rest)) + "}"


class WindowFeed:
    """Group-less consumer of ``metrics`` and ``logs`` into a :class:`WindowStore`."""

    def __init__(self, settings: Settings, store: WindowStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.names = {settings.topic(t): t for t in ("metrics", "logs")}
        self.directory = SeriesDirectory()
        self.errors = 0
        self.invalid = 0
        self.unresolved = 0
        self.last_error: str | None = None
        self.caught_up = False
        self.consumed = 0
        self._pos: dict[TopicPartition, int] = {}
        self._targets: dict[TopicPartition, int] = {}

    def health(self) -> dict[str, Any]:
        return {"ok": self.last_error is None, "caught_up": self.caught_up,
                "series": len(self.store), "log_lines": self.store.log_lines,
                "clock": self.store.clock if self.store.clock > 0 else None,
                "consumed": self.consumed, "invalid": self.invalid,
                "unresolved_refs": self.unresolved, "errors": self.errors,
                "last_error": self.last_error}

    def add_raw(self, topic: str, value: bytes | None) -> None:
        """Fold one raw message (pure apart from the store; used by the tests too)."""
        self.consumed += 1
        try:
            if topic == "metrics":
                batch = decode(MetricBatch, value)  # type: ignore[arg-type]
                got = self.directory.expand(batch)
                self.unresolved += len(got.unresolved)
                for s in got.series:
                    labels = s["labels"]
                    self.store.add_points(service_of(labels), series_key_of(s["name"], labels),
                                          s["points"])
            else:
                rec = decode(LogRecord, value)  # type: ignore[arg-type]
                msg = rec.message
                if rec.level and not line_level(msg)[0]:
                    msg = f"{rec.level.upper()} {msg}"
                self.store.add_log(rec.time.timestamp(), rec.service, msg)
        except DecodeError:
            self.invalid += 1

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
                log.warning("RCA window feed failed, retrying in %.0fs: %s", backoff,
                            self.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _partitions(self, c: AIOKafkaConsumer) -> list[TopicPartition]:
        while True:
            tps = c.assignment()
            if not set(self.names) - {tp.topic for tp in tps}:
                return sorted(tps)
            await asyncio.sleep(0.5)

    async def _run_once(self) -> None:
        c = AIOKafkaConsumer(*self.names, **client_kwargs(self.settings.kafka), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             metadata_max_age_ms=5_000, fetch_max_wait_ms=200)
        await c.start()
        try:
            tps = await self._partitions(c)
            since_ms = int((self.clock() - self.store.horizon) * 1000)
            ends = await c.end_offsets(tps)
            starts = await c.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                found = starts.get(tp)
                if tp in self._pos:
                    c.seek(tp, self._pos[tp])
                elif found is not None:
                    c.seek(tp, found.offset)
                else:
                    c.seek(tp, ends[tp])
            self._pos = {tp: await c.position(tp) for tp in tps}
            self._targets = ends
            self.last_error = None
            n = 0
            while True:
                batches = await c.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batches.items():
                    topic = self.names[tp.topic]
                    for r in records:
                        self.add_raw(topic, r.value)
                    if records:
                        self._pos[tp] = records[-1].offset + 1
                n += 1
                if n % 200 == 0:
                    self.store.expire()
                if not batches:
                    self._pos = {tp: await c.position(tp) for tp in self._pos}
                if not self.caught_up:
                    self.caught_up = all(self._pos.get(tp, 0) >= end
                                         for tp, end in self._targets.items())
        finally:
            await c.stop()

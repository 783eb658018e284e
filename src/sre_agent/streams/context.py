"""What every stage's wiring gets: settings, app, topics, tables, counters.

Helpers here are the only place the codec meets Kafka: :meth:`decode` turns a
raw event into a typed model or routes it to the topic's DLQ; :meth:`send`
encodes a model and produces it with its key.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust

from ..config import Settings
from ..schemas import DeadLetter, DecodeError, Event, decode, encode
from .tables import Tables
from .topics import Topics

__all__ = ["StreamContext", "Stats"]

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


@dataclass
class Stats:
    """Counters shown in /status and exported to /metrics."""

    started: float = field(default_factory=time.time)
    events_in: Counter[str] = field(default_factory=Counter)
    events_out: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    samples_in: int = 0
    #: health entries of collectors/sinks: name -> {"ok": bool, ...}
    health: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class StreamContext:
    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables
    stats: Stats = field(default_factory=Stats)
    #: objects shared between stages (detectors, clients set up at start)
    state: dict[str, Any] = field(default_factory=dict)
    #: highest offset decoded per (topic, partition), to count/dead-letter once
    _seen: dict[tuple[str, int], int] = field(default_factory=dict)

    async def decode(self, model: type[E], event: Any, stage: str = "") -> E | None:
        """Decode ``event.value`` as ``model``; on failure send it to the DLQ, return None."""
        topic = model.TOPIC
        msg = event.message
        # Several stages may consume one topic (Faust hands each of them the same
        # message): count and dead-letter each offset once, in whichever comes first.
        tp = (topic, msg.partition)
        first = msg.offset > self._seen.get(tp, -1)
        if first:
            self._seen[tp] = msg.offset
            self.stats.events_in[topic] += 1
        try:
            return decode(model, event.value)
        except DecodeError as exc:
            if not first:
                return None
            await self.dead_letter(
                topic, event.value, exc.reason, stage=stage,
                partition=msg.partition, offset=msg.offset,
                message_key=msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else None,
            )
            return None

    async def dead_letter(self, topic: str, value: bytes | None, error: str, **kw: Any) -> None:
        """Produce a :class:`DeadLetter` to ``<topic>.dlq``; count it."""
        self.stats.dlq[topic] += 1
        log.warning("dead letter on %s: %s", topic, error[:300],
                    extra={"topic": topic, "offset": kw.get("offset")})
        dl = DeadLetter.of(topic, value, error, **kw)
        await self.topics.dlq(topic).send(key=topic.encode(), value=encode(dl))

    async def send(self, event: Event) -> None:
        """Produce ``event`` to its topic with its key."""
        key = event.key()
        self.stats.events_out[event.TOPIC] += 1
        await self.topics[event.TOPIC].send(
            key=key.encode() if key is not None else None, value=encode(event)
        )

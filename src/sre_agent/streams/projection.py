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

import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..config import Settings
from ..readmodel import TOPICS, ReadModel
from .replay import GrouplessReader
from .topics import COMPACTED

__all__ = ["Projection"]

log = logging.getLogger(__name__)


class Projection(GrouplessReader):
    """Group-less consumer of :data:`~sre_agent.readmodel.TOPICS` into a read model."""

    label = "read-model projection"

    def __init__(
        self, settings: Settings, model: ReadModel, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(settings, TOPICS, clock)
        self.model = model

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.last_error is None,
            "caught_up": self.caught_up,
            "errors": self.errors,
            "last_error": self.last_error,
            "partitions": len(self._targets),
            "lag": self.lag(),
        }

    def fold(self, topic: str, value: bytes | None) -> None:
        self.model.update_raw(topic, value)

    async def start_offsets(self, c: AIOKafkaConsumer, tps: list[TopicPartition],
                            ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        lookback = self.settings.api.readmodel_lookback_hours * 3600
        # collections are bounded: older messages than this per partition would be evicted
        cap = 2 * self.settings.api.readmodel_max_items
        compacted = [tp for tp in tps if self.names[tp.topic] in COMPACTED]
        # compacted (silences): every key's latest value counts
        out = await c.beginning_offsets(compacted) if compacted else {}
        since = await self.since(c, [tp for tp in tps if tp not in out], lookback, ends)
        for tp, offset in since.items():
            # nothing newer than the lookback in a partition: its end
            out[tp] = max(offset, ends[tp] - cap) if offset < ends[tp] else ends[tp]
        log.info("read model replaying %d partitions from %.1f h ago", len(tps),
                 self.settings.api.readmodel_lookback_hours)
        return out

    def on_caught_up(self) -> None:
        log.info("read model caught up: %s", dict(self.model.events))

"""Every topic of the architecture, declared once with explicit partitions.

Values travel as raw bytes and are decoded by the one codec in the agent, so
that undecodable input can be routed to the topic's DLQ instead of crashing
Faust's deserializer.
"""

from __future__ import annotations

from typing import Any

import faust

from ..config import Settings
from ..schemas import TOPIC_MODELS

__all__ = ["COMPACTED", "Topics"]

#: topics that keep the latest value per key forever (cleanup.policy=compact)
COMPACTED: frozenset[str] = frozenset({"silences"})


class Topics:
    """Attribute-style access: ``topics["metrics"]``, ``topics.dlq("metrics")``."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        k = settings.kafka
        self.settings = settings
        self._topics: dict[str, Any] = {}
        self._dlqs: dict[str, Any] = {}
        for name in TOPIC_MODELS:
            self._topics[name] = app.topic(
                settings.topic(name),
                partitions=k.partitions,
                replicas=k.replication,
                key_serializer="raw",
                value_serializer="raw",
                internal=True,  # created by the app with these partitions
                compacting=name in COMPACTED,
            )
            self._dlqs[name] = app.topic(
                settings.topic(f"{name}.dlq"),
                partitions=1,
                replicas=k.replication,
                key_serializer="raw",
                value_serializer="raw",
                internal=True,
            )

    def __getitem__(self, name: str) -> Any:
        return self._topics[name]

    def dlq(self, name: str) -> Any:
        return self._dlqs[name]

    def names(self) -> list[str]:
        return list(self._topics)

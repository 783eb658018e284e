"""Faust tables (RocksDB store, changelog-backed).

Tables are co-partitioned with the topic whose agent writes them, so their
partition count equals that topic's. Stages declare their own tables through
:meth:`Tables.declare` inside their ``register`` (before the app starts).
"""

from __future__ import annotations

from typing import Any

import faust

from ..config import Settings

__all__ = ["Tables"]


class Tables:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._app = app
        self._partitions = settings.kafka.partitions
        self._all: dict[str, Any] = {}
        #: series id -> compact model state (bytes), written per batch
        self.baselines = self.declare("baselines", help="per-series online baseline state")

    def declare(self, name: str, raw: bool = True, **kw: Any) -> Any:
        """Declare a table with the topics' partition count.

        ``raw`` tables map ``str`` keys to ``bytes`` values (the stage encodes
        its own compact state); otherwise pass ``key_type``/``value_type``.
        """
        kw.setdefault("partitions", self._partitions)
        if raw:
            kw.setdefault("key_type", str)
            kw.setdefault("value_type", bytes)
            # the changelog must carry raw bytes too, or a worker taking over a partition
            # cannot replay it (Faust would build it with the 'json' serializers)
            kw.setdefault("changelog_topic", self._app.topic(
                f"{self._app.conf.id}-{name}-changelog", key_type=str, value_type=bytes,
                key_serializer="raw", value_serializer="raw", partitions=kw["partitions"],
                compacting=True, acks=False, internal=True))
        table = self._app.Table(name, **kw)
        if raw:
            # Faust derives table serializers from the types ('json' for str/bytes);
            # set them before the store is created (lazily, at first use)
            table.key_serializer = "raw"
            table.value_serializer = "raw"
        self._all[name] = table
        return table

    def __getitem__(self, name: str) -> Any:
        return self._all[name]

    def items(self) -> list[tuple[str, Any]]:
        return list(self._all.items())

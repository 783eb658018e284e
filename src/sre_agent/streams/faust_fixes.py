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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

__all__ = ["apply"]

_applied = False


def apply() -> None:
    """Patch once per process (idempotent)."""
    global _applied
    if _applied:
        return
    original = AIOKafkaConsumerThread.seek_to_committed

    async def seek_to_committed(self: Any) -> Mapping[Any, int]:
        offsets = await original(self)
        rewind = [tp for tp, offset in offsets.items()
                  if not offset and not self.consumer._is_changelog_tp(tp)]
        if rewind:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *rewind)
        return offsets

    seek_to_committed.__doc__ = original.__doc__
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    _applied = True

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

Also a hook, not a fix: before Faust waits for every fetched message to be acked
(``Consumer.wait_empty``, on each rebalance and at shutdown) it calls the
callables in :data:`BEFORE_WAIT_EMPTY` on the app, so an agent that holds acks
back until its state is saved (the metrics agent) can save and ack first
instead of stalling the rebalance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

__all__ = ["BEFORE_WAIT_EMPTY", "apply", "before_wait_empty"]

#: app attribute: list of ``async () -> None`` run before ``Consumer.wait_empty``
BEFORE_WAIT_EMPTY = "sre_before_wait_empty"

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

    original_wait_empty = Consumer.wait_empty

    async def wait_empty(self: Any) -> None:
        for hook in list(getattr(self.app, BEFORE_WAIT_EMPTY, ())):
            await hook()
        await original_wait_empty(self)

    wait_empty.__doc__ = original_wait_empty.__doc__
    Consumer.wait_empty = wait_empty  # type: ignore[method-assign]
    _applied = True


def before_wait_empty(app: Any, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` before Faust waits for in-flight messages to be acked."""
    hooks = getattr(app, BEFORE_WAIT_EMPTY, None)
    if hooks is None:
        hooks = []
        setattr(app, BEFORE_WAIT_EMPTY, hooks)
    hooks.append(hook)

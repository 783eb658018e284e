"""Consumer fetch settings Faust does not expose, from ``worker.*`` settings.

Faust builds the group consumer with ``fetch_max_wait_ms=1500`` fixed and
aiokafka's default ``fetch_max_bytes``. aiokafka keeps one fetch request in
flight per broker, and leaves out of it the partitions whose fetched records
are not consumed yet: once the busy ``metrics`` partitions are buffered, the
next request holds only idle partitions (the other topics, changelogs), and
the broker keeps it for ``fetch_max_wait_ms`` before answering. Records
arriving on the busy partitions meanwhile wait up to 1.5 s: the worker sat idle
with data waiting. A short wait (``worker.fetch_max_wait_ms``, measured in
docs/benchmarks.md) keeps the idle round trips cheap and the busy partitions fed.

:func:`apply` wraps Faust's consumer factory once per process; each app's
values are read from the app (set by :func:`configure`), so apps in one
process (tests) keep their own.

:func:`configure` also sets the cyclic garbage collector's young-generation
threshold (``worker.gc_threshold``, process-wide): Python's 700 made the collector
~10 % of a remote-write worker's CPU (issue 18, docs/benchmarks.md).
"""

from __future__ import annotations

import gc
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from ..config import WorkerSettings

__all__ = ["apply", "configure", "tune_gc"]

_ATTR = "sre_fetch_settings"
_applied = False


def configure(app: Any, worker: WorkerSettings) -> None:
    """Remember ``worker``'s fetch settings on ``app`` and make sure the wrapper is in."""
    setattr(app, _ATTR, {"_fetch_max_wait_ms": worker.fetch_max_wait_ms,
                         "_fetch_max_bytes": worker.fetch_max_bytes})
    apply()
    tune_gc(worker.gc_threshold)


def tune_gc(threshold: int) -> tuple[int, int, int]:
    """Set the cyclic GC's young-generation threshold (``worker.gc_threshold``; 0 keeps
    the current one); return the thresholds now in force.

    Process-wide, like the collector. Only how often the collector runs changes, never
    what the stages compute; garbage without cycles is freed by reference counting as
    before, cyclic garbage waits for at most ``threshold`` net allocations.

    >>> before = gc.get_threshold()
    >>> tune_gc(50_000)[0], tune_gc(0)[0]
    (50000, 50000)
    >>> gc.set_threshold(*before)
    """
    if threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(threshold, older, oldest)
    return gc.get_threshold()


def apply() -> None:
    global _applied
    if _applied:
        return
    original = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        # the fetcher is built from these attributes when the consumer starts
        for attr, value in (getattr(self.app, _ATTR, None) or {}).items():
            setattr(consumer, attr, value)
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _applied = True

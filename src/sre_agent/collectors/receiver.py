"""The Prometheus remote-write receiver, independent of the HTTP framework.

:meth:`RemoteWriteReceiver.handle` takes a request's body and headers and
returns the answer (status, headers, JSON body or nothing); the route
(``POST /api/v1/write``) authenticates and calls it.

Answers, each once per request:

* ``204`` once every sample is acknowledged by the broker (the
  :class:`~sre_agent.collectors.coalesce.Coalescer` holds it for a short linger
  with the other samples of its shard first);
* ``400``/``415`` for a body that cannot be decoded, ``413`` for one over the
  size, series or sample limits: one dead letter (the body's head) and one
  log line per request;
* ``503`` with ``Retry-After`` when the ingest buffer is full or the broker
  did not acknowledge: Prometheus retries 5xx;
* series that break the ``metrics`` schema inside an otherwise good request
  are counted per reason into *one* summarising dead letter; the rest is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .coalesce import BufferFull, Coalescer, SeriesCache
from .remote_write import RemoteWriteError, decode_write_request

__all__ = ["RemoteWriteReceiver"]

log = logging.getLogger(__name__)

#: ``async (payload, reason) -> None``: one dead letter on ``metrics.dlq``
DeadLetter = Callable[[bytes, str], Awaitable[None]]


class RemoteWriteReceiver:
    def __init__(self, coalescer: Coalescer, cache: SeriesCache, dead_letter: DeadLetter, *,
                 max_decompressed_bytes: int, max_series: int, max_samples: int,
                 ack_timeout: float = 30.0) -> None:
        self.coalescer = coalescer
        self.cache = cache
        self._dead_letter = dead_letter
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_series = max_series
        self.max_samples = max_samples
        self.ack_timeout = ack_timeout
        self.health: dict[str, Any] = {
            "ok": True, "requests": 0, "samples": 0, "dropped_samples": 0,
            "rejected_requests": 0, "rejected_samples": 0, "busy_answers": 0,
            "last_success": None, "last_error": None, "last_error_at": None}

    def refused(self, error: str) -> None:
        self.health["rejected_requests"] += 1
        self.health["last_error"], self.health["last_error_at"] = error[:500], time.time()

    async def handle(self, body: bytes, content_encoding: str | None,
                     content_type: str | None) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """Decode, store, answer: ``(status, headers, JSON body or None)``."""
        h = self.health
        h["requests"] += 1
        try:
            result = decode_write_request(body, content_encoding, content_type,
                                          self.max_decompressed_bytes, self.max_series,
                                          self.max_samples, self.cache)
        except RemoteWriteError as exc:
            self.refused(str(exc))
            await self._dead_letter(body, f"remote-write: {exc}")
            return exc.status, {}, {"error": str(exc)}
        try:
            await asyncio.wait_for(self.coalescer.submit(result.items, "remote-write"),
                                   self.ack_timeout)
        except BufferFull as exc:
            h["busy_answers"] += 1
            return 503, {"Retry-After": str(exc.retry_after)}, {"error": str(exc)}
        except Exception as exc:  # broker unavailable or too slow: let the sender retry
            h["ok"] = False
            h["last_error"] = f"produce failed: {type(exc).__name__}: {exc}"[:500]
            h["last_error_at"] = time.time()
            log.warning("remote-write: produce failed: %s: %s", type(exc).__name__, exc)
            return 503, {"Retry-After": "1"}, {"error": f"could not store samples: {exc}"}
        for r in result.rejected:  # at most one: the request's summary
            h["rejected_samples"] += result.rejected_samples
            await self._dead_letter(r.payload, r.reason)
        h.update(ok=True, last_success=time.time())
        h["samples"] += result.samples
        h["dropped_samples"] += result.dropped_samples
        return 204, {}, None

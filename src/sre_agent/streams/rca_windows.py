"""The stream RCA's evidence windows on every worker, from a compact feed.

The RCA of an incident runs on the worker that owns the incident's partition,
but needs *every* service's series and log lines around the incident, while the
pipeline's consumer group spreads ``metrics`` partitions over the workers. Every
worker decoding the whole ``metrics`` topic again for that (what this module
did first) cost a quarter of a worker's CPU and made adding workers buy nothing
for it. Instead:

* the detection stage, which decodes its own ``metrics`` partitions anyway,
  folds each batch into a :class:`WindowRollup`: one *partial* per series and
  time bucket (sum and count of the samples since the last flush, the time of
  the last one), keyed by the engine's ``(service, series key)``, computed once
  per series. Every ``rca.flush_seconds`` (and whenever a bucket closes or too
  many rows wait) the partials go to the ``rca-windows`` topic
  (:class:`~sre_agent.schemas.windows.WindowPoints`, columnar);
* every worker's :class:`WindowFeed` reads ``rca-windows`` and ``logs`` whole
  (group-less, from ``now - horizon`` on start, so a restarted worker has its
  windows back) into its :class:`~sre_agent.processors.rca_windows.WindowStore`.
  Partials of a bucket add up: the store holds the same bucket means as if it
  had read every sample, whatever the flush cadence and the number of workers.

The feed's cost is per row, not per sample: at most one row per series and
flush (or bucket), and a row is five flat values (no labels, no refs to
resolve, no key to build). Invalid messages are only counted: the stage that
owns a topic routes its invalid input to its DLQ.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ..config import Settings
from ..processors.detect import service_of
from ..processors.rca_logs import line_level
from ..processors.redact import redact_secrets, scrub_model
from ..processors.rca_windows import WindowStore, with_label_trace
from ..schemas import DecodeError, LogRecord, decode
from ..schemas.windows import MAX_ROWS, WindowPoints
from .replay import GrouplessReader

__all__ = ["WindowFeed", "WindowRollup", "series_key_of", "window_horizon"]

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


def window_horizon(settings: Settings) -> float:
    """Seconds of event time the windows keep: reference + judged window + margin."""
    return settings.rca.reference_seconds + settings.rca.after_seconds + 600.0


#: encoded bytes of a message at most (well under Kafka's 1 MB message.max.bytes)
MAX_BYTES = 512 * 1024
#: a message's bytes besides its rows (envelope, field names, an id, a time, the source)
_HEAD_BYTES = 512


def _row_bytes(service: str, metric: str) -> int:
    """Encoded bytes of a row at most: its two strings as JSON, three numbers of at
    most 24 characters each, five separators."""
    return len(orjson.dumps(service)) + len(orjson.dumps(metric)) + 3 * 24 + 5


def _message(source: str, rows: list[tuple[tuple[str, str, int], float, float, int]]
             ) -> WindowPoints:
    """A message of ``rows``; its strings are redacted already (``add_series``), so it
    is encoded without another pass (:meth:`StreamContext.encode`)."""
    return WindowPoints.model_construct(
        source=redact_secrets(source[:256]), service=[r[0][0] for r in rows], metric=[r[0][1] for r in rows],
        t=[r[1] for r in rows], total=[r[2] for r in rows], count=[r[3] for r in rows])


class WindowRollup:
    """Samples of decoded ``metrics`` batches -> bucket partials (pure, bounded).

    ``add_series`` takes the series of a batch (refs resolved); ``flush``
    returns the waiting partials as :class:`WindowPoints` messages and starts
    over. A series' open partial is closed (queued) when a sample of another
    bucket comes. Samples older than ``horizon`` before the newest sample seen
    are dropped, as the store would (a history bootstrap does not flood the
    topic with days of buckets).

    >>> r = WindowRollup(bucket=60.0, horizon=600.0)
    >>> r.add_series([{"name": "cpu", "labels": {"service": "api", "pod": "a"},
    ...                "points": [(0.0, 1.0), (30.0, 3.0), (61.0, 5.0)]}])
    >>> [w.rows() for w in r.flush("w/0")]
    [[('api', 'cpu{pod="a"}', 30.0, 4.0, 2), ('api', 'cpu{pod="a"}', 61.0, 5.0, 1)]]
    >>> r.pending, r.flush("w/0")
    (0, [])
    """

    def __init__(self, bucket: float, horizon: float, max_keys: int = 200_000,
                 max_bytes: int = MAX_BYTES) -> None:
        self.bucket = bucket
        self.horizon = horizon
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self.clock = -math.inf
        #: id(labels) -> (labels, name, (service, series key, row bytes)): computed once
        #: per series
        #: (holding the labels keeps the id theirs)
        self._keys: dict[int, tuple[Any, str, tuple[str, str, int]]] = {}
        #: (service, series key, row bytes) -> [bucket, last t, sum, count] of the open
        #: partial
        self._open: dict[tuple[str, str, int], list[Any]] = {}
        #: closed partials waiting for the next flush: (key, last t, sum, count)
        self._closed: list[tuple[tuple[str, str, int], float, float, int]] = []

    @property
    def pending(self) -> int:
        """Rows the next flush sends (at most)."""
        return len(self._open) + len(self._closed)

    def add_series(self, series: Iterable[Any]) -> None:
        """Fold the points of decoded series (``{"name", "labels", "points"}``)."""
        keys, opened, closed, bucket = self._keys, self._open, self._closed, self.bucket
        floor = math.floor
        clock = self.clock
        lo = clock - self.horizon
        for s in series:
            points = s["points"]
            if not points:
                continue
            # the directory hands every message of a series the same (interned) name and
            # labels objects: one identity check finds the key
            name, labels = s["name"], s["labels"]
            e = keys.get(id(labels))
            if e is None or e[0] is not labels or e[1] is not name:
                if len(keys) >= self.max_keys:
                    keys.clear()
                # secrets out once per series here, not once per row and flush when
                # the message is encoded (that was a third of a worker's CPU)
                service = redact_secrets(service_of(labels))
                metric = redact_secrets(series_key_of(name, labels))
                e = keys[id(labels)] = (labels, name, (service, metric, _row_bytes(service,
                                                                                   metric)))
            key = e[2]
            acc = opened.get(key)
            for t, v in points:
                if t < lo:
                    continue
                if t > clock:
                    clock, lo = t, t - self.horizon
                b = floor(t / bucket)
                if acc is not None and acc[0] == b:
                    if t > acc[1]:
                        acc[1] = t
                    acc[2] += v
                    acc[3] += 1
                else:
                    if acc is not None:
                        closed.append((key, acc[1], acc[2], acc[3]))
                    acc = opened[key] = [b, t, v, 1]
        self.clock = clock

    def flush(self, source: str) -> list[WindowPoints]:
        """Every waiting partial, as messages of at most :data:`MAX_ROWS` rows and
        ``max_bytes`` encoded bytes (Kafka refuses records over ~1 MB)."""
        rows = self._closed
        rows.extend((k, a[1], a[2], a[3]) for k, a in self._open.items())
        self._closed, self._open = [], {}
        out: list[WindowPoints] = []
        start, used = 0, _HEAD_BYTES
        for i, row in enumerate(rows):
            used += row[0][2]
            if i > start and (used > self.max_bytes or i - start >= MAX_ROWS):
                out.append(_message(source, rows[start:i]))
                start, used = i, _HEAD_BYTES + row[0][2]
        if start < len(rows):
            out.append(_message(source, rows[start:]))
        return out

    def forget(self) -> None:
        """Drop the key cache (partitions revoked: their series may not come back)."""
        self._keys.clear()


class WindowFeed(GrouplessReader):
    """Group-less consumer of ``rca-windows`` and ``logs`` into a :class:`WindowStore`."""

    label = "RCA window feed"

    def __init__(self, settings: Settings, store: WindowStore,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, (WindowPoints.TOPIC, "logs"), clock)
        self.store = store
        self.invalid = 0
        self.consumed = 0
        self.rows = 0
        self._polls = 0

    def health(self) -> dict[str, Any]:
        return {"ok": self.last_error is None, "caught_up": self.caught_up,
                "series": len(self.store), "log_lines": self.store.log_lines,
                "clock": self.store.clock if self.store.clock > 0 else None,
                "consumed": self.consumed, "rows": self.rows, "invalid": self.invalid,
                "errors": self.errors, "last_error": self.last_error, "lag": self.lag()}

    def fold(self, topic: str, value: bytes | None) -> None:
        self.add_raw(topic, value)

    def add_raw(self, topic: str, value: bytes | None) -> None:
        """Fold one raw message (pure apart from the store; used by the tests too)."""
        self.consumed += 1
        try:
            if topic == WindowPoints.TOPIC:
                w = decode(WindowPoints, value)  # type: ignore[arg-type]
                add = self.store.add_partial
                for row in zip(w.service, w.metric, w.t, w.total, w.count, strict=True):
                    add(*row)
                self.rows += len(w.service)
            else:
                # secrets out at the source, as every stage's LogRecord input
                # (context.SCRUBBED_INPUTS); trace ids are no secrets and stay
                rec = scrub_model(decode(LogRecord, value))  # type: ignore[arg-type]
                msg = with_label_trace(rec.message, rec.labels)
                if rec.level and not line_level(msg)[0]:
                    msg = f"{rec.level.upper()} {msg}"
                self.store.add_log(rec.time.timestamp(), rec.service, msg)
        except DecodeError:
            self.invalid += 1

    async def start_offsets(self, c: AIOKafkaConsumer, tps: list[TopicPartition],
                            ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return await self.since(c, tps, self.store.horizon, ends)

    def polled(self, got_records: bool) -> None:
        self._polls += 1
        if self._polls % 200 == 0:
            self.store.expire()

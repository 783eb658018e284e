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
from bisect import bisect_right
from collections.abc import Callable, Iterable
from itertools import accumulate
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


def _message(source: str, service: list[str], metric: list[str], t: list[float],
             total: list[float], count: list[int]) -> WindowPoints:
    """A message of rows; its strings are redacted already (``add_series``), so it is
    encoded without another pass (:meth:`StreamContext.encode`)."""
    return WindowPoints.model_construct(
        source=redact_secrets(source[:256]), service=service, metric=metric, t=t,
        total=total, count=count)


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
        #: a series' verified key (``s["id"]``, resolved series) -> its entry
        self._ids: dict[str, list[Any]] = {}
        #: id(labels) -> (labels, name, entry), for series without a key; holding the
        #: labels keeps the id theirs
        self._labels: dict[int, tuple[Any, str, list[Any]]] = {}
        #: service -> series key -> entry: series of the same store key (a service
        #: named by another label) share one entry, hence one open partial. An entry is
        #: ``[service, series key, row bytes, bucket, last t, sum, count]``, the last four
        #: of its open partial (bucket None: none open); one list, no key tuple of its
        #: own (issue 18: 48 B per series)
        self._entries: dict[str, dict[str, list[Any]]] = {}
        #: entries with an open partial, in the order they opened since the last flush
        self._open: list[list[Any]] = []
        #: closed partials waiting for the next flush: (entry, last t, sum, count)
        self._closed: list[tuple[list[Any], float, float, int]] = []

    @property
    def pending(self) -> int:
        """Rows the next flush sends (at most)."""
        return len(self._open) + len(self._closed)

    def _entry(self, name: str, labels: dict[str, str]) -> list[Any]:
        """A series' entry (its key computed once per series: the callers cache it)."""
        if len(self._ids) + len(self._labels) >= self.max_keys:
            self._drop_keys()
        # secrets out once per series here, not once per row and flush when the
        # message is encoded (that was a third of a worker's CPU)
        service = redact_secrets(service_of(labels))
        metric = redact_secrets(series_key_of(name, labels))
        of = self._entries.get(service)
        if of is None:
            of = self._entries[service] = {}
        e = of.get(metric)
        if e is None:
            e = of[metric] = [service, metric, _row_bytes(service, metric), None, 0.0, 0.0, 0]
        return e

    def _drop_keys(self) -> None:
        self._ids.clear()
        self._labels.clear()
        # an open partial stays its key's until flushed
        self._entries = {}
        for e in self._open:
            self._entries.setdefault(e[0], {})[e[1]] = e

    def add_series(self, series: Iterable[Any]) -> None:
        """Fold the points of decoded series (``{"name", "labels", "points"}``, with
        ``"id"`` when resolved: the series' key, checked against its labels)."""
        ids, closed, opened, bucket, horizon = (self._ids, self._closed, self._open,
                                                self.bucket, self.horizon)
        floor = math.floor
        clock = self.clock
        lo = clock - horizon
        for s in series:
            points = s["points"]
            if not points:
                continue
            sid = s.get("id")
            if sid is not None:
                e = ids.get(sid)
                if e is None:
                    e = ids[sid] = self._entry(s["name"], s["labels"])
            else:
                # the directory hands every message of a series the same (interned)
                # name and labels objects: one identity check finds the entry
                name, labels = s["name"], s["labels"]
                c = self._labels.get(id(labels))
                if c is None or c[0] is not labels or c[1] is not name:
                    e = self._entry(name, labels)
                    self._labels[id(labels)] = (labels, name, e)
                else:
                    e = c[2]
            for t, v in points:
                if t < lo:
                    continue
                if t > clock:
                    clock, lo = t, t - horizon
                b = floor(t / bucket)
                if e[3] == b:
                    if t > e[4]:
                        e[4] = t
                    e[5] += v
                    e[6] += 1
                else:
                    if e[3] is None:
                        opened.append(e)
                    else:
                        closed.append((e, e[4], e[5], e[6]))
                    e[3], e[4], e[5], e[6] = b, t, v, 1
        self.clock = clock

    def flush(self, source: str) -> list[WindowPoints]:
        """Every waiting partial, as messages of at most :data:`MAX_ROWS` rows and
        ``max_bytes`` encoded bytes (Kafka refuses records over ~1 MB)."""
        closed, opened = self._closed, self._open
        self._closed, self._open = [], []
        # columns: the closed partials, then the open ones in the order they opened
        ents = [r[0] for r in closed]
        ents += opened
        t = [r[1] for r in closed]
        t += [e[4] for e in opened]
        total = [r[2] for r in closed]
        total += [e[5] for e in opened]
        count = [r[3] for r in closed]
        count += [e[6] for e in opened]
        for e in opened:
            # closed: its floats go too (~48 B per series until its next sample; a new
            # partial sets every field)
            e[3], e[4], e[5], e[6] = None, 0.0, 0.0, 0
        services = [e[0] for e in ents]
        metrics = [e[1] for e in ents]
        out: list[WindowPoints] = []
        # cut greedily: each message takes the most rows that fit (at least one);
        # ends[i] = bytes of the first i rows
        ends = [0, *accumulate([e[2] for e in ents])]
        room = self.max_bytes - _HEAD_BYTES
        start, n = 0, len(ents)
        while start < n:
            stop = bisect_right(ends, ends[start] + room, start + 1) - 1
            stop = min(max(stop, start + 1), start + MAX_ROWS, n)
            if start == 0 and stop == n:
                out.append(_message(source, services, metrics, t, total, count))
            else:
                out.append(_message(source, services[start:stop], metrics[start:stop],
                                    t[start:stop], total[start:stop], count[start:stop]))
            start = stop
        return out

    def forget(self) -> None:
        """Drop the key cache (partitions revoked: their series may not come back)."""
        self._drop_keys()


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
                self.store.add_partials(w.service, w.metric, w.t, w.total, w.count)
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

"""Recent metric and log windows per service, for the stream RCA (pure, bounded).

The stream RCA needs what ``sre-agent rca offline`` reads from files: every
service's series around the incident and the log lines. :class:`WindowStore`
keeps them for the last ``horizon`` seconds of *event time* (the newest sample
seen is the clock, so an accelerated replay and a live feed behave alike):

* series as **one point per bucket** (``bucket`` seconds, the mean of the
  samples in it, stamped with the time of its last sample so that no sample
  moves across the incident start); a series key is its metric name plus the
  labels other than the service label (one series per pod stays one series);
* log lines per service (the message cut to :data:`MAX_MESSAGE` characters; a
  trace id the cut would lose or split is kept, appended as ``trace_id=…``, so the
  engine's hand-offs between services see every line offline sees);
* bounds on series, points per series and log lines: the oldest go first.

:meth:`WindowStore.window` builds the :class:`~.rca_engine.IncidentWindow`
the engine ranks.

Examples
--------
>>> ws = WindowStore(horizon=600, bucket=60)
>>> for i in range(20):
...     ws.add_points("api", "latency", [(1000.0 + 30 * i, 1.0 + (i >= 16))])
>>> ws.clock, len(ws)
(1570.0, 1)
>>> w = ws.window(start=1480.0)
>>> t, v = w.series[("api", "latency")]
>>> [float(x) for x in t[-3:]], [float(x) for x in v[-3:]]   # 30 s samples, 60 s buckets
([1480.0, 1540.0, 1570.0], [1.5, 2.0, 2.0])
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .rca_engine import ChangeEvent, IncidentWindow
from .rca_logs import _TRACE

__all__ = ["MAX_MESSAGE", "WindowStore", "with_label_trace"]

#: characters of a log message kept (templates need the head of a line)
MAX_MESSAGE = 500


def cut_message(message: str) -> str:
    """``message`` cut to :data:`MAX_MESSAGE` characters, its trace id kept.

    Lines join into requests across services by their trace ids
    (:func:`.rca_logs.handoff_delays`); an id past the cut (a JSON line's
    ``"trace_id"`` after a long payload), or cut in two, would drop the line
    from its trace, or put it in a trace of its own.

    >>> cut_message("x" * 600 + " trace_id=4bf92f3577b34da6")[495:]
    'xxxxx ... trace_id=4bf92f3577b34da6'
    >>> cut_message("x" * 480 + " trace_id=4bf92f3577b34da6 " + "y" * 99)[475:]
    'xxxxx ... trace_id=4bf92f3577b34da6'
    """
    if len(message) <= MAX_MESSAGE:
        return message
    m = _TRACE.search(message)
    if m is None or m.end(1) <= MAX_MESSAGE:
        return message[:MAX_MESSAGE]
    # an id cut in two would leave its prefix as the line's id: cut before it
    return f"{message[:min(MAX_MESSAGE, m.start())].rstrip()} ... trace_id={m.group(1)[:64]}"


def with_label_trace(message: str, labels: dict[str, str]) -> str:
    """``message`` with the trace id its record's labels carry, when the line has none.

    OpenTelemetry logs (and Loki's structured metadata) keep the trace id beside the
    line, not in it; the hand-offs (``rca_logs.handoff_delays``) read it from the line.

    >>> with_label_trace("GET /pay 200", {"service": "pay", "trace_id": "4bf92f3577b34da6"})
    'GET /pay 200 trace_id=4bf92f3577b34da6'
    >>> with_label_trace("GET /pay 200 traceId=aaaabbbbcccc", {"traceID": "4bf92f3577b34da6"})
    'GET /pay 200 traceId=aaaabbbbcccc'
    """
    if not labels or _TRACE.search(message):
        return message
    for key, value in labels.items():
        if key.replace("_", "").replace("-", "").lower() == "traceid":
            tid = value.strip()[:64]
            # an all-zero id is no trace (W3C: invalid)
            if _TRACE.fullmatch(f"trace_id={tid}") and tid.strip("0-._"):
                return f"{message} trace_id={tid}"
    return message


#: doubles per bucket in a series' array: bucket index, time of its last sample, sum, count
_ROW = 4


def _rows(a: array) -> list[tuple[float, float, float, float]]:
    """A series' buckets, oldest first: ``(bucket index, last time, sum, count)``."""
    return [tuple(a[i:i + _ROW]) for i in range(0, len(a), _ROW)]  # type: ignore[misc]


class WindowStore:
    """Bounded recent windows of every service's series and logs.

    Parameters
    ----------
    horizon
        Seconds of event time kept (reference + judged window + margin).
    bucket
        Seconds per stored point.
    max_series, max_log_lines
        Bounds; the least recently updated series / the oldest lines are dropped.
    """

    def __init__(self, horizon: float = 4500.0, bucket: float = 60.0, max_series: int = 20_000,
                 max_log_lines: int = 100_000) -> None:
        self.horizon = horizon
        self.bucket = bucket
        self.max_series = max_series
        self.max_log_lines = max_log_lines
        self.max_points = max(2, math.ceil(horizon / bucket) + 1)
        #: (service, series key) -> its buckets, oldest first, as one flat array of
        #: doubles, :data:`_ROW` per bucket (bucket indices and counts are integers far
        #: below 2**53: exact as doubles). A deque of 4-lists held ~1 KB per series
        #: with one bucket (its 64-slot block) and ~190 B per further bucket; this holds
        #: 32 B per bucket and ~70 B per series
        self._series: OrderedDict[tuple[str, str], array] = OrderedDict()
        self._logs: deque[tuple[float, str, str]] = deque()
        self.clock = -math.inf
        #: the latest sample time of the metric series alone (log lines come straight from
        #: ``logs``; metric partials lag by the detection stage's flush interval)
        self.metric_clock = -math.inf
        self.dropped_series = 0

    def __len__(self) -> int:
        return len(self._series)

    @property
    def log_lines(self) -> int:
        return len(self._logs)

    def _series_at(self, service: str, metric: str) -> array:
        """The series, created (dropping the least recently updated past the bound)
        or marked as the most recently updated."""
        key = (service, metric)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = array("d")
            if len(self._series) > self.max_series:
                self._series.popitem(last=False)
                self.dropped_series += 1
        else:
            self._series.move_to_end(key)
        return s

    def _fold(self, s: array, t: float, total: float, count: int) -> None:
        """Fold ``count`` samples summing to ``total``, the last at ``t``, into its bucket."""
        b = math.floor(t / self.bucket)
        n = len(s)
        if n and s[n - 4] == b:
            s[n - 3] = max(s[n - 3], t)
            s[n - 2] += total
            s[n - 1] += count
        elif not n or s[n - 4] < b:
            s.extend((b, t, total, count))
            if n >= self.max_points * _ROW:
                del s[:_ROW]
        else:  # a late sample: fold it into its bucket if still kept
            for i in range(0, n, _ROW):
                if s[i] == b:
                    s[i + 1] = max(s[i + 1], t)
                    s[i + 2] += total
                    s[i + 3] += count
                    break
        if t > self.clock:
            self.clock = t
        if t > self.metric_clock:
            self.metric_clock = t

    def add_points(self, service: str, metric: str, points: Iterable[Sequence[float]]) -> None:
        """Add ``(t, value)`` samples of one series (finite values; any order)."""
        s = self._series_at(service, metric)
        for p in points:
            t, v = float(p[0]), float(p[1])
            if not (math.isfinite(t) and math.isfinite(v)) or t < self.clock - self.horizon:
                continue
            self._fold(s, t, v, 1)

    def add_partial(self, service: str, metric: str, t: float, total: float, count: int) -> None:
        """Add ``count`` samples of one series summing to ``total``, all in the bucket
        of ``t`` (the last of them): a bucket partial of the ``rca-windows`` feed.
        Partials of one bucket add up to the bucket the samples would have made."""
        if not (math.isfinite(t) and math.isfinite(total)) or count < 1 \
                or t < self.clock - self.horizon:
            return
        self._fold(self._series_at(service, metric), t, total, count)

    def add_partials(self, service: Sequence[str], metric: Sequence[str], t: Sequence[float],
                     total: Sequence[float], count: Sequence[int]) -> None:
        """:meth:`add_partial` of every row of columns of equal length (a
        :class:`~sre_agent.schemas.windows.WindowPoints` message), in order: the same
        store, with the per-row work inlined (the feed folds one row per series and
        flush of the whole ``rca-windows`` topic)."""
        series = self._series
        get, move = series.get, series.move_to_end
        isfinite, floor = math.isfinite, math.floor
        width, horizon = self.bucket, self.horizon
        full = self.max_points * _ROW  #: a series' array at its bound
        clock = self.clock
        lo = clock - horizon
        newest = -math.inf
        for sv, m, tt, tot, c in zip(service, metric, t, total, count, strict=True):
            if not (isfinite(tt) and isfinite(tot)) or c < 1 or tt < lo:
                continue
            key = (sv, m)
            s = get(key)
            if s is None:
                s = self._series_at(sv, m)
            else:
                move(key)
            b = floor(tt / width)
            last = s[-4] if s else None
            if last == b:
                if tt > s[-3]:
                    s[-3] = tt
                s[-2] += tot
                s[-1] += c
            elif last is None or last < b:
                s.extend((b, tt, tot, c))
                if len(s) > full:
                    del s[:4]
            else:  # a late partial: fold it into its bucket if still kept
                for i in range(0, len(s), 4):
                    if s[i] == b:
                        if tt > s[i + 1]:
                            s[i + 1] = tt
                        s[i + 2] += tot
                        s[i + 3] += c
                        break
            if tt > newest:
                newest = tt
                if tt > clock:
                    clock, lo = tt, tt - horizon
        self.clock = clock
        if newest > self.metric_clock:
            self.metric_clock = newest

    def add_log(self, t: float, service: str, message: str) -> None:
        if not math.isfinite(t) or t < self.clock - self.horizon:
            return
        self._logs.append((t, service, cut_message(message)))
        if len(self._logs) > self.max_log_lines:
            self._logs.popleft()
        if t > self.clock:
            self.clock = t

    def expire(self) -> None:
        """Forget what fell out of the horizon (call now and then; nothing to do
        before the first sample set the clock)."""
        if not math.isfinite(self.clock):
            return
        lo = math.floor((self.clock - self.horizon) / self.bucket)
        for key in list(self._series):
            s = self._series[key]
            n, i = len(s), 0
            while i < n and s[i] < lo:
                i += _ROW
            if i:
                del s[:i]
            if not s:
                del self._series[key]
        while self._logs and self._logs[0][0] < self.clock - self.horizon:
            self._logs.popleft()

    def services(self) -> set[str]:
        return {s for s, _ in self._series} | {s for _, s, _ in self._logs}

    def window(self, start: float, edges: Sequence[tuple[str, str]] = (),
               symptom: dict[str, Any] | None = None, events: Sequence[ChangeEvent] = (),
               services: Iterable[str] = ()) -> IncidentWindow:
        """The :class:`IncidentWindow` around ``start`` from what is kept."""
        series = {}
        for key, s in self._series.items():
            if not s:
                continue
            rows = np.array(s, float).reshape(-1, _ROW)  # a copy: the array stays growable
            rows = rows[np.argsort(rows[:, 1], kind="stable")]  # by time, as sorted() did
            series[key] = (rows[:, 1].copy(), rows[:, 2] / rows[:, 3])
        logs = sorted(self._logs, key=lambda r: r[0])
        return IncidentWindow(start=start, series=series, logs=logs, events=list(events),
                              edges=list(edges), symptom=symptom, services=list(services))

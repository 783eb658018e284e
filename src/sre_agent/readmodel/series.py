"""Ring buffers of recent values for the console's per-series charts.

Only series that had an anomaly are tracked (bounded, least recently touched
evicted first), so memory stays small however many series the agent watches.
Each point carries the learned band when a band provider knows it.

Examples
--------
>>> sb = SeriesBuffers(max_series=2, max_points=3)
>>> sb.mark("cpu{service=\\"api\\"}", "cpu", "api", 10.0, 9.0, 1.0, 0.5, 1.5, "open", 0.9, "a1")
>>> sb.add_points("cpu{service=\\"api\\"}", [(11.0, 1.1), (12.0, 1.0), (13.0, 0.9)])
3
>>> [p[0] for p in sb.points("cpu{service=\\"api\\"}")]
[11.0, 12.0, 13.0]
>>> sb.add_points("unknown", [(1.0, 1.0)])
0
>>> sb.add_series([{"name": "cpu", "labels": {"service": "api"}, "points": [(14.0, 1.2)]},
...                {"name": "mem", "labels": {"service": "api"}, "points": [(14.0, 7.0)]}])
1
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..schemas.telemetry import series_id, series_key

__all__ = ["Band", "BandFn", "SeriesBuffer", "SeriesBuffers"]

#: (expected, lower, upper) of a series at a time, or None when unknown
Band = tuple[float, float, float]
BandFn = Callable[[str, float, float], Band | None]
Point = tuple[float, float, float | None, float | None, float | None]


@dataclass
class SeriesBuffer:
    metric: str
    service: str
    points: deque[Point]
    marks: deque[dict[str, Any]]
    open: bool = False
    last_anomaly: float | None = None

    @property
    def last_t(self) -> float:
        return self.points[-1][0] if self.points else float("-inf")

    def append(self, p: Point) -> bool:
        """Append a point in time order; an older or equal time is dropped."""
        if p[0] <= self.last_t:
            return False
        self.points.append(p)
        return True


class SeriesBuffers:
    """Bounded set of :class:`SeriesBuffer`, keyed by series id."""

    def __init__(self, max_series: int = 200, max_points: int = 720) -> None:
        self.max_series = max_series
        self.max_points = max_points
        self._buf: OrderedDict[str, SeriesBuffer] = OrderedDict()
        #: metric names of tracked series (cheap pre-filter of metric batches)
        self.metrics: dict[str, int] = {}
        #: series key (``series_key``, what a ``metrics`` message names a series by)
        #: of every tracked series -> its id: a decoded series carrying its key is
        #: matched without building its id from its labels
        self._keys: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._buf)

    def __contains__(self, sid: object) -> bool:
        return sid in self._buf

    def get(self, sid: str) -> SeriesBuffer | None:
        return self._buf.get(sid)

    def items(self) -> list[tuple[str, SeriesBuffer]]:
        return list(self._buf.items())

    def _track(self, sid: str, metric: str, service: str) -> SeriesBuffer:
        buf = self._buf.get(sid)
        if buf is None:
            buf = SeriesBuffer(metric, service, deque(maxlen=self.max_points), deque(maxlen=100))
            self._buf[sid] = buf
            self._keys[series_key(sid)] = sid
            self.metrics[metric] = self.metrics.get(metric, 0) + 1
            while len(self._buf) > self.max_series:
                gone, old = self._buf.popitem(last=False)
                self._keys.pop(series_key(gone), None)
                n = self.metrics.get(old.metric, 0) - 1
                if n <= 0:
                    self.metrics.pop(old.metric, None)
                else:
                    self.metrics[old.metric] = n
        self._buf.move_to_end(sid)
        return buf

    def mark(
        self,
        sid: str,
        metric: str,
        service: str,
        t: float,
        observed: float,
        expected: float,
        lower: float,
        upper: float,
        status: str,
        score: float,
        anomaly_id: str,
    ) -> None:
        """Record an anomaly transition of ``sid`` (starts tracking it)."""
        buf = self._track(sid, metric, service)
        buf.append((t, observed, expected, lower, upper))
        buf.marks.append(
            {
                "t": t,
                "observed": observed,
                "status": status,
                "score": score,
                "anomaly_id": anomaly_id,
            }
        )
        buf.open = status == "open"
        buf.last_anomaly = t

    def add_points(
        self, sid: str, points: Iterable[tuple[float, float]], band: BandFn | None = None
    ) -> int:
        """Append values of a tracked series; return how many were kept."""
        buf = self._buf.get(sid)
        if buf is None:
            return 0
        kept = 0
        for t, v in points:
            if t <= buf.last_t:
                continue
            b = None
            if band is not None:
                try:
                    b = band(sid, t, v)
                except Exception:  # a band provider must never break the read model
                    b = None
            if b is None:
                buf.append((t, v, None, None, None))
            else:
                buf.append((t, v, b[0], b[1], b[2]))
            kept += 1
        return kept

    def add_series(self, series: Iterable[Any], band: BandFn | None = None) -> int:
        """Append the points of the tracked ones among decoded ``metrics`` series
        (``{"name", "labels", "points"}``, refs resolved): the detection stage hands
        over what it decoded, nothing is parsed twice. A series whose metric name no
        tracked series has costs one lookup. Returns the points kept."""
        names = self.metrics
        if not names:
            return 0
        kept = 0
        keys = self._keys
        for s in series:
            name = s["name"]
            if name in names:
                key = s.get("id")
                # a series' key is bound to its labels (the directory recomputes it
                # from them): a known key is its id; without one, the id is built
                sid = keys.get(key) if key is not None else series_id(name, s["labels"])
                if sid is not None and sid in self._buf:
                    kept += self.add_points(sid, s["points"], band)
        return kept

    def points(self, sid: str) -> list[Point]:
        buf = self._buf.get(sid)
        return list(buf.points) if buf else []

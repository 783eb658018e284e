"""Detection on demand (seed 003's ``POST /api/patterns/detect``): a series in, anomalies out.

The stream detects continuously; this runs the same calibrated detector (the
River reference implementation of the stream's tail bank,
:func:`sre_agent.models.river_detectors.make_detector`) over a series someone
hands in — learning each point after scoring it, as the stream does — and
returns the runs of points scoring at or above the threshold. Bounded: at most
:data:`MAX_POINTS` points. Pure: no clock, no I/O.

Examples
--------
>>> pts = [(float(i * 60), 10.0 + (i % 5) * 0.1) for i in range(120)] + [(7200.0, 60.0)]
>>> found = detect_points(pts, threshold=0.7, warmup=30)
>>> len(found), found[0].start == 7200.0, found[0].direction
(1, True, 'up')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..models.river_detectors import make_detector

__all__ = ["MAX_POINTS", "Found", "detect_points", "describe"]

MAX_POINTS = 20_000


@dataclass(frozen=True)
class Found:
    """A run of anomalous points."""

    start: float
    end: float
    points: int
    peak_score: float
    peak_value: float
    direction: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_points(points: Iterable[tuple[float, float]], threshold: float = 0.7,
                  warmup: int = 30) -> list[Found]:
    """Anomalous runs in ``points`` (time-ordered ``(unix seconds, value)``)."""
    det = make_detector("calibrated_tail", warmup=warmup)
    out: list[Found] = []
    run: dict[str, Any] | None = None
    prev_t = -math.inf
    values: list[float] = []
    for n, (t, v) in enumerate(points):
        if n >= MAX_POINTS:
            break
        t, v = float(t), float(v)
        if not (math.isfinite(t) and math.isfinite(v)) or t <= prev_t:
            continue
        prev_t = t
        x = {"t": t, "y": v}
        score = float(det.score_one(x))
        det.learn_one(x)
        mid = sorted(values)[len(values) // 2] if values else v
        values = (values + [v])[-200:]
        if n >= warmup and score >= threshold:
            if run is None:
                run = {"start": t, "n": 0, "peak": -1.0, "value": v,
                       "direction": "up" if v >= mid else "down"}
            run["end"], run["n"] = t, run["n"] + 1
            if score > run["peak"]:
                run["peak"], run["value"] = score, v
            continue
        if run is not None:
            out.append(_close(run))
            run = None
    if run is not None:
        out.append(_close(run))
    return out


def _close(run: dict[str, Any]) -> Found:
    return Found(start=run["start"], end=run["end"], points=run["n"],
                 peak_score=round(run["peak"], 4), peak_value=run["value"],
                 direction=run["direction"])


def describe(metric: str, service: str, direction: str) -> str:
    """Text to match patterns with (what the knowledge base indexes symptoms as).

    >>> describe("db_connections_active", "orders", "up")
    'orders db connections active high spike anomaly'
    """
    verb = "high spike" if direction == "up" else "low drop"
    return f"{service} {metric.replace('_', ' ')} {verb} anomaly"

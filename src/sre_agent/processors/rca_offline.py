"""Post-incident RCA from exported data: the stream's RCA engine, no broker.

Rows of ``metrics.csv`` become series, ``logs.csv`` lines and ``events.csv``
changes go in as they are, and :func:`~sre_agent.processors.rca_engine.rank_window`
— the same engine the stream RCA calls — ranks every service.

Examples
--------
>>> import random
>>> rng = random.Random(3)
>>> rows = []
>>> for i in range(240):
...     t = 1.7e9 + 15 * i
...     bad = i >= 200
...     rows.append((t, "db", "latency", 5 + rng.gauss(0, 0.2) + (40 if bad else 0)))
...     rows.append((t, "api", "latency", 20 + rng.gauss(0, 0.5) + (45 if i >= 202 else 0)))
...     rows.append((t, "web", "latency", 30 + rng.gauss(0, 0.5)))
>>> out = analyze_offline([("api", "db"), ("web", "api")], rows, start=1.7e9 + 15 * 200)
>>> [c["service"] for c in out["candidates"]]
['db', 'api', 'web']
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from .rca_engine import ChangeEvent, IncidentWindow, rank_window

__all__ = ["analyze_offline", "window_of"]


def window_of(
    edges: Iterable[tuple[str, str]],
    rows: Iterable[tuple[float, str, str, float]],
    start: float,
    symptom: dict[str, Any] | None = None,
    logs: Iterable[tuple[float, str, str]] = (),
    events: Iterable[ChangeEvent] = (),
) -> IncidentWindow:
    """Long-format rows ``(t, service, metric, value)`` -> an :class:`IncidentWindow`."""
    by: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for t, svc, metric, v in rows:
        by[(svc, metric)][float(t)] = float(v)  # one sample per timestamp: the last wins
    series = {}
    for key, pts in by.items():
        ts = np.fromiter(sorted(pts), float, len(pts))
        series[key] = (ts, np.fromiter((pts[x] for x in ts), float, len(pts)))
    edges = list(edges)
    return IncidentWindow(start=start, series=series, logs=list(logs), events=list(events),
                          edges=edges, symptom=symptom)


def analyze_offline(
    edges: Iterable[tuple[str, str]],
    rows: Iterable[tuple[float, str, str, float]],
    start: float,
    symptom: dict[str, Any] | None = None,
    logs: Iterable[tuple[float, str, str]] = (),
    events: Iterable[ChangeEvent] = (),
) -> dict[str, Any]:
    """Rank every service as root cause.

    Returns ``{"candidates": [{"service", "score", "cause_type", "evidence"}, ...]}``,
    most likely first; ``score`` is the fused evidence strength (0: nothing seen).
    """
    ranked = rank_window(window_of(edges, rows, start, symptom, logs, events))
    return {"candidates": [{"service": c.service, "score": c.score, "cause_type": c.cause_type,
                            "evidence": c.evidence} for c in ranked]}

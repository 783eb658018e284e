"""Post-incident RCA from exported metrics: the stream's detector and ranking, no broker.

Each ``(service, metric)`` series runs through a :class:`~sre_agent.models.bank.SeriesBank`
(the seasonal baseline + detectors the metrics agent runs): the samples before
the incident start only teach it; from the start on each sample is scored, then
learned, exactly as in the stream. A
sample counts when it deviates the *bad* way for that metric
(:func:`~sre_agent.processors.rca_features.is_bad`). Services get a strength
and an onset, and :func:`~sre_agent.processors.rca_graph.rank_services` ranks
every service of the graph.

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

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..models.bank import SeriesBank
from .rca_features import SYMPTOM_WEIGHT, is_bad, metric_category
from .rca_graph import rank_services
from .topology import ServiceGraph

__all__ = ["SeriesFinding", "analyze_offline", "score_all"]

#: per-sample score from which a sample counts as anomalous (onset)
ONSET_SCORE = 0.7

_CAUSE_BY_CATEGORY = {
    "memory": "memory_leak", "cpu": "resource_saturation", "disk": "disk_saturation",
    "db_pool": "db_pool_exhaustion", "traffic": "traffic_surge", "restarts": "crash_loop",
    "queue": "resource_saturation", "errors": "dependency_failure",
    "availability": "dependency_failure", "latency": "slow_dependency", "unknown": "unknown",
}


@dataclass(slots=True)
class SeriesFinding:
    service: str
    metric: str
    strength: float
    onset: float | None
    observed: float
    expected: float
    z: float
    n_history: int


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def score_all(series: dict[tuple[str, str], list[tuple[float, float]]],
              start: float) -> list[SeriesFinding]:
    """Run every series through one :class:`SeriesBank` (score, then learn, like the stream).

    Samples before ``start`` only teach the baseline; from ``start`` on, each
    sample's score counts when it deviates the bad way for its metric. A
    series' strength is the mean of its worst quarter of incident scores; its
    onset the first sample scoring >= :data:`ONSET_SCORE` followed by one >= 0.5.
    """
    keys = sorted(series)
    arrays = []
    for k in keys:
        pts = sorted(series[k])
        # one sample per timestamp (the last wins), in time order
        dedup = dict(pts)
        arrays.append((np.fromiter(dedup.keys(), float), np.fromiter(dedup.values(), float)))
    hist_lens = sorted(int((t < start).sum()) for t, _ in arrays) or [0]
    warm = max(3, min(30, hist_lens[len(hist_lens) // 2] // 2))
    bank = SeriesBank(warmup=warm, capacity=max(1, len(keys)))
    slots = np.array([bank.add() for _ in keys], dtype=np.int64)
    lens = np.array([len(t) for t, _ in arrays])
    scores: list[list[tuple[float, ...]]] = [[] for _ in keys]
    for i in range(int(lens.max()) if len(lens) else 0):
        idx = np.nonzero(lens > i)[0]
        t = np.array([arrays[j][0][i] for j in idx])
        v = np.array([arrays[j][1][i] for j in idx])
        out = bank.step(slots[idx], t, v, learn=True)
        for n, j in enumerate(idx):
            if t[n] >= start:
                scores[j].append((float(t[n]), float(v[n]), float(out.score[n]),
                                  float(out.direction[n]), float(out.expected[n]),
                                  float(out.deviation[n])))
    found = []
    for j, (svc, metric) in enumerate(keys):
        n_hist = int((arrays[j][0] < start).sum())
        rows = scores[j]
        if n_hist < 3 or not rows:
            found.append(SeriesFinding(svc, metric, 0.0, None, rows[-1][1] if rows else math.nan,
                                       math.nan, 0.0, n_hist))
            continue
        bad = [r[2] if (r[3] == 0 or is_bad(metric, r[3])) else 0.0 for r in rows]
        top = sorted(bad, reverse=True)
        k = max(1, min(len(top), max(3, len(top) // 4)))
        onset = None
        for i, b in enumerate(bad):
            if b >= ONSET_SCORE and (bad[i + 1] if i + 1 < len(bad) else b) >= 0.5:
                onset = rows[i][0]
                break
        w = max(range(len(rows)), key=lambda i: (bad[i], abs(rows[i][5])))
        found.append(SeriesFinding(svc, metric, sum(top[:k]) / k, onset, rows[w][1], rows[w][4],
                                   rows[w][5], n_hist))
    return found


def analyze_offline(
    edges: Iterable[tuple[str, str]],
    rows: Iterable[tuple[float, str, str, float]],
    start: float,
    symptom: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank every service as root cause; ``rows`` are ``(t, service, metric, value)``.

    Returns ``{"candidates": [{"service", "score", "cause_type", "evidence"}, ...]}``.
    """
    graph = ServiceGraph(list(edges))
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for t, svc, metric, v in rows:
        series[(svc, metric)].append((t, v))
    findings: dict[str, list[SeriesFinding]] = defaultdict(list)
    for f in score_all(series, start):
        findings[f.service].append(f)
    intervals = []
    for pts in series.values():
        if len(pts) > 1:
            ts = np.unique([p[0] for p in pts])
            if len(ts) > 1:
                intervals.append(float(np.median(np.diff(ts))))
    strength: dict[str, float] = {}
    onset: dict[str, float] = {}
    for svc, fs in findings.items():
        for f in fs:
            w = SYMPTOM_WEIGHT.get(metric_category(f.metric), 0.8) * f.strength
            if w > strength.get(svc, 0.0):
                strength[svc] = w
            if f.onset is not None and f.strength >= 0.5:
                onset[svc] = min(onset.get(svc, f.onset), f.onset)
    step = sorted(intervals)[len(intervals) // 2] if intervals else 0.0
    sym = (symptom or {}).get("service")
    ranked = rank_services(graph, strength, onset, symptom=sym, tolerance=step,
                           services=sorted(set(graph.services) | set(findings)))
    out = []
    for r in ranked:
        fs = sorted(findings.get(r.service, []), key=lambda f: -f.strength)
        ev = list(r.evidence)
        for f in fs[:3]:
            if f.strength < 0.5:
                continue
            ev.append(f"{f.metric} {'up' if f.z > 0 else 'down'}: {f.observed:.4g} vs "
                      f"{f.expected:.4g} expected (z={f.z:+.1f})"
                      + (f", from {_iso(f.onset)}" if f.onset is not None else ""))
        if not fs:
            ev.append(f"no metrics for {r.service} in metrics.csv")
        elif all(f.n_history < 3 for f in fs):
            ev.append(f"too little history before the start to judge {r.service}")
        cause = "unknown"
        if fs and fs[0].strength >= 0.5:
            cause = _CAUSE_BY_CATEGORY.get(metric_category(fs[0].metric), "unknown")
        out.append({"service": r.service, "score": round(r.score, 4), "cause_type": cause,
                    "evidence": ev})
    return {"candidates": out}

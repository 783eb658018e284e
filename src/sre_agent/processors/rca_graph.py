"""Dependency propagation: rank services as root-cause candidates along the call graph.

The stream RCA's fallback when it has no evidence windows (``rca.windows``
off, or nothing buffered yet): the incident's own signals give each service an
anomaly strength in [0, 1] and an onset time. With windows, the RCA engine
(:mod:`.rca_engine`, shared with ``sre-agent rca offline``) ranks instead. A
service is a likely root when

* it is anomalous itself (strength),
* its own callees are *not* (more) anomalous — otherwise they explain it,
* the services that call it (directly or transitively) are anomalous too
  (propagation towards callers), and
* its anomaly started early compared with the others.

With a symptom service, candidates outside the symptom and its downstream
(what it calls) are discounted.

Examples
--------
>>> from sre_agent.processors.topology import ServiceGraph
>>> g = ServiceGraph([("web", "api"), ("api", "db"), ("web", "auth")])
>>> ranked = rank_services(g, {"web": 0.9, "api": 0.95, "db": 0.99},
...                        {"web": 30.0, "api": 20.0, "db": 0.0})
>>> [r.service for r in ranked]
['db', 'api', 'web', 'auth']
>>> ranked[0].evidence[0]
'db anomalous (strength 0.99), onset first'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .topology import ServiceGraph

__all__ = ["RankedService", "rank_services"]

#: strength below which a service counts as normal
ANOMALOUS = 0.5


@dataclass(slots=True)
class RankedService:
    service: str
    score: float
    evidence: list[str] = field(default_factory=list)
    strength: float = 0.0
    onset: float | None = None


def _explained_by_callees(g: ServiceGraph, s: str, strength: Mapping[str, float],
                          onset: Mapping[str, float], tolerance: float) -> tuple[float, str | None]:
    worst, who = 0.0, None
    for c in g.downstream(s):
        a = strength.get(c, 0.0)
        if a < ANOMALOUS:
            continue
        # a callee that went bad no later than us explains us; a later one does not
        early = onset.get(c) is None or onset.get(s) is None or onset[c] <= onset[s] + tolerance
        if not early:
            continue
        depth = 1.0 if c in g.callees(s) else 0.85
        # a weaker anomaly explains a stronger one only partly
        e = a * depth * min(1.0, a / max(strength.get(s, 1.0), 1e-9))
        if e > worst:
            worst, who = e, c
    return worst, who


def rank_services(
    graph: ServiceGraph,
    strength: Mapping[str, float],
    onset: Mapping[str, float] | None = None,
    symptom: str | None = None,
    tolerance: float = 0.0,
    services: list[str] | None = None,
) -> list[RankedService]:
    """Rank every service of the graph (plus any in ``strength``), most likely root first.

    Parameters
    ----------
    strength
        Anomaly strength per service in [0, 1] (missing = normal).
    onset
        Onset time per anomalous service (any monotonic unit, e.g. Unix seconds).
    symptom
        The service where the problem was noticed, if known.
    tolerance
        Onset differences up to this are treated as simultaneous.
    """
    onset = dict(onset or {})
    names = sorted(set(services or []) | set(graph.services) | set(strength))
    bad = {s for s in names if strength.get(s, 0.0) >= ANOMALOUS}
    times = sorted(onset[s] for s in bad if s in onset)
    focus = ({symptom} | set(graph.downstream(symptom))) if symptom and symptom in graph else None
    out = []
    for s in names:
        a = strength.get(s, 0.0)
        ev: list[str] = []
        if a < ANOMALOUS:
            score = 0.1 * a
            ev.append(f"{s} not anomalous (strength {a:.2f})")
        else:
            explained, by = _explained_by_callees(graph, s, strength, onset, tolerance)
            ups = graph.upstream(s)
            support = (sum(1 for u in ups if u in bad) / len(ups)) if ups else 0.0
            early = 0.0
            if s in onset and len(times) > 1:
                rank = sum(1 for t in times if t < onset[s] - tolerance)
                early = 1.0 - rank / (len(times) - 1)
            score = a * (1.0 - 0.65 * explained) + 0.15 * support * a + 0.15 * early * a
            late = [u for u in ups if u in bad and s in onset and u in onset
                    and onset[u] < onset[s] - tolerance]
            if late:  # its callers were in trouble before it: a consequence, not the cause
                score *= 0.7
            head = f"{s} anomalous (strength {a:.2f})"
            if early >= 1.0 and len(times) > 1:
                head += ", onset first"
            ev.append(head)
            if by is not None:
                ev.append(f"its dependency {by} is anomalous too (explains {explained:.2f})")
            elif graph.callees(s):
                ev.append(f"its dependencies {', '.join(graph.callees(s)[:5])} look normal")
            if ups and support > 0:
                hit = [u for u in ups if u in bad]
                ev.append(f"callers affected: {', '.join(hit[:5])} ({support:.0%} of upstream)")
            if late:
                ev.append(f"started after its callers {', '.join(late[:3])}")
        if focus is not None and s not in focus:
            score *= 0.5
            ev.append(f"not on the call path of the symptom {symptom}")
        out.append(RankedService(s, round(min(score, 1.0), 4), ev, a, onset.get(s)))
    out.sort(key=lambda r: (-r.score, r.onset if r.onset is not None else float("inf"), r.service))
    return out

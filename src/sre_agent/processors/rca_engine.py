"""The RCA engine: evidence windows around an incident -> ranked root-cause services.

One engine, two entry points: ``sre-agent rca offline`` (exported files) and
the stream RCA (windows buffered by the worker) both build an
:class:`IncidentWindow` and call :func:`rank_window`.

Per service, three kinds of evidence, each in z units
(:mod:`.rca_evidence`, :mod:`.rca_logs`, :func:`change_evidence`):

* **metrics** — the best noise-discounted z among the service's own series.
  Latencies a service measures on the calls it *makes* (client/outbound)
  describe its dependencies, not itself: they count :data:`OUTBOUND_SELF`
  for the service. A served latency that rose no more than the latency of
  the calls the service makes is time spent waiting on its dependencies
  (exclusive latency, as a trace's self time) and is taken off the service
  (:data:`PASS_THROUGH`);
* **slower calls** — a delay on a service's network (or anything that slows
  it before its own timer starts) shows only in the latency its *callers*
  measure: callers' outbound rises count against their common callee
  (:func:`_slow_calls`); that evidence is not explained away by an anomaly
  of the callee's own dependencies (whether those slowed it was checked on
  its own calls' latency);
* **fewer calls** — the mirror: a service that fails before it makes its
  calls sends its dependencies less work; callees' fallen traffic counts
  against their common caller (:func:`_fewer_calls`);
* **logs** — the best template rise/new template/drop, a change of the
  service's template mix, or more failing requests whose errors start at it
  and reach its callers (trace ids, :func:`~.rca_logs.error_origins`);
* **named callee** — callers' connection-failure or timeout log lines that name
  a callee of theirs in the graph ("call to redis failed: connection refused")
  rank that callee at its strongest caller's strength (:func:`_named_callees`):
  a datastore that is down exports little of its own;
* **changes** — deploys, config changes and Kubernetes warnings of the
  service shortly before the start (``events.csv`` / ``deploy-events``).

Fusion: each kind is compressed with ``log1p`` (z of 50 and z of 500 are both
"certain"; compression keeps one heavy-tailed metric from drowning the rest),
logs weighted by :data:`LOG_WEIGHT` because count statistics saturate at far
smaller z than continuous metrics, and a service's strength is its best kind
plus :data:`CORROBORATION` times the others (agreement across metrics, logs
and changes).

Graph (soft, never a filter):

* with a symptom service in the graph, a candidate that cannot explain it —
  the symptom is not reachable from it along caller edges — keeps
  :data:`OFF_PATH` of its strength;
* a service whose own dependency (transitively) is at least as strongly
  anomalous and went bad no later is partly *explained* by it
  (:data:`EXPLAINED`): symptoms propagate to callers. Only evidence that
  *can* propagate to callers counts here (:attr:`Candidate.upstream`): a
  dependency whose traffic fell received less work — a consequence of its
  callers' trouble, not a cause of it. (A template that stopped firing stays:
  it is as often the service's own code path failing before that statement,
  as in Train Ticket's injected exceptions.) A
  dependency must stand out of everyday noise (:data:`EXPLAINS`, a z of 3)
  to explain anything: with dozens of services, some move by a z of 1 in
  every window, and letting them explain a failing caller pushed real
  causes out of the top 3 on the Nezha set.

Ties are broken by evidence: earlier onset, then more total evidence
(:attr:`Candidate.support`); a service's name decides only between services
with exactly the same evidence (in practice: none).

Examples
--------
>>> import numpy as np
>>> t = np.arange(0, 3900, 60.0)
>>> rng = np.random.default_rng(1)
>>> def noisy(level, jump=0.0):
...     v = level * (1 + 0.05 * rng.standard_normal(len(t)))
...     v[t >= 3600] *= 1 + jump
...     return v
>>> w = IncidentWindow(start=3600.0, edges=[("web", "api"), ("api", "db")],
...     series={("db", "latency_ms"): (t, noisy(5, 8.0)), ("api", "latency_ms"): (t, noisy(20, 2.0)),
...             ("web", "latency_ms"): (t, noisy(30, 1.5))}, symptom={"service": "web"})
>>> [c.service for c in rank_window(w)]
['db', 'api', 'web']
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .rca_evidence import SeriesEvidence, WindowSpec, series_evidence
from .rca_features import k8s_category, text_category
from .rca_logs import LogEvidence, log_evidence
from .topology import ServiceGraph

__all__ = [
    "CORROBORATION",
    "Candidate",
    "ChangeEvent",
    "IncidentWindow",
    "named_callees",
    "rank_window",
]

#: weight of outbound (client-side) latency as evidence against the service itself: it
#: measures the service's dependencies (and the network to them), so it implicates the
#: service only weakly (0.0-0.1 give the same Nezha figures; 0.3 let idle services'
#: long-poll calls, 0.004 s <-> 20 s from minute to minute, outrank real causes)
OUTBOUND_SELF = 0.1
#: share of a service's served-latency rise taken off it when the latency of the calls it
#: makes rose at least as much (exclusive latency: the time went to its dependencies);
#: only for a service with dependencies in the graph (else it is the deepest we can blame)
PASS_THROUGH = 1.0
#: weight of log evidence against metric evidence (after log1p)
LOG_WEIGHT = 2.0
#: share of a service's other evidence kinds added to its best one
CORROBORATION = 0.25
#: strength kept by a candidate from which the symptom is not reachable
OFF_PATH = 0.5
#: strength removed from a service fully explained by an earlier dependency
EXPLAINED = 0.5
#: z of a change made right at the start (decays with CHANGE_DECAY seconds before it)
CHANGE_Z = 8.0
CHANGE_DECAY = 1800.0
#: evidence below this fused strength is "nothing to see"
QUIET = 0.5
#: share of the metrics' sampling step within which two onsets count as simultaneous when
#: a dependency explains a caller (:func:`_onset_tolerance`)
ONSET_RESOLUTION = 0.5
#: fused strength a dependency needs to explain its callers: log1p(3), a z of 3 in
#: one kind of evidence (below that the dependency's move is within everyday noise)
EXPLAINS = math.log1p(3.0)
#: metric categories whose *fall* means less work arrived: a consequence of what the
#: callers did (they stopped calling), never a cause that slows or fails them (a fall
#: of a metric we cannot name may be anything, and keeps counting)
_LOAD = ("traffic",)
#: metric categories whose *rise* is the service's own resource use: a dependency's
#: trouble makes callers wait and fail, it does not make them burn CPU or memory, so
#: this evidence is never explained away by a dependency (see :func:`rank_window`)
_LOCAL = ("cpu", "memory", "disk", "restarts")

_CAUSE_BY_CATEGORY = {
    "memory": "memory_leak", "cpu": "resource_saturation", "disk": "disk_saturation",
    "db_pool": "db_pool_exhaustion", "traffic": "traffic_surge", "restarts": "crash_loop",
    "queue": "resource_saturation", "errors": "dependency_failure",
    "availability": "dependency_failure", "latency": "slow_dependency",
    "oom": "memory_leak", "crash": "crash_loop", "config": "config_change",
    "dependency": "dependency_failure", "node": "node_pressure", "health": "crash_loop",
    "image": "bad_deploy", "unknown": "unknown",
}


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A deploy, configuration change or Kubernetes event of a service."""

    t: float
    service: str
    #: ``deploy``, ``config`` or a Kubernetes reason (``OOMKilled``, ``CrashLoopBackOff``...)
    kind: str
    detail: str = ""


@dataclass
class IncidentWindow:
    """Everything the engine needs about one incident; the same for both entry points."""

    start: float
    series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: ``(unix_seconds, service, message)``
    logs: Sequence[tuple[float, str, str]] = ()
    events: Sequence[ChangeEvent] = ()
    edges: Sequence[tuple[str, str]] = ()
    symptom: dict[str, Any] | None = None
    #: services to rank even without data (e.g. every service of the graph)
    services: Iterable[str] = ()


@dataclass
class Candidate:
    service: str
    score: float
    cause_type: str
    evidence: list[str]
    onset: float | None = None
    metric: float = 0.0
    logs: float = 0.0
    changes: float = 0.0
    #: kind of each evidence line: metric | log | deploy | k8s | dependency | none
    kinds: list[str] = field(default_factory=list)
    #: total evidence: sum of log1p(score) over every series, template and change that
    #: counts (>= QUIET); breaks ties between equally strong candidates
    support: float = 0.0
    #: fused strength of the evidence that propagates to callers (everything but less
    #: load arriving: falling traffic); what can explain a caller
    upstream: float = 0.0
    #: strength of the callers' slower calls into the service (edge evidence,
    #: :func:`_slow_calls`): not explained away by a dependency's anomaly
    edge: float = 0.0
    #: fused strength of the service's own resource rises (:data:`_LOCAL`) and changes:
    #: what a dependency's anomaly cannot explain
    local: float = 0.0
    #: its callers say they cannot reach it (refused, reset, unavailable: not only slow;
    #: :func:`_named_callees`): the stream's planner restarts it rather than shed load
    unreachable: bool = False
    #: the service's load series that rose: metric -> (level after the start, level
    #: before), request rates and CPU (not its calls out); what a scale-out is sized from
    loads: dict[str, tuple[float, float]] = field(default_factory=dict)


#: categories of series that measure the load a service's replicas carry
LOAD_CATEGORIES = ("traffic", "cpu")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(dt: float) -> str:
    s = abs(dt)
    text = f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"
    return f"{text} {'before' if dt >= 0 else 'after'} the start"


def change_evidence(events: Iterable[ChangeEvent], start: float,
                    after: float) -> list[tuple[ChangeEvent, float]]:
    """``(event, z)`` for changes in ``[start - 4 * CHANGE_DECAY, start + after)``."""
    out = []
    for e in events:
        dt = start - e.t
        if -after < dt <= 4 * CHANGE_DECAY:
            kind = e.kind.lower()
            w = 1.0 if kind in ("deploy", "config", "rollout") else (
                0.8 if k8s_category(e.kind) in ("crash", "oom", "node", "image") else 0.5)
            out.append((e, CHANGE_Z * w * math.exp(-max(dt, 0.0) / CHANGE_DECAY)))
    return out


def _metric_text(e: SeriesEvidence) -> str:
    way = "up" if e.direction > 0 else "down"
    text = (f"{e.metric} {way}: {e.observed:.4g} vs {e.expected:.4g} before "
            f"(z={e.z:.1f}" + (f", reference noise {e.noise:.1f}" if e.noise >= 1 else "") + ")")
    if e.onset is not None:
        text += f", from {_iso(e.onset)}"
    return text


def _log_text(e: LogEvidence) -> str:
    if e.change == "slow":
        return f"requests in its traces wait longer at it: {e.template} (z={e.z:.1f})"
    if e.change == "mix":
        return (f"the mix of its log lines changed over {e.template} "
                f"({e.rate_after:.3g}/min vs {e.rate_before:.3g}/min before, z={e.z:.1f})")
    what = {"new": "new", "up": "more", "down": "fewer"}[e.change]
    return (f"{what} {'error ' if e.is_error else ''}log lines '{e.template[:120]}': "
            f"{e.rate_after:.3g}/min vs {e.rate_before:.3g}/min before (z={e.z:.1f})")


def _cause(best: str, m: SeriesEvidence | None, lg: LogEvidence | None,
           ch: ChangeEvent | None) -> str:
    if best == "changes" and ch is not None:
        k = ch.kind.lower()
        if k == "config":
            return "config_change"
        if k in ("deploy", "rollout"):
            return "bad_deploy"
        return _CAUSE_BY_CATEGORY.get(k8s_category(ch.kind), "unknown")
    if best == "logs" and lg is not None:
        cat = text_category(lg.template)
        return _CAUSE_BY_CATEGORY.get(cat if cat != "unknown" else "errors", "unknown")
    if m is not None:
        return _CAUSE_BY_CATEGORY.get(m.category, "unknown")
    return "unknown"


def _weighted(e: SeriesEvidence, outbound: float = 0.0) -> float:
    """A series' score as evidence against its own service.

    ``outbound`` is the service's best score of a *rise* of the latency of the
    calls it makes. A served latency that rose no more than that is time spent
    waiting on dependencies (exclusive latency, as a trace's self time): it is
    taken off the service by :data:`PASS_THROUGH` (in proportion when the
    outbound rise is smaller).
    """
    if e.outbound:
        return e.score * OUTBOUND_SELF
    if outbound > 0 and e.category == "latency" and e.direction > 0 and e.score > 0:
        return e.score * (1.0 - PASS_THROUGH * min(1.0, outbound / e.score))
    return e.score


def _outbound_rise(evs: Iterable[SeriesEvidence]) -> float:
    """Best score of a rise of the latency of the calls a service makes."""
    return max((e.score for e in evs if e.outbound and e.direction > 0), default=0.0)


def _less_load(e: SeriesEvidence) -> bool:
    """True for a fall of traffic-like load: the callers sent less, nothing broke here."""
    return e.direction < 0 and e.category in _LOAD


def _fuse(m: float, lg: float, ch: float) -> tuple[float, str]:
    """Fused strength of the best metric, log and change scores, and the strongest kind."""
    parts = {"metrics": math.log1p(m), "logs": LOG_WEIGHT * math.log1p(lg),
             "changes": math.log1p(ch)}
    best = max(parts, key=lambda k: parts[k])
    return parts[best] + CORROBORATION * (sum(parts.values()) - parts[best]), best


def _slow_calls(raw: dict[str, Candidate], metric_ev: dict[str, list[SeriesEvidence]],
               graph: ServiceGraph) -> None:
    """Callers' slower outbound calls as evidence against the callee (edge evidence).

    A delay on a service's network, or anything that slows it before its own
    timer starts, shows only in the latency its callers measure on their calls.
    A caller's outbound rise says "one of my callees"; it names one only when
    the callee can be told apart: at least two of its callers' calls got
    slower (their common callee), or the caller calls nothing else. The
    strongest caller counts fully and the others add :data:`CORROBORATION`
    each (as the kinds of evidence do in :func:`_fuse`). The result joins the
    callee's strength like another kind of evidence and can explain callers.
    What the callee's own outbound rise explains passes through it
    (:data:`PASS_THROUGH`, as for its served latency in :func:`_weighted`).
    """
    rising = {s: r for s, evs in metric_ev.items() if (r := _outbound_rise(evs)) >= QUIET}
    for d, c in raw.items():
        # what d's own calls explain passes through d, as its served latency does
        own = _outbound_rise(metric_ev.get(d, [])) if graph.callees(d) else 0.0
        seen = {k: rising[k] * (1.0 - PASS_THROUGH * min(1.0, own / rising[k]))
                for k in graph.callers(d) if k != d and k in rising}
        callers = [k for k, z in seen.items() if z >= QUIET]
        if not callers or (len(callers) < 2
                           and not any(graph.callees(k) == [d] for k in callers)):
            continue
        vs = sorted((math.log1p(seen[k]) for k in callers), reverse=True)
        x = vs[0] + CORROBORATION * sum(vs[1:])
        c.edge = max(c.edge, x)
        if c.cause_type == "unknown" or x > c.score:
            c.cause_type = "slow_dependency"
        c.score = max(c.score, x) + CORROBORATION * min(c.score, x)
        c.upstream = max(c.upstream, x)
        c.evidence.append(f"calls to {d} got slower at {', '.join(callers[:4])}"
                          + (f" and {len(callers) - 4} more" if len(callers) > 4 else ""))
        c.kinds.append("dependency")


def _fewer_calls(raw: dict[str, Candidate], metric_ev: dict[str, list[SeriesEvidence]],
                 graph: ServiceGraph) -> None:
    """Callees' fallen load as evidence against their caller (edge evidence).

    The mirror of :func:`_slow_calls`: a service that fails before it makes
    its calls (an exception, an early return) sends its dependencies less
    work, and often nothing of its own shows it (no error metric, no logs).
    A callee's fall of traffic (:func:`_less_load`) says "one of my callers
    sent less"; it names one only when the caller can be told apart: at
    least two of the caller's callees got less work (their common caller),
    or the callee has no other caller. Fused like :func:`_slow_calls`; the
    result can explain the caller's own callers (it failed, they see it).
    """
    falling = {s: r for s, evs in metric_ev.items()
               if (r := max((e.score for e in evs if _less_load(e)), default=0.0)) >= QUIET}
    for k, c in raw.items():
        callees = [d for d in graph.callees(k) if d != k and d in falling]
        if not callees or (len(callees) < 2
                           and not any(graph.callers(d) == [k] for d in callees)):
            continue
        vs = sorted((math.log1p(falling[d]) for d in callees), reverse=True)
        x = vs[0] + CORROBORATION * sum(vs[1:])
        c.score = max(c.score, x) + CORROBORATION * min(c.score, x)
        c.upstream = max(c.upstream, x)
        c.evidence.append(f"fewer calls from {k} reached {', '.join(callees[:4])}"
                          + (f" and {len(callees) - 4} more" if len(callees) > 4 else ""))
        c.kinds.append("dependency")


#: causes that only say "this service is failing" (not why): the callers' words may
#: replace them with the callee they name
GENERIC = frozenset({"dependency_failure", "slow_dependency", "unknown"})
#: a caller's words for a callee that answers too late (not: refuses, resets, is absent)
_SLOW = re.compile(r"\b(slow|timed? ?out|deadline exceeded|latency)\b", re.I)
_GONE = re.compile(r"(refused|reset|unreachable|no route|unavailable|dial|broken pipe|eof)",
                   re.I)


def names_service(text: str, service: str) -> bool:
    """Whether ``text`` names ``service`` as a host or word (``redis``, ``redis-0:6379``,
    ``redis.cache.svc``; not ``myredis``).

    >>> names_service("dial tcp redis-0:6379: connection refused", "redis")
    True
    >>> names_service("myredis down", "redis")
    False
    """
    return re.search(rf"(?<![A-Za-z0-9_.-]){re.escape(service)}(?![A-Za-z0-9_])", text,
                     re.I) is not None


def named_callees(graph: ServiceGraph, lines: Iterable[tuple[str, str]]
                  ) -> dict[str, list[tuple[str, str]]]:
    """Callees that callers say they cannot reach or wait too long on: per callee, the
    callers' ``(caller, text)`` lines that are a connection failure (refused, reset, no
    route, timed out ...: :func:`~.rca_features.text_category` ``dependency``) and name
    it as a host or word, where the call graph has the caller calling it.

    >>> lines = [("api", "call to cache failed dial tcp <*> connect connection refused"),
    ...          ("web", "GET /x 503 upstream cache-0:6379 unavailable"),
    ...          ("api", "call to db returned status <*>")]
    >>> g = ServiceGraph([("api", "cache"), ("web", "cache"), ("api", "db")])
    >>> {k: [c for c, _ in v] for k, v in named_callees(g, lines).items()}
    {'cache': ['api', 'web']}
    """
    out: dict[str, list[tuple[str, str]]] = {}
    for caller, text in lines:
        if text_category(text) != "dependency":
            continue
        for d in graph.callees(caller):
            if d != caller and names_service(text, d):
                out.setdefault(d, []).append((caller, text))
    return out


def only_slow(texts: Iterable[str]) -> bool:
    """Whether every caller line speaks of slowness or timeouts only (not of refusals)."""
    return all(_SLOW.search(t) and not _GONE.search(t) for t in texts)


def _named_callees(raw: dict[str, Candidate], logs_ev: dict[str, list[LogEvidence]],
                   graph: ServiceGraph) -> None:
    """Callers' own words as evidence against the callee they cannot reach (edge evidence).

    A datastore that is down exports nothing or only ``up == 0``; its callers' error
    ratios and error lines are huge and the engine would rank them. Their new or rising
    log templates often say who it is ("call to redis failed: dial tcp ...: connection
    refused", "call to market-data slow: 4200ms (timeout 3000ms)"): :func:`named_callees`
    over the templates that rose after the start. When at least two callers say so, or
    one does and the callee shows evidence of its own, the callee takes its strongest
    caller's strength (the callers' failure is its failure), each further caller adding
    :data:`CORROBORATION` of its log evidence (as in :func:`_slow_calls`), and the onset
    of the first such line, so it explains those callers in :func:`rank_window` (their
    generic evidence is halved; their own resource use or changes stay). Its cause is
    ``slow_dependency`` when every line speaks of slowness only, else
    ``dependency_failure`` and :attr:`Candidate.unreachable`; a specific cause of its own
    (a crash loop, an OOM, a deploy) is kept.
    """
    lines, first = [], {}
    for caller, evs in logs_ev.items():
        for e in evs:
            if e.change in ("new", "up") and e.score >= QUIET:
                lines.append((caller, e.template))
                key = (caller, e.template)
                if e.onset is not None:
                    first[key] = min(first.get(key, math.inf), e.onset)
    named = named_callees(graph, lines)
    for d, said in sorted(named.items()):
        c = raw.get(d)
        callers = sorted({k for k, _ in said if k in raw})
        if c is None or not callers or (len(callers) < 2 and c.score < QUIET):
            continue
        texts = [t for _, t in said]
        slow = only_slow(texts)
        best = max(callers, key=lambda k: raw[k].score)
        logs = sorted((max((LOG_WEIGHT * math.log1p(e.score) for e in logs_ev[k]
                            if e.template in texts), default=0.0) for k in callers
                       if k != best), reverse=True)
        x = raw[best].score + CORROBORATION * sum(logs)
        if c.cause_type in GENERIC or x > c.score:
            c.cause_type = "slow_dependency" if slow else "dependency_failure"
        c.unreachable = c.unreachable or not slow
        c.edge = max(c.edge, x)
        c.upstream = max(c.upstream, x)
        c.score = max(c.score, x) + CORROBORATION * min(c.score, x)
        onsets = [first[k] for k in said if k in first]
        if onsets:
            c.onset = min(onsets) if c.onset is None else min(c.onset, min(onsets))
        c.evidence.insert(0, f"{len(callers)} caller(s) "
                          + ("wait too long on" if slow else "cannot reach")
                          + f" {d}: {', '.join(callers[:5])} log '{texts[0][:160]}'")
        c.kinds.insert(0, "dependency")


def _onset_tolerance(w: IncidentWindow) -> float:
    """Seconds within which a dependency's onset counts as no later than its caller's.

    A metric onset is a sample's time: the data cannot order two changes less than a
    sampling step apart, and a log onset is one line (a caller logs a request a moment
    before its callee logs the same request; sampled logs move both). So "went bad no
    later" is judged at :data:`ONSET_RESOLUTION` of the median sampling step of the
    window's series (rounding each onset to its nearest sample); 0 without series.

    >>> t = np.arange(0.0, 600.0, 60.0)
    >>> _onset_tolerance(IncidentWindow(start=300.0, series={("a", "x"): (t, t)}))
    30.0
    """
    steps = [float(np.median(np.diff(t))) for t, _ in w.series.values() if len(t) > 1]
    return ONSET_RESOLUTION * float(np.median(steps)) if steps else 0.0


def _hops(graph: ServiceGraph, source: str) -> dict[str, int]:
    """Calls from ``source`` to each service it reaches (0 for itself), breadth first."""
    hops, todo = {source: 0}, [source]
    for s in todo:
        for d in graph.callees(s):
            if d not in hops:
                hops[d] = hops[s] + 1
                todo.append(d)
    return hops


def rank_window(w: IncidentWindow, spec: WindowSpec = WindowSpec()) -> list[Candidate]:
    """Rank every known service as the incident's root cause, most likely first."""
    graph = ServiceGraph(list(w.edges))
    metric_ev: dict[str, list[SeriesEvidence]] = defaultdict(list)
    for (svc, metric), (t, v) in w.series.items():
        metric_ev[svc].append(series_evidence(svc, metric, t, v, w.start, spec))
    logs_ev: dict[str, list[LogEvidence]] = defaultdict(list)
    if w.logs:
        for e in log_evidence(w.logs, w.start, spec.reference, spec.after, edges=w.edges):
            logs_ev[e.service].append(e)
    change_ev: dict[str, list[tuple[ChangeEvent, float]]] = defaultdict(list)
    for e, z in change_evidence(w.events, w.start, spec.after):
        change_ev[e.service].append((e, z))
    names = sorted(set(graph.services) | set(metric_ev) | set(logs_ev) | set(change_ev)
                   | set(w.services))

    raw: dict[str, Candidate] = {}
    for s in names:
        out_rise = _outbound_rise(metric_ev.get(s, [])) if graph.callees(s) else 0.0
        ms = sorted(metric_ev.get(s, []), key=lambda e: -_weighted(e, out_rise))
        ls = sorted(logs_ev.get(s, []), key=lambda e: -e.score)
        cs = sorted(change_ev.get(s, []), key=lambda p: -p[1])
        m = _weighted(ms[0], out_rise) if ms else 0.0
        lg = ls[0].score if ls else 0.0
        ch = cs[0][1] if cs else 0.0
        strength, best = _fuse(m, lg, ch)
        upstream, _ = _fuse(max((_weighted(e, out_rise) for e in ms if not _less_load(e)),
                                 default=0.0),
                            lg, ch)
        local, _ = _fuse(max((_weighted(e, out_rise) for e in ms
                              if e.category in _LOCAL and e.direction > 0), default=0.0),
                         0.0, ch)
        onsets = [e.onset for e in ms[:3] if e.onset is not None and e.score >= QUIET]
        onsets += [e.onset for e in ls[:3] if e.onset is not None and e.score >= QUIET]
        onsets += [p[0].t for p in cs[:1]]
        ev = [_metric_text(e) for e in ms[:3] if e.score >= QUIET]
        kinds = ["metric"] * len(ev)
        ev += [_log_text(e) for e in ls[:3] if e.score >= QUIET]
        kinds += ["log"] * (len(ev) - len(kinds))
        for p in cs[:2]:
            ev.append(f"{p[0].kind} of {s} {_ago(w.start - p[0].t)}"
                      + (f": {p[0].detail[:160]}" if p[0].detail else ""))
            kinds.append("deploy" if p[0].kind.lower() in ("deploy", "config", "rollout")
                         else "k8s")
        if not ms and not ls and not cs:
            ev.append(f"no data for {s}")
            kinds.append("none")
        elif all(e.n_reference < spec.min_reference for e in ms) and not ls and not cs:
            ev.append(f"too little history before the start to judge {s}")
            kinds.append("none")
        support = sum(math.log1p(x) for x in [
            *(_weighted(e, out_rise) for e in ms),
            *(e.score for e in ls), *(p[1] for p in cs)] if x >= QUIET)
        raw[s] = Candidate(s, strength, _cause(best, ms[0] if ms else None,
                                              ls[0] if ls else None,
                                              cs[0][0] if cs else None),
                           ev, min(onsets) if onsets else None, m, lg, ch, kinds, support,
                           upstream, local=local,
                           # slower hand-offs left after the partners' were explained
                           # away (rca_logs.handoff_delays) are the service's own edges
                           edge=max((LOG_WEIGHT * math.log1p(e.score) for e in ls
                                     if e.change == "slow"), default=0.0),
                           loads={e.metric: (e.observed, e.expected) for e in ms
                                  if e.category in LOAD_CATEGORIES and e.direction > 0
                                  and not e.outbound and e.score >= QUIET
                                  and math.isfinite(e.observed) and math.isfinite(e.expected)})

    _named_callees(raw, logs_ev, graph)
    _slow_calls(raw, metric_ev, graph)
    _fewer_calls(raw, metric_ev, graph)

    tol = _onset_tolerance(w)
    sym = (w.symptom or {}).get("service")
    focus = ({sym} | set(graph.downstream(sym))) if sym and sym in graph else None
    out = []
    for s, c in raw.items():
        score = c.score
        notes = []
        if focus is not None and s not in focus:
            score *= OFF_PATH
            notes.append(f"cannot explain the symptom on {sym} along the call graph")
        worst, by = 0.0, None
        for d in graph.downstream(s):
            dc = raw[d]
            if dc.upstream < EXPLAINS or c.score <= 0:
                continue
            if c.onset is not None and dc.onset is not None and dc.onset > c.onset + tol:
                continue
            depth = 1.0 if d in graph.callees(s) else 0.85
            e = depth * min(1.0, dc.upstream / c.score)
            if e > worst:
                worst, by = e, d
        if by is not None:
            # callers' slower calls into s were already checked against s's own calls
            # (pass-through in _slow_calls): a dependency's unrelated anomaly cannot
            # explain them away
            # and a service's own resource use or change is its own: waiting on a
            # dependency does not burn CPU or memory, nor deploy anything
            score = max(score * (1.0 - EXPLAINED * worst), min(score, max(c.edge, c.local)))
            notes.append(f"its dependency {by} is anomalous too (explains {worst:.0%})")
        out.append(Candidate(s, round(score, 4), c.cause_type, c.evidence + notes, c.onset,
                             c.metric, c.logs, c.changes, c.kinds + ["dependency"] * len(notes),
                             c.support, c.upstream, c.edge, c.local, c.unreachable, c.loads))
    # equal evidence: the service where the symptom is seen, then its nearer dependencies
    # (the call graph's account of the symptom needs the fewest hops); the name decides
    # only between services the data cannot tell apart at all
    hops = _hops(graph, sym) if sym else {}
    out.sort(key=lambda c: (-c.score, c.onset if c.onset is not None else math.inf,
                            -c.support, hops.get(c.service, math.inf), c.service))
    return out

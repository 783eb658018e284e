"""Root-cause analysis: an incident (+ similar past cases) -> ranked hypotheses.

Deterministic rules first (:mod:`.rca_rules`): change correlation, resource
saturation, dependency propagation, error-template onset. *Which service* is
most likely the root comes from the RCA engine (:mod:`.rca_engine`, the one
``sre-agent rca offline`` runs) when the stream has metric/log windows around
the incident: its ranking sets each service's locality and adds a hypothesis
for every strongly ranked service the rules did not type. Without windows, the
incident's own signals are ranked along the call graph (:mod:`.rca_graph`).
Similar cases from the knowledge base then shift the ranking (a confirmed
cause of a similar past incident is boosted, a cause rated *bad* is lowered),
and an optional LLM opinion is merged with :func:`merge_llm`. Pure: no I/O.

``cause_type`` vocabulary (:data:`CAUSE_TYPES`; playbooks map these):

==================== ==========================================================
bad_deploy           a deploy/rollout of ``service`` broke it (or its callers)
config_change        a configuration change (ConfigMap, values, flags)
memory_leak          memory grows until OOM kills / pressure
db_pool_exhaustion   database connections / client pool exhausted
dependency_failure   ``service`` fails and its callers' errors follow from it
slow_dependency      ``service`` is slow and its callers' latency follows
traffic_surge        more requests than capacity (scale out, rate limit)
disk_saturation      disk / volume filling up
crash_loop           containers of ``service`` crash-loop (not OOM)
node_pressure        node problems: NotReady, pressure, evictions, scheduling
resource_saturation  CPU / queue saturation without more traffic
unknown              nothing matched; look by hand
==================== ==========================================================

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.schemas import Incident, SignalRef
>>> t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
>>> inc = Incident(incident_id="i1", title="api errors", fingerprint="f", opened_at=t,
...     services=["api"], signals=[SignalRef(kind="anomaly", ref="a", service="api", time=t,
...     metric="error_rate", attrs={"direction": "up", "score": 0.97})],
...     candidate_changes=[{"service": "api", "app": "api", "revision": "v2",
...     "previous_revision": "v1", "change_type": "deploy", "time": "2026-01-01T11:58:00+00:00",
...     "event_id": "d1"}])
>>> r = RootCauseAnalyzer().analyze(inc)
>>> top = r.hypotheses[0]
>>> top.cause_type, top.service, top.confidence > 0.8, top.recommended_actions[0]
('bad_deploy', 'api', True, 'Roll back api to v1 (argocd app rollback api)')
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from ..schemas import EvidenceItem, Hypothesis, Incident, RcaResult, SignalRef, SimilarCase
from .rca_engine import GENERIC, QUIET, Candidate, named_callees, only_slow
from .rca_graph import RankedService, rank_services
from .rca_rules import ServiceFacts, actions, change_hypotheses, service_facts, symptom_hypotheses
from .topology import ServiceGraph

__all__ = ["CAUSE_TYPES", "RootCauseAnalyzer", "apply_similar", "incident_text", "merge_llm",
           "UNREACHABLE", "caller_lines", "named_dependency", "on_path", "unreachable_callees"]

log = logging.getLogger(__name__)

CAUSE_TYPES: tuple[str, ...] = (
    "bad_deploy", "config_change", "memory_leak", "db_pool_exhaustion", "dependency_failure",
    "slow_dependency", "traffic_surge", "disk_saturation", "crash_loop", "node_pressure",
    "resource_saturation", "unknown",
)

MAX_HYPOTHESES = 5
#: how much a confirmed similar case can move a hypothesis (times its similarity)
SIMILAR_BOOST = 0.35
#: how much a confirmed similar incident lowers the *other* causes (times its similarity)
DISCOUNT_OTHERS = 0.25
#: confidence of the engine's top-ranked service; others scale down with their score
ENGINE_BASE, ENGINE_SPAN = 0.35, 0.55


def _noisy_or(a: float, b: float) -> float:
    return 1.0 - (1.0 - a) * (1.0 - b)


def _merge(hyps: Iterable[Hypothesis]) -> list[Hypothesis]:
    """Merge duplicates of (cause_type, service): noisy-or confidences, union of evidence."""
    by: dict[tuple[str, str], Hypothesis] = {}
    for h in hyps:
        k = (h.cause_type, h.service)
        if k not in by:
            by[k] = h.model_copy(deep=True)
            continue
        cur = by[k]
        hi, lo = (cur, h) if cur.confidence >= h.confidence else (h, cur)
        conf = min(0.97, _noisy_or(hi.confidence, lo.confidence * 0.5))
        seen = {(e.kind, e.summary) for e in hi.evidence}
        ev = list(hi.evidence) + [e for e in lo.evidence if (e.kind, e.summary) not in seen]
        acts = list(dict.fromkeys([*hi.recommended_actions, *lo.recommended_actions]))
        by[k] = hi.model_copy(update={"confidence": conf, "evidence": ev[:10],
                                      "recommended_actions": acts[:5]})
    return sorted(by.values(), key=lambda h: (-h.confidence, h.cause_type, h.service))


class RootCauseAnalyzer:
    """Rules-first RCA over an incident.

    Parameters
    ----------
    graph
        The service dependency graph (same as the correlator's).
    """

    def __init__(self, graph: ServiceGraph | None = None) -> None:
        self.graph = graph or ServiceGraph()

    def locality(self, facts: dict[str, ServiceFacts], symptom: str | None = None
                 ) -> tuple[dict[str, float], list]:  # type: ignore[type-arg]
        strength = {s: f.strength for s, f in facts.items() if f.cats}
        onset = {s: f.onset for s, f in facts.items() if f.cats}
        ranking = rank_services(self.graph, strength, onset, symptom=symptom, tolerance=5.0,
                                services=list(facts))
        top = max((r.score for r in ranking), default=0.0) or 1.0
        loc = {r.service: 0.55 + 0.45 * (r.score / top) for r in ranking}
        return loc, ranking

    def engine_locality(self, ranking: Sequence[Candidate]
                        ) -> tuple[dict[str, float], list[RankedService]]:
        """Locality and a graph ranking from the engine's candidates (top = 1.0)."""
        top = max((c.score for c in ranking), default=0.0) or 1.0
        loc = {c.service: 0.55 + 0.45 * (c.score / top) for c in ranking}
        ranked = [RankedService(c.service, round(c.score / top, 4), list(c.evidence),
                                c.score / top, c.onset) for c in ranking]
        return loc, ranked

    def hypotheses(self, incident: Incident,
                   ranking: Sequence[Candidate] | None = None) -> list[Hypothesis]:
        facts = service_facts(incident)
        engine = bool(ranking) and ranking[0].score >= QUIET  # type: ignore[index]
        if engine:
            loc, ranked = self.engine_locality(ranking)  # type: ignore[arg-type]
            # a service of the incident the windows are quiet on (a slow fault whose
            # reference already holds its trend) is placed by the incident's own signals:
            # the windows' silence is no evidence against what the detectors flagged
            loc = {**self.locality(facts)[0], **loc}
        else:
            loc, ranked = self.locality(facts)
        hyps = change_hypotheses(incident, facts, loc) + symptom_hypotheses(
            self.graph, facts, ranked, loc)
        if engine:
            hyps = engine_hypotheses(ranking, hyps)  # type: ignore[arg-type]
        hyps = named_dependency(self.graph, incident, facts, _merge(hyps)) if hyps else hyps
        hyps = on_path(self.graph, incident, hyps)
        if not hyps:
            root = incident.root_service or (incident.services[0] if incident.services else "unknown")
            hyps = [Hypothesis(cause_type="unknown", service=root, confidence=0.2,
                               summary=f"no rule matched the signals of {root}",
                               recommended_actions=actions("unknown", root))]
        return _merge(hyps)

    def analyze(self, incident: Incident, similar: Sequence[SimilarCase] = (),
                ranking: Sequence[Candidate] | None = None) -> RcaResult:
        """Rank root-cause hypotheses for ``incident`` (engine ranking, rules, similar cases)."""
        hyps = apply_similar(self.hypotheses(incident, ranking), similar, incident)
        return RcaResult(incident_id=incident.incident_id, incident_revision=incident.revision,
                         hypotheses=hyps[:MAX_HYPOTHESES], similar=list(similar), method="rules",
                         severity=incident.severity, services=list(incident.services),
                         time=incident.time)


def engine_hypotheses(ranking: Sequence[Candidate], hyps: list[Hypothesis]) -> list[Hypothesis]:
    """Fold the engine's ranking into the rules' hypotheses.

    Every service the engine ranks with evidence gets a confidence from its
    score relative to the top (:data:`ENGINE_BASE` + :data:`ENGINE_SPAN` x
    relative score): the rules' best hypothesis for that service is raised to
    it (the rules know the cause type better: a deploy, a pool, an OOM), and a
    service the rules did not type gets a hypothesis of the engine's own
    cause type, with the engine's evidence.
    """
    out = [h.model_copy(deep=True) for h in hyps]
    top = ranking[0].score if ranking else 0.0
    for c in ranking[:MAX_HYPOTHESES]:
        if top <= 0 or c.score < QUIET:
            break
        rel = c.score / top
        conf = round(ENGINE_BASE + ENGINE_SPAN * rel, 4)
        ev = [EvidenceItem(kind=k if k in ("metric", "log", "deploy", "k8s", "dependency")
                           else "metric", summary=text[:500], weight=round(rel, 3),
                           # the engine's "callers cannot reach it" (rca_engine._named_callees)
                           ref=f"{UNREACHABLE}/{c.service}" if c.unreachable and k == "dependency"
                           and " cannot reach " in text else None)
              for text, k in zip(c.evidence, c.kinds or ["metric"] * len(c.evidence))][:6]
        # the measured load of the service (after the caps: the planner sizes from it)
        loads = [EvidenceItem(kind="metric", summary=f"{m} {o:.4g} vs {e:.4g} before (load)",
                              metric=m, observed=o, expected=e)
                 for m, (o, e) in sorted(c.loads.items())]
        mine = [h for h in out if h.service == c.service]
        if mine:
            best = max(mine, key=lambda h: h.confidence)
            best.confidence = max(best.confidence, conf)
            seen = {e.summary for e in best.evidence}
            best.evidence = [*best.evidence, *(e for e in ev if e.summary not in seen)][:10]
            for h in mine:
                have = {e.summary for e in h.evidence}
                h.evidence = [*h.evidence, *(e for e in loads if e.summary not in have)]
            continue
        why = c.evidence[0] if c.evidence else "ranked first by the evidence windows"
        out.append(Hypothesis(cause_type=c.cause_type, service=c.service, confidence=conf,
                              summary=f"{c.cause_type.replace('_', ' ')} on {c.service}: "
                                      f"{why[:200]}",
                              evidence=[*ev, *loads],
                              recommended_actions=actions(c.cause_type, c.service)))
    return out


# GENERIC (rca_engine): causes that only say "this service is failing" (not why): a service
# whose own failure is explained by an unreachable callee keeps no such hypothesis at full
# strength (saturation is a why: a callee slow because its CPU is saturated keeps it)
#: what the callers' generic hypotheses keep when their callee explains them
VICTIM_KEEP = 0.8
#: evidence ref of "its callers cannot reach it" (``unreachable/<service>``): the planner
#: labels such a hypothesis ``reachable=no`` (a service that refuses connections is
#: restarted; shedding load towards it does not bring it back)
UNREACHABLE = "unreachable"


def caller_lines(incident: Incident, hyps: Sequence[Hypothesis] = ()) -> list[tuple[str, str]]:
    """(service, log template) pairs the RCA has seen: the incident's log signals, and the
    log lines the evidence windows ranked (engine evidence ``... log lines '<template>'``).
    """
    out = [(s.service, str(s.attrs["template"])) for s in incident.signals
           if s.kind == "log" and s.attrs.get("template")]
    for h in hyps:
        for e in h.evidence:
            if e.kind == "log":
                out += [(h.service, m) for m in _QUOTED.findall(e.summary)]
    return list(dict.fromkeys(out))


_QUOTED = re.compile(r"log lines '(?:[A-Z]+ )?([^']+)'")


#: callees that callers say they cannot reach or wait too long on: the engine's own
#: function (:func:`~.rca_engine.named_callees`), so both entry points read callers' words
#: the same way
unreachable_callees = named_callees


#: what a hypothesis keeps when its service cannot explain the incident's symptoms (the
#: engine's own ``OFF_PATH`` for a candidate the symptom is not reachable from)
OFF_PATH_KEEP = 0.5


def on_path(graph: ServiceGraph, incident: Incident, hyps: list[Hypothesis]
            ) -> list[Hypothesis]:
    """Hypotheses on services that cannot explain the incident's symptoms keep
    :data:`OFF_PATH_KEEP` of their confidence (a surge at a caller can: its load reaches
    the callees).

    The engine ranks every service of the evidence windows; one that is neither among
    the incident's services nor (transitively) called by one of them cannot have caused
    what the incident shows: a caller does not fill its callee's disk or exhaust its
    pool. A node or other component outside the call graph is judged by its own signals
    (nothing is lowered for it), and so is an incident with no service in the graph's
    terms only by name: then every graph service is off its path.

    >>> from datetime import UTC, datetime
    >>> inc = Incident(incident_id="i", title="x", fingerprint="f", services=["db"],
    ...                opened_at=datetime(2026, 1, 1, tzinfo=UTC))
    >>> h = lambda s: Hypothesis(cause_type="unknown", service=s, confidence=0.9, summary="")
    >>> g = ServiceGraph([("api", "db"), ("db", "disk")])
    >>> [(x.service, x.confidence) for x in on_path(g, inc, [h("api"), h("db"), h("disk")])]
    [('db', 0.9), ('disk', 0.9), ('api', 0.45)]
    """
    where = set(incident.services) | ({incident.root_service} if incident.root_service else set())
    if not where:
        return hyps
    reach = set(where)
    for s in where:
        if s in graph:
            reach.update(graph.downstream(s))
    # load flows down the call graph: a surge at a caller does saturate its callees
    out = [h.model_copy(update={"confidence": round(h.confidence * OFF_PATH_KEEP, 4)})
           if h.service in graph and h.service not in reach and h.cause_type != "traffic_surge"
           else h for h in hyps]
    return _merge(out)


def named_dependency(graph: ServiceGraph, incident: Incident, facts: dict[str, ServiceFacts],
                     hyps: list[Hypothesis]) -> list[Hypothesis]:
    """A callee its callers cannot reach (or that answers them too late) explains their
    failures: dependency propagation from the callers' own words.

    A datastore that is down exports nothing or only ``up == 0``: the metric ranking sees
    its callers' huge error ratios and has little or nothing of its own to rank. Its
    callers' logs say who it is ("call to redis failed: dial tcp ...: connection refused",
    "call to market-data slow: 4200ms (timeout 3000ms)"). When at least two callers say
    so, or one does and the callee shows symptoms of its own in the incident, the callee
    is ranked where its strongest victim was (each further caller halving the doubt): its
    own specific hypothesis (a crash loop, an OOM, a deploy) if it has one, else
    ``slow_dependency`` when every caller speaks of slowness or timeouts only, else
    ``dependency_failure`` (marked unreachable for the planner). The generic hypotheses
    (failing, slow, saturated: no cause of their own) of the services upstream of it keep
    :data:`VICTIM_KEEP` of their confidence. A caller's specific cause (its own deploy
    broke its connection string) is untouched.

    The RCA engine reads the same words from the evidence windows' log lines
    (:func:`~.rca_engine._named_callees`, the code ``sre-agent rca offline`` runs too); a
    callee whose hypothesis already carries the engine's verdict is left as the engine
    ranked it. This step reads the incident's own log signals, for an incident the
    windows do not cover.
    """
    named = unreachable_callees(graph, caller_lines(incident, hyps))
    if not named:
        return hyps
    done = {h.service for h in hyps for e in h.evidence
            if e.kind == "dependency" and (" cannot reach " in e.summary
                                          or " wait too long on " in e.summary)
            and e.summary.split(":", 1)[0].endswith(f" {h.service}")}
    out = [h.model_copy(deep=True) for h in hyps]
    for d, said in sorted(named.items(), key=lambda kv: -len({c for c, _ in kv[1]})):
        if d in done:
            continue
        callers = sorted({c for c, _ in said})
        own = facts.get(d)
        if len(callers) < 2 and not (own is not None and own.cats):
            continue
        # its callers and theirs: what fails there can follow from it
        above = set(graph.upstream(d)) | set(callers)
        victims = [h for h in out if h.service in above and h.cause_type in GENERIC]
        if not victims:
            continue
        # independent witnesses: each further caller halves the doubt
        lead = 1.0 - (1.0 - max(h.confidence for h in victims)) * 0.5 ** (len(callers) - 1)
        for h in victims:
            h.confidence = round(h.confidence * VICTIM_KEEP, 4)
        texts = [t for _, t in said]
        slow = only_slow(texts)
        cause = "slow_dependency" if slow else "dependency_failure"
        ev = EvidenceItem(
            kind="dependency", weight=1.0, ref=None if slow else f"{UNREACHABLE}/{d}",
            summary=f"{len(callers)} caller(s) " + ("wait too long on" if slow else
                                                    "cannot reach")
            + f" {d}: {', '.join(callers[:5])} log '{texts[0][:160]}'")
        mine = [h for h in out if h.service == d]
        specific = [h for h in mine if h.cause_type not in GENERIC]
        if not specific:
            # its own generic hypotheses of the other mode: the callers' words decide it
            for h in mine:
                if h.cause_type != cause:
                    lead = max(lead, h.confidence)
                    h.confidence = round(h.confidence * VICTIM_KEEP, 4)
        best = max(specific or [h for h in mine if h.cause_type == cause],
                   key=lambda h: h.confidence, default=None)
        if best is None:
            best = Hypothesis(cause_type=cause, service=d, confidence=0.0,
                              summary=f"{cause.replace('_', ' ')} on {d}: its callers "
                                      f"{', '.join(callers[:4])} "
                                      + ("wait too long on it" if slow else "cannot reach it"),
                              recommended_actions=actions(cause, d))
            out.append(best)
        best.confidence = min(0.97, max(best.confidence, lead))
        best.evidence = [ev, *best.evidence][:10]
    return _merge(out)


def apply_similar(hyps: list[Hypothesis], similar: Sequence[SimilarCase],
                  incident: Incident) -> list[Hypothesis]:
    """Boost causes confirmed on similar past incidents/patterns; lower causes rated bad.

    A :class:`SimilarCase` with ``cause_type`` counts with its similarity; a case
    whose ``resolution`` starts with ``rejected:`` (feedback *bad*) lowers it.
    """
    out = [h.model_copy(deep=True) for h in hyps]
    for case in similar:
        if not case.cause_type or case.kind == "runbook" or case.similarity <= 0:
            continue
        weight = SIMILAR_BOOST * case.similarity * (1.0 if case.kind == "incident" else 0.5)
        rejected = (case.resolution or "").startswith("rejected:")
        matched = [h for h in out if h.cause_type == case.cause_type
                   and (case.service is None or h.service == case.service)]
        ev = EvidenceItem(kind="similar", ref=case.id, weight=round(case.similarity, 3),
                          summary=f"similar {case.kind} '{case.title[:80]}' "
                                  f"({case.similarity:.2f}) was "
                                  + ("NOT " if rejected else "") + case.cause_type)
        if not rejected and case.kind == "incident":
            # evidence for one cause is evidence against the others
            for h in out:
                if all(h is not m for m in matched):
                    h.confidence *= 1.0 - DISCOUNT_OTHERS * case.similarity
        if matched:
            for h in matched:
                h.confidence = max(0.0, min(0.97, h.confidence - weight)) if rejected else min(
                    0.97, _noisy_or(h.confidence, weight * 1.4))
                h.evidence.append(ev)
        elif not rejected and case.kind == "incident":
            svc = case.service if case.service in incident.services else (
                incident.root_service or (incident.services or ["unknown"])[0])
            out.append(Hypothesis(cause_type=case.cause_type, service=svc,
                                  confidence=min(0.9, weight * 1.4),
                                  summary=f"{case.cause_type.replace('_', ' ')} on {svc}, "
                                          f"as in a similar past incident",
                                  evidence=[ev],
                                  recommended_actions=actions(case.cause_type, svc)))
    return _merge(out)


def merge_llm(result: RcaResult, llm: Sequence[Hypothesis], tokens: int,
              services: Iterable[str]) -> RcaResult:
    """Fold validated LLM hypotheses into a rules result.

    Unknown cause types become ``unknown``; hypotheses naming a service outside
    the incident/graph are dropped; confidence of a cause both agree on rises
    (noisy-or), LLM-only causes enter at 0.8 x their confidence.
    """
    allowed = set(services)
    hyps = list(result.hypotheses)
    for h in llm:
        if h.service not in allowed:
            log.info("dropping LLM hypothesis for unknown service %r", h.service)
            continue
        cause = h.cause_type if h.cause_type in CAUSE_TYPES else "unknown"
        ev = [e.model_copy(update={"kind": "llm" if e.kind not in ("metric", "log", "deploy", "k8s",
                                                                   "alert", "dependency")
                                   else e.kind}) for e in h.evidence]
        ev.insert(0, EvidenceItem(kind="llm", summary=h.summary[:500], weight=h.confidence))
        hyps.append(h.model_copy(update={"cause_type": cause, "confidence": 0.8 * h.confidence,
                                         "evidence": ev[:6],
                                         "recommended_actions": h.recommended_actions[:5]
                                         or actions(cause, h.service)}))
    return result.model_copy(update={"hypotheses": _merge(hyps)[:MAX_HYPOTHESES],
                                     "method": "rules+llm", "llm_tokens": tokens})


def incident_text(incident: Incident) -> str:
    """Deterministic text of an incident for knowledge-base search and storage.

    Services, the root, and per signal its kind, rule (metric/alert/k8s reason),
    direction and log template; changes by type. No ids, no numbers.

    >>> from datetime import UTC, datetime
    >>> from sre_agent.schemas import SignalRef
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> incident_text(Incident(incident_id="i", title="x", fingerprint="f", opened_at=t,
    ...     services=["api", "db"], root_service="db", signals=[SignalRef(kind="anomaly",
    ...     ref="r", service="db", time=t, metric="db_connections", attrs={"direction": "up"})]))
    'root db; services api db; db anomaly db_connections up'
    """
    parts = [f"root {incident.root_service or '?'}", "services " + " ".join(incident.services)]
    seen = set()
    for s in incident.signals:
        bit = f"{s.service} {s.kind} {s.metric or ''} {s.attrs.get('direction', '')}".strip()
        tmpl = s.attrs.get("template")
        if tmpl:
            bit += f" {str(tmpl)[:160]}"
        if bit not in seen:
            seen.add(bit)
            parts.append(" ".join(bit.split()))
    for c in incident.candidate_changes:
        parts.append(f"{c.get('change_type', 'deploy')} of {c.get('service', '?')}")
    return "; ".join(parts)

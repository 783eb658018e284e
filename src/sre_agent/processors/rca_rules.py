"""Deterministic RCA rules: facts per service, then scored hypotheses.

Four families, each with a confidence and an evidence chain a human can check:

* **change correlation** — a deploy/config change of an involved (or
  neighbouring) service shortly before the first symptom;
* **resource saturation** — memory/OOM, CPU, disk, DB pool, node pressure,
  crash loops, traffic surges on a service;
* **dependency propagation** — the service the call graph points at
  (:func:`~sre_agent.processors.rca_graph.rank_services`);
* **error-template onset** — a log template that appeared with the incident
  (pool exhaustion, OOM, connection refused, config errors).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..schemas import EvidenceItem, Hypothesis, Incident, SignalRef
from .rca_features import alert_category, is_bad, k8s_category, metric_category, text_category
from .rca_graph import RankedService
from .topology import ServiceGraph

__all__ = ["ACTIONS", "ServiceFacts", "change_hypotheses", "service_facts", "symptom_hypotheses"]


@dataclass
class ServiceFacts:
    """What the incident's signals say about one service."""

    service: str
    strength: float = 0.0
    onset: float = math.inf
    #: category -> (max strength, supporting signals)
    cats: dict[str, tuple[float, list[SignalRef]]] = field(default_factory=dict)
    traffic_up: bool = False

    def has(self, *cats: str) -> bool:
        return any(c in self.cats for c in cats)

    def top(self, n: int = 3) -> list[SignalRef]:
        sigs = [s for _, ss in self.cats.values() for s in ss]
        return sorted(sigs, key=lambda s: -_strength(s))[:n]


def _strength(s: SignalRef) -> float:
    if "score" in s.attrs:
        return float(s.attrs["score"])
    if s.kind == "prediction":
        return 0.6 * float(s.attrs.get("confidence", 0.8))
    return {"critical": 0.92, "warning": 0.78, "info": 0.55}[s.severity]


def signal_category(s: SignalRef) -> str | None:
    """Symptom category of one signal; None when it is not a bad-way symptom."""
    name = s.metric or ""
    if s.kind == "k8s":
        return k8s_category(name)
    if s.kind == "log":
        cat = text_category(str(s.attrs.get("template") or s.summary))
        return "errors" if cat == "unknown" else cat
    if s.kind == "alert":
        return alert_category(name, s.summary)
    if s.kind in ("anomaly", "prediction"):
        cat = metric_category(name)
        dev = float(s.attrs.get("deviation", 1.0 if s.attrs.get("direction", "up") == "up" else -1.0))
        if not is_bad(name, dev):
            return None
        return cat
    return None


def service_facts(incident: Incident) -> dict[str, ServiceFacts]:
    facts: dict[str, ServiceFacts] = {s: ServiceFacts(s) for s in incident.services}
    for sig in incident.signals:
        if sig.kind == "deploy":
            continue
        f = facts.setdefault(sig.service, ServiceFacts(sig.service))
        cat = signal_category(sig)
        if cat is None:
            continue
        a = _strength(sig)
        if cat == "traffic":
            up = str(sig.attrs.get("direction", "up")) == "up"
            f.traffic_up = f.traffic_up or up
        best, sigs = f.cats.get(cat, (0.0, []))
        f.cats[cat] = (max(best, a), [*sigs, sig])
        # evidence mass: independent signals of one service reinforce each other
        f.strength = min(0.999, 1.0 - (1.0 - f.strength) * (1.0 - a))
        f.onset = min(f.onset, sig.time.timestamp())
    return facts


def _ev(sig: SignalRef, weight: float) -> EvidenceItem:
    kind = {"anomaly": "metric", "prediction": "metric"}.get(sig.kind, sig.kind)
    obs, exp = sig.attrs.get("observed"), sig.attrs.get("expected")
    measured = isinstance(obs, int | float) and isinstance(exp, int | float) and sig.metric
    return EvidenceItem(kind=kind, summary=f"{sig.service}: {sig.summary or sig.metric}",
                        weight=round(weight, 3), ref=sig.ref,
                        metric=sig.metric if measured else None,
                        observed=float(obs) if measured else None,
                        expected=float(exp) if measured else None)


#: recommended actions per cause_type (``{service}``/``{app}``/``{prev}`` filled in)
ACTIONS: dict[str, list[str]] = {
    "bad_deploy": ["Roll back {service} to {prev} (argocd app rollback {app})",
                   "Diff revision {rev} against {prev} and pause further syncs of {app}"],
    "config_change": ["Revert the configuration change of {service}",
                      "Diff the changed ConfigMap/values against the previous revision"],
    "memory_leak": ["Capture a heap profile of {service}, then rollout restart it",
                    "Raise {service}'s memory limit temporarily; find the leak in the last change"],
    "db_pool_exhaustion": ["Look for slow queries and long transactions on {service}",
                           "Kill idle-in-transaction sessions; review callers' pool sizes"],
    "dependency_failure": ["Investigate {service} first: its callers' errors follow from it",
                           "Enable circuit breakers/fallbacks in the callers of {service}"],
    "slow_dependency": ["Investigate {service}'s latency (slow queries, saturation, GC)",
                        "Lower callers' timeouts / enable hedging towards {service}"],
    "traffic_surge": ["Scale out {service} (raise HPA max replicas)",
                      "Enable rate limiting / shed non-critical traffic"],
    "disk_saturation": ["Free disk space on {service} (log rotation, old data)",
                        "Expand the volume of {service}"],
    "crash_loop": ["Read the last logs of the crashing container (kubectl logs --previous)",
                   "Roll back {service} if the crashes began with a change"],
    "node_pressure": ["Cordon and drain the affected node; reschedule {service}",
                      "Add node capacity or fix the node's pressure condition"],
    "resource_saturation": ["Scale {service} up or out", "Check CPU throttling and limits"],
    "unknown": ["Inspect the incident's signals and recent changes by hand"],
}


def actions(cause: str, service: str, change: dict[str, Any] | None = None) -> list[str]:
    ch = change or {}
    fill = {"service": service, "app": ch.get("app") or service,
            "prev": ch.get("previous_revision") or "the previous revision",
            "rev": ch.get("revision") or "the new revision"}
    return [a.format(**fill) for a in ACTIONS.get(cause, ACTIONS["unknown"])]


def change_hypotheses(incident: Incident, facts: dict[str, ServiceFacts],
                      loc: dict[str, float]) -> list[Hypothesis]:
    """Change correlation: deploys/config changes linked by the correlator."""
    onset = min((f.onset for f in facts.values()), default=incident.opened_at.timestamp())
    if math.isinf(onset):
        onset = incident.opened_at.timestamp()
    out = []
    for ch in incident.candidate_changes:
        svc = str(ch.get("service", ""))
        try:
            ts = float(ch["ts"]) if "ts" in ch else datetime.fromisoformat(str(ch["time"])).timestamp()
        except (KeyError, ValueError, TypeError):
            continue
        before = onset - float(ts)
        prox = math.exp(-max(before, 0.0) / 1800.0) if before >= -60 else 0.1
        f = facts.get(svc)
        on_path = 1.0 if f is not None and f.cats else (0.6 if svc in incident.services else 0.5)
        conf = 0.3 + 0.45 * prox * on_path
        ev = [EvidenceItem(kind="deploy", weight=round(prox, 3), ref=str(ch.get("event_id")),
                           summary=f"{ch.get('change_type', 'deploy')} of {svc} to "
                                   f"{ch.get('revision') or '?'}"
                                   + (f" by {ch['author']}" if ch.get("author") else "")
                                   + f", {before:.0f} s before the first symptom")]
        if f is not None and f.has("errors", "crash", "image", "availability", "config"):
            conf += 0.12
            ev += [_ev(s, _strength(s)) for s in f.top(2)]
        elif f is not None and f.cats:
            conf += 0.05
            ev += [_ev(s, _strength(s)) for s in f.top(1)]
        # a changed service whose symptoms its own dependencies explain is less likely
        conf *= loc.get(svc, 0.6)
        cause = "config_change" if ch.get("change_type") == "config" else "bad_deploy"
        out.append(Hypothesis(cause_type=cause, service=svc, confidence=min(conf, 0.95),
                              summary=f"{cause.replace('_', ' ')}: {svc} "
                                      f"{ch.get('revision') or ''} shortly before the incident"
                                      .replace("  ", " "),
                              evidence=ev, recommended_actions=actions(cause, svc, ch)))
    return out


def _hyp(cause: str, f: ServiceFacts, base: float, loc: float, why: str,
         sigs: Iterable[SignalRef]) -> Hypothesis:
    ev = [_ev(s, _strength(s)) for s in list(sigs)[:3]]
    return Hypothesis(cause_type=cause, service=f.service, confidence=min(base * loc, 0.95),
                      summary=f"{cause.replace('_', ' ')} on {f.service}: {why}", evidence=ev,
                      recommended_actions=actions(cause, f.service))


def symptom_hypotheses(graph: ServiceGraph, facts: dict[str, ServiceFacts],
                       ranking: list[RankedService], loc: dict[str, float]) -> list[Hypothesis]:
    """Resource saturation, error-template onset and dependency propagation."""
    out: list[Hypothesis] = []
    callers_up = {s: any(facts[c].traffic_up for c in graph.upstream(s) if c in facts)
                  for s in facts}
    for s, f in facts.items():
        L = loc.get(s, 0.6)
        sig = lambda *c: [x for cat in c for x in f.cats.get(cat, (0, []))[1]]  # noqa: E731
        if f.has("db_pool"):
            logs = [x for x in sig("db_pool") if x.kind == "log"]
            out.append(_hyp("db_pool_exhaustion", f, 0.62 + (0.1 if logs else 0.0), L,
                            "connections/pool saturated", sig("db_pool")))
        if f.has("oom", "memory"):
            base = 0.5 + (0.15 if f.has("oom") else 0.0) + (0.1 if any(
                x.kind == "prediction" for x in sig("memory")) else 0.0)
            base -= 0.15 if f.traffic_up else 0.0
            out.append(_hyp("memory_leak", f, base, L, "memory growing / OOM kills",
                            sig("oom", "memory")))
        if f.has("crash") and not f.has("oom"):
            out.append(_hyp("crash_loop", f, 0.55, L, "containers crash-looping", sig("crash")))
        if f.has("disk"):
            out.append(_hyp("disk_saturation", f, 0.6, L, "disk filling up", sig("disk")))
        if f.has("node"):
            out.append(_hyp("node_pressure", f, 0.55, L, "node pressure / scheduling failures",
                            sig("node")))
        if f.has("image"):
            out.append(_hyp("bad_deploy", f, 0.55, L, "image cannot be pulled", sig("image")))
        if f.has("config"):
            out.append(_hyp("config_change", f, 0.45, L, "configuration errors in logs",
                            sig("config")))
        if f.has("cpu", "queue"):
            if f.traffic_up or callers_up.get(s):
                out.append(_hyp("traffic_surge", f, 0.55, L, "load follows a traffic increase",
                                sig("traffic", "cpu")))
            else:
                out.append(_hyp("resource_saturation", f, 0.5, L, "CPU/queue saturated without "
                                "more traffic", sig("cpu", "queue")))
        elif f.traffic_up:
            out.append(_hyp("traffic_surge", f, 0.45, L, "request rate surged", sig("traffic")))
    # dependency propagation: the ranked root explains its callers' symptoms
    bad = [r for r in ranking if r.strength >= 0.5 and r.service in facts]
    if bad:
        root = bad[0]
        f = facts[root.service]
        victims = [s for s in graph.upstream(root.service) if s in facts and facts[s].cats]
        deps = [x for x in f.top(3)]
        dep_logs = [x for s in facts.values() for x in s.cats.get("dependency", (0, []))[1]]
        # a specific cause already found on the root explains *why* it fails: propagation
        # then only supports it (evidence), it does not compete with it
        specific = [h for h in out if h.service == root.service]
        for h in specific:
            if victims:
                h.confidence = min(0.95, h.confidence + 0.05)
                h.evidence.append(EvidenceItem(kind="dependency", weight=root.score,
                                               summary="; ".join(root.evidence)))
        if victims or dep_logs:
            cause = "slow_dependency" if f.has("latency") and not f.has(
                "errors", "availability", "crash", "oom", "dependency") else "dependency_failure"
            base = 0.3 if specific else 0.45 + 0.1 * min(len(victims), 3) / 3
            h = _hyp(cause, f, base, loc.get(root.service, 1.0),
                     f"symptoms propagate to its callers {', '.join(victims[:4])}".rstrip(" "),
                     deps + dep_logs)
            h.evidence.append(EvidenceItem(kind="dependency", summary="; ".join(root.evidence),
                                           weight=root.score))
            out.append(h)
        elif not specific and f.has("latency") and graph.callers(root.service):
            out.append(_hyp("slow_dependency", f, 0.4, 1.0, "slow, and called by "
                            + ", ".join(graph.callers(root.service)[:4]), f.top(3)))
        elif not specific:
            out.append(_hyp("unknown", f, 0.3, 1.0, "symptoms without a matching change, "
                            "resource or dependency signal", f.top(3)))
    return out

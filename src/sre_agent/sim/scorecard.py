"""Scoring: ground truth + what the pipeline emitted -> the seeds' figures.

Pure: :func:`score` takes a :class:`RunRecord` (the truths, every observed
output event with the sample time it was seen at, the signals the simulator
sent, the simulator's action ledger and health transitions) and returns the
scorecard as plain dicts. A stage that did not run simply leaves its figures
empty (``None``) or counted as misses, never guessed (a run without a single
incident has no noise reduction to report).

Times are Unix seconds of *sample* time. An output's time is its own event
time when that is plausible (between the run's start and the moment it was
received), else the sample time at which the eval received it.

Examples
--------
>>> from .truth import GroundTruth
>>> gt = GroundTruth("bad", "t", start=1000.0, end=None, window_start=400.0, window_end=5000.0,
...                  impact_at=1000.0, root_service="api", cause_type="bad_deploy",
...                  affected=("api",), expected_actions=("rollout_undo",))
>>> inc = Observation("incidents", 1120.0, {"incident_id": "i1", "status": "open",
...       "services": ["api"], "root_service": "api", "opened_at": 1120.0})
>>> rca = Observation("rca-results", 1180.0, {"incident_id": "i1", "llm_tokens": 0,
...       "hypotheses": [{"cause_type": "bad_deploy", "service": "api", "confidence": 0.9}]})
>>> rec = RunRecord(truths=[gt], observations=[inc, rca], run_start=0.0, run_end=6000.0,
...                 scored_from=0.0, clean=[(0.0, 400.0)])
>>> card = score(rec)
>>> s = card["scenarios"][0]
>>> s["detected"], s["mttd_seconds"], s["rca_top1"], s["mtti_seconds"]
(True, 120.0, True, 180.0)
>>> card["overall"]["detection_rate"], card["overall"]["rca_top1"]
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from statistics import mean
from typing import Any

from .truth import GroundTruth

__all__ = ["TARGETS", "Observation", "RunRecord", "related_incidents", "score", "when"]

#: the seeds' targets: key -> (comparison, value, wording)
TARGETS: dict[str, tuple[str, float, str]] = {
    "false_alarm_rate": ("<", 0.10, "false alarms < 10%"),
    "mttd_seconds": ("<", 300.0, "MTTD < 5 min"),
    "lead_time_seconds": (">=", 3600.0, "early warning 1-3 h ahead"),
    "noise_reduction": (">=", 0.70, "alert noise -70%"),
    "rca_top1": (">", 0.80, "root cause right > 80%"),
    "mtti_seconds": ("<", 600.0, "MTTI < 10 min"),
    "remediation_success": (">", 0.85, "self-healing success > 85%"),
    "mttr_seconds": ("<", 1800.0, "MTTR < 30 min"),
    "protected_auto_executions": ("==", 0.0, "protected targets never auto-executed"),
}

#: incidents opened this long after a window still belong to it (not false alarms)
GRACE = 600.0
#: a recovery must hold this long
HOLD = 300.0


@dataclass(frozen=True)
class Observation:
    """One event seen on a topic; ``received`` is the sample time when it arrived."""

    topic: str
    received: float
    payload: dict[str, Any]


@dataclass
class RunRecord:
    truths: list[GroundTruth]
    observations: list[Observation]
    run_start: float
    run_end: float
    #: warm-up history ends here; nothing before it is scored
    scored_from: float
    clean: list[tuple[float, float]]
    #: raw signals the simulator sent (alerts firing, k8s warnings), as observations
    sent: list[Observation] = field(default_factory=list)
    #: the simulator's ledger (:meth:`Outcome.to_dict`)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    #: (time, unhealthy components) whenever that set changed
    health: list[tuple[float, list[str]]] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    step: float = 60.0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``sre-agent eval --record``; re-scored with :meth:`from_dict`)."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("truths", "observations", "sent")}
        d["truths"] = [gt.to_dict() for gt in self.truths]
        d["observations"] = [[o.topic, o.received, o.payload] for o in self.observations]
        d["sent"] = [[o.topic, o.received, o.payload] for o in self.sent]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        kw = dict(d)
        kw["truths"] = [GroundTruth.from_dict(x) for x in d["truths"]]
        kw["observations"] = [Observation(*x) for x in d["observations"]]
        kw["sent"] = [Observation(*x) for x in d.get("sent", [])]
        kw["clean"] = [tuple(x) for x in d["clean"]]
        kw["health"] = [(t, list(n)) for t, n in d.get("health", [])]
        return cls(**kw)


def _ts(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def when(rec: RunRecord, obs: Observation, *fields: str) -> float:
    """Effective sample time of an observation (its own time if plausible)."""
    for f in (*fields, "time"):
        t = _ts(obs.payload.get(f))
        if t is not None and rec.run_start <= t <= obs.received + rec.step:
            return t
    return obs.received


@dataclass
class _Revision:
    time: float
    services: set[str]
    root: str | None
    added: set[str]
    first: bool


@dataclass
class _Incident:
    id: str
    opened: float
    revisions: list[_Revision]


def _incidents(rec: RunRecord) -> dict[str, _Incident]:
    """Every incident with its revisions as seen (services, root, services added)."""
    out: dict[str, _Incident] = {}
    for o in rec.observations:
        if o.topic != "incidents":
            continue
        p = o.payload
        iid = str(p.get("incident_id", ""))
        svcs = {s for s in (p.get("services") or []) if isinstance(s, str)}
        root = p.get("root_service") if isinstance(p.get("root_service"), str) else None
        if root:
            svcs.add(root)
        inc = out.get(iid)
        if inc is None:
            t = when(rec, o, "opened_at")
            out[iid] = _Incident(iid, t, [_Revision(t, svcs, root, set(svcs), True)])
        else:
            known = set().union(*(r.services for r in inc.revisions))
            inc.revisions.append(_Revision(when(rec, o), svcs, root, svcs - known, False))
    return out


def _names(gt: GroundTruth) -> set[str]:
    return {*gt.affected, *([gt.root_service] if gt.root_service else []), *gt.root_aliases}


def _related_times(gt: GroundTruth, inc: _Incident) -> list[float]:
    """When revisions of ``inc`` raised or extended an alarm about ``gt``'s services.

    A revision counts when it opens the incident on those services, names one
    of them as its root, or adds one of them; a long-lived incident that is
    merely updated about other services does not take credit.
    """
    lo = gt.start if gt.fault else gt.window_start
    names = _names(gt)
    return [r.time for r in inc.revisions
            if lo <= r.time <= gt.window_end + GRACE
            and (r.root in names or r.added & names or (r.first and r.services & names))]


def related_incidents(rec: RunRecord, gt: GroundTruth) -> list[str]:
    """Ids of the incidents that raised or extended an alarm about ``gt``, first first.

    At equal times an incident that names the true root comes first.
    """
    incs = _incidents(rec)
    rel = {i.id: min(ts) for i in incs.values() if (ts := _related_times(gt, i))}
    holds = {i for i in rel if any(gt.is_root(n) for r in incs[i].revisions for n in r.services)}
    return sorted(rel, key=lambda i: (rel[i], i not in holds, incs[i].opened < gt.start))


def _false_alarm(rec: RunRecord, inc: _Incident) -> bool:
    """Opened when no fault was under way on the services it names."""
    first = _Incident(inc.id, inc.opened, inc.revisions[:1])
    return not any(_related_times(gt, first) for gt in rec.truths if gt.fault)


def _mean(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(mean(vals), 1) if vals else None


def _rate(xs: Iterable[bool | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(sum(vals) / len(vals), 3) if vals else None


def _in(t: float, lo: float, hi: float) -> bool:
    return lo <= t < hi


def _protected(rec: RunRecord, target: dict[str, Any]) -> bool:
    names = [str(target.get(k)) for k in ("service", "name") if target.get(k)]
    return any(fnmatch(n, pat) for n in names for pat in rec.protected)


def _unhealthy_at(rec: RunRecord, t: float) -> set[str]:
    bad: list[str] = []
    for ts, names in rec.health:
        if ts > t:
            break
        bad = names
    return set(bad)


def _first_unhealthy(rec: RunRecord, comps: set[str], lo: float, hi: float) -> float | None:
    if _unhealthy_at(rec, lo) & comps:
        return lo
    for ts, names in rec.health:
        if lo <= ts < hi and set(names) & comps:
            return ts
    return None


def _recovered(rec: RunRecord, comps: set[str], after: float, hi: float) -> float | None:
    """First time >= ``after`` from which ``comps`` stay healthy for HOLD (or to ``hi``)."""
    points = [after] + [ts for ts, _ in rec.health if after < ts < hi]
    for i, ts in enumerate(points):
        if _unhealthy_at(rec, ts) & comps:
            continue
        nxt = next((p for p in points[i + 1:] if _unhealthy_at(rec, p) & comps), None)
        if nxt is None or nxt - ts >= HOLD:
            return ts
    return None


def _scenario(rec: RunRecord, gt: GroundTruth, incs: dict[str, _Incident]) -> dict[str, Any]:
    names = _names(gt)
    rel_times = {i.id: ts for i in incs.values() if (ts := _related_times(gt, i))}
    rel_ids = set(rel_times)
    lo, hi = gt.window_start, gt.window_end
    s: dict[str, Any] = {"name": gt.scenario, "title": gt.title, "fault": gt.fault,
                         "root_service": gt.root_service, "cause_type": gt.cause_type,
                         "expected_actions": list(gt.expected_actions),
                         "protected": gt.protected, "predictable": gt.predictable}
    # ---- raw signals vs incidents in the window
    raw = sum(1 for o in rec.sent if _in(when(rec, o), lo, hi))
    pred_series: set[str] = set()
    anomalies = 0
    for o in rec.observations:
        if o.topic == "anomalies" and o.payload.get("status", "open") == "open" \
                and _in(when(rec, o), lo, hi):
            anomalies += 1
        elif o.topic == "predictions" and _in(when(rec, o), lo, hi):
            pred_series.add(str(o.payload.get("series")))
    raw += anomalies + len(pred_series)
    in_window = [i for i in incs.values() if _in(i.opened, lo, hi)]
    opened_rel = [i for i in in_window if i.id in rel_ids and i.opened in rel_times[i.id]]
    s["raw_signals"] = raw
    s["incidents"] = len(in_window)
    # without any incident in the whole run there is no correlator to credit
    s["noise_reduction"] = round(1 - len(in_window) / raw, 3) if raw and incs else None
    s["llm_tokens"] = sum(int(o.payload.get("llm_tokens") or 0) for o in rec.observations
                          if o.topic == "rca-results" and o.payload.get("incident_id") in rel_ids)
    if not gt.fault:
        s["false_alarms"] = len(opened_rel)
        s["sre_actions"] = sum(1 for o in rec.observations if o.topic == "sre-actions"
                               and _in(when(rec, o), lo, hi + GRACE))
        return s
    # ---- detection and early warning
    ref = gt.impact_at
    detect = min((t for ts in rel_times.values() for t in ts if t <= hi), default=None)
    s["detected"] = detect is not None
    s["mttd_seconds"] = max(0.0, detect - ref) if detect is not None else None
    first_signal = min((when(rec, o) for o in rec.observations
                        if o.topic in ("anomalies", "predictions")
                        and o.payload.get("status", "open") == "open"
                        and o.payload.get("service") in names
                        and gt.start <= when(rec, o) < hi), default=None)
    s["signal_mttd_seconds"] = max(0.0, first_signal - ref) if first_signal is not None else None
    warn = min((t for t in (detect, *(when(rec, o) for o in rec.observations
                                      if o.topic == "predictions"
                                      and o.payload.get("service") in names
                                      and gt.start <= when(rec, o) < hi)) if t is not None),
               default=None)
    s["warned_at"] = warn
    s["lead_time_seconds"] = (round(ref - warn, 1) if gt.predictable and warn is not None
                              and warn < ref else (0.0 if gt.predictable else None))
    # ---- RCA
    # the first RCA shown for this fault; at equal times, the incident that holds the root
    holds_root = {i.id for i in incs.values() if i.id in rel_ids
                  and any(gt.is_root(n) for r in i.revisions for n in r.services)}
    rcas = sorted((o for o in rec.observations if o.topic == "rca-results"
                   and o.payload.get("incident_id") in rel_ids
                   and gt.start <= when(rec, o) <= hi + GRACE),
                  key=lambda o: (when(rec, o), o.payload.get("incident_id") not in holds_root))
    if rcas:
        hyps = [h for h in (rcas[0].payload.get("hypotheses") or []) if isinstance(h, dict)]
        ok = [gt.is_cause(h.get("cause_type")) and gt.is_root(h.get("service")) for h in hyps]
        s["rca_top"] = [f"{h.get('cause_type')}@{h.get('service')}" for h in hyps[:3]]
        s["rca_top1"] = bool(ok[:1] and ok[0])
        s["rca_top3"] = any(ok[:3])
        s["mtti_seconds"] = max(0.0, when(rec, rcas[0]) - ref)
    else:
        s["rca_top"], s["rca_top1"], s["rca_top3"], s["mtti_seconds"] = [], False, False, None
    # ---- plan and policy
    plans = sorted((o for o in rec.observations if o.topic == "action-plans"
                    and o.payload.get("incident_id") in rel_ids
                    and gt.start <= when(rec, o) <= hi + GRACE),
                   key=lambda o: (when(rec, o), o.payload.get("incident_id") not in holds_root))
    if plans:
        p = plans[0].payload
        steps = [st for st in (p.get("steps") or []) if isinstance(st, dict)]
        st0 = steps[0] if steps else {}
        tgt = st0.get("target") or {}
        s["action_chosen"] = st0.get("action")
        s["action_target"] = tgt.get("name")
        s["policy"] = p.get("policy")
        s["risk_tier"] = p.get("risk_tier")
        s["action_correct"] = (st0.get("action") in gt.expected_actions
                               and (gt.is_root(tgt.get("service")) or gt.is_root(tgt.get("name"))))
        s["policy_correct"] = p.get("policy") in gt.expected_policies
    else:
        s["action_chosen"] = s["action_target"] = s["policy"] = s["risk_tier"] = None
        s["action_correct"] = s["policy_correct"] = False
    acts = [o for o in rec.observations if o.topic == "sre-actions"
            and o.payload.get("incident_id") in rel_ids and gt.start <= when(rec, o) <= hi]
    s["sre_actions"] = len(acts)
    s["protected_auto_executions"] = sum(1 for o in acts if _auto_protected(rec, o))
    # ---- remediation, measured on the simulator
    comps = {n for n in names if n in set(rec.info.get("components", names))}
    applied = [o for o in rec.outcomes if gt.start <= o["time"] < hi
               and o["effect"] != "refused"]
    good = [o for o in applied if o["effect"] != "none"]
    s["actions_applied"] = [f"{o['action']}->{o['effect']}" for o in applied]
    s["actions_refused"] = [f"{o['action']}: {o.get('verdict', '')}" for o in rec.outcomes
                            if gt.start <= o["time"] < hi and o["effect"] == "refused"]
    impact = _first_unhealthy(rec, comps, gt.start, hi)
    s["impact_started"] = impact
    if gt.protected or not applied:
        s["remediated"], s["mttr_seconds"] = None, None
    else:
        rec_at = _recovered(rec, comps, good[0]["time"], hi) if good else None
        ok = rec_at is not None and rec_at - good[0]["time"] <= 900.0
        s["remediated"] = ok
        s["mttr_seconds"] = (max(0.0, rec_at - (impact if impact is not None else rec_at))
                             if ok and rec_at is not None else None)
    return s


def _auto_protected(rec: RunRecord, o: Observation) -> bool:
    p = o.payload
    tgt = (p.get("step") or {}).get("target") or {}
    return _protected(rec, tgt) and (p.get("policy") == "AUTO" or not p.get("approved_by"))


def _met(key: str, value: float | None) -> bool | None:
    if value is None:
        return None
    op, target, _ = TARGETS[key]
    return {"<": value < target, ">": value > target, ">=": value >= target,
            "==": value == target}[op]


def score(rec: RunRecord) -> dict[str, Any]:
    """The scorecard: ``{"overall": {...}, "scenarios": [...], "targets": {...}}``."""
    every = _incidents(rec)
    scen = [_scenario(rec, gt, every) for gt in rec.truths]
    faults = [s for s in scen if s["fault"]]
    incs = {k: i for k, i in every.items() if i.opened >= rec.scored_from}
    false = [i for i in incs.values() if _false_alarm(rec, i)]
    clean_s = sum(max(0.0, min(b, rec.run_end) - max(a, rec.scored_from)) for a, b in rec.clean)
    clean_incs = [i for i in false if any(_in(i.opened, a, b) for a, b in rec.clean)]
    raw = sum(1 for o in rec.sent if when(rec, o) >= rec.scored_from)
    raw += sum(1 for o in rec.observations if o.topic == "anomalies"
               and o.payload.get("status", "open") == "open" and when(rec, o) >= rec.scored_from)
    raw += len({o.payload.get("series") for o in rec.observations if o.topic == "predictions"
                and when(rec, o) >= rec.scored_from})
    acts = [o for o in rec.observations if o.topic == "sre-actions"
            and when(rec, o) >= rec.scored_from]
    remediable = [s for s in faults if not s["protected"]]
    overall: dict[str, Any] = {
        "detection_rate": _rate(s["detected"] for s in faults),
        "false_alarms_per_day": round(len(clean_incs) / (clean_s / 86400.0), 2) if clean_s else None,
        "false_alarm_rate": round(len(false) / len(incs), 3) if incs else None,
        "mttd_seconds": _mean(s["mttd_seconds"] for s in faults),
        "signal_mttd_seconds": _mean(s["signal_mttd_seconds"] for s in faults),
        "lead_time_seconds": _mean(s["lead_time_seconds"] for s in faults
                                   if s["predictable"] and s["lead_time_seconds"]),
        "early_warning_rate": _rate(bool(s["lead_time_seconds"]) for s in faults
                                    if s["predictable"]),
        "noise_reduction": round(1 - len(incs) / raw, 3) if raw and incs else None,
        "rca_top1": _rate(s["rca_top1"] for s in faults),
        "rca_top3": _rate(s["rca_top3"] for s in faults),
        "mtti_seconds": _mean(s["mtti_seconds"] for s in faults),
        "action_correct": _rate(s["action_correct"] for s in faults),
        "policy_correct": _rate(s["policy_correct"] for s in faults),
        "remediation_success": _rate(s["remediated"] for s in remediable),
        "remediation_coverage": _rate(bool(s["remediated"]) for s in remediable),
        "mttr_seconds": _mean(s["mttr_seconds"] for s in remediable),
        # the whole run, warm-up included: safety has no warm-up
        "protected_auto_executions": sum(1 for o in rec.observations if o.topic == "sre-actions"
                                         and _auto_protected(rec, o)),
        "llm_tokens": sum(int(o.payload.get("llm_tokens") or 0) for o in rec.observations
                          if o.topic == "rca-results"),
        "scenario_count": len(scen),
        "fault_scenarios": len(faults),
        "clean_hours": round(clean_s / 3600.0, 1),
        "raw_signals": raw,
        "incidents": len(incs),
        "sre_actions": len(acts),
    }
    overall.update(_warmup(rec, every))
    targets = {k: {"target": w, "value": overall.get(k), "met": _met(k, overall.get(k))}
               for k, (_, _, w) in TARGETS.items()}
    return {"overall": overall, "scenarios": scen, "targets": targets, "run": rec.info}


def _warmup(rec: RunRecord, every: dict[str, _Incident]) -> dict[str, Any]:
    """What the agent did during the warm-up history (no fault injected there).

    The agent is live from the first sample, so whatever it raised while its
    baselines were still learning is reported; it is kept out of the rates above,
    which measure a warmed-up agent against the seeds' targets.
    """
    hours = max(0.0, rec.scored_from - rec.run_start) / 3600.0
    incs = [i for i in every.values() if i.opened < rec.scored_from]
    acts = sum(1 for o in rec.observations if o.topic == "sre-actions"
               and when(rec, o) < rec.scored_from)
    raw = sum(1 for o in rec.sent if when(rec, o) < rec.scored_from)
    raw += sum(1 for o in rec.observations if o.topic == "anomalies"
               and o.payload.get("status", "open") == "open" and when(rec, o) < rec.scored_from)
    return {"warmup_hours": round(hours, 1), "warmup_incidents": len(incs),
            "warmup_incidents_per_day": round(len(incs) / (hours / 24.0), 2) if hours else None,
            "warmup_raw_signals": raw, "warmup_sre_actions": acts}

"""Why the scorecard says what it says: each false alarm and each RCA miss, explained.

Pure, like :mod:`.scorecard`: :func:`details` takes a :class:`RunRecord` and lists

* every incident opened after the warm-up that is a false alarm, with the segment it
  opened in (a scenario window, a clean gap), its first services and root, and the
  signals it opened on (kind, service, metric, direction, severity);
* every fault scenario whose first RCA is not right at top-1, with the incident that
  RCA was about (its first signals) and the ranked hypotheses.

``sre-agent eval --detail`` prints it (also with ``--rescore``).

Examples
--------
>>> from .scorecard import Observation, RunRecord
>>> from .truth import GroundTruth
>>> gt = GroundTruth("bad", "t", start=1000.0, end=None, window_start=400.0, window_end=5000.0,
...                  impact_at=1000.0, root_service="api", cause_type="bad_deploy",
...                  affected=("api",))
>>> sig = {"kind": "anomaly", "service": "db", "metric": "cpu", "severity": "warning",
...        "time": 600.0, "attrs": {"direction": "up"}}
>>> fa = Observation("incidents", 600.0, {"incident_id": "i0", "status": "open",
...      "services": ["db"], "root_service": "db", "opened_at": 600.0, "signals": [sig]})
>>> inc = Observation("incidents", 1120.0, {"incident_id": "i1", "status": "open",
...       "services": ["api"], "root_service": "api", "opened_at": 1120.0})
>>> rca = Observation("rca-results", 1180.0, {"incident_id": "i1",
...       "hypotheses": [{"cause_type": "unknown", "service": "api", "confidence": 0.4}]})
>>> rec = RunRecord(truths=[gt], observations=[fa, inc, rca], run_start=0.0, run_end=6000.0,
...                 scored_from=0.0, clean=[(0.0, 1000.0)])
>>> d = details(rec)
>>> [(f["id"], f["segment"], f["first_signals"]) for f in d["false_alarms"]]
[('i0', 'bad (before onset)', ['anomaly db cpu up warning'])]
>>> [(m["scenario"], m["incident"], m["hypotheses"]) for m in d["rca_misses"]]
[('bad', 'i1', ['unknown@api 0.40'])]
"""

from __future__ import annotations

from typing import Any

from .scorecard import GRACE, RunRecord, _false_alarm, _incidents, _related_times, when

__all__ = ["details", "render_details"]


def _segment(rec: RunRecord, t: float) -> str:
    for gt in rec.truths:
        if gt.window_start <= t < gt.window_end:
            if gt.fault and t < gt.start:
                return f"{gt.scenario} (before onset)"
            return gt.scenario
    if t < rec.scored_from:
        return "warm-up"
    return "clean gap"


def _sig(s: dict[str, Any]) -> str:
    attrs = s.get("attrs") or {}
    what = s.get("metric") or attrs.get("reason") or ""
    return " ".join(str(x) for x in (s.get("kind"), s.get("service"), what,
                                     attrs.get("direction", ""), s.get("severity")) if x)


def _first_payload(rec: RunRecord, iid: str) -> dict[str, Any]:
    for o in rec.observations:
        if o.topic == "incidents" and str(o.payload.get("incident_id")) == iid:
            return o.payload
    return {}


def _hyp(h: dict[str, Any]) -> str:
    return f"{h.get('cause_type')}@{h.get('service')} {float(h.get('confidence') or 0):.2f}"


def details(rec: RunRecord) -> dict[str, Any]:
    """False alarms and RCA misses of a run, each with what opened or ranked it."""
    incs = _incidents(rec)
    false = []
    for inc in sorted(incs.values(), key=lambda i: i.opened):
        if inc.opened < rec.scored_from or not _false_alarm(rec, inc):
            continue
        p = _first_payload(rec, inc.id)
        first = inc.revisions[0]
        false.append({
            "id": inc.id, "opened": inc.opened, "segment": _segment(rec, inc.opened),
            "services": sorted(first.services), "root": first.root,
            "revisions": len(inc.revisions),
            "first_signals": [_sig(s) for s in (p.get("signals") or [])[:8]
                              if isinstance(s, dict)],
            "candidate_changes": [str(c.get("service", "")) + " " + str(c.get("change_type", ""))
                                  for c in (p.get("candidate_changes") or [])
                                  if isinstance(c, dict)],
        })
    misses = []
    for gt in rec.truths:
        if not gt.fault:
            continue
        rel = {i.id for i in incs.values() if _related_times(gt, i)}
        rcas = sorted((o for o in rec.observations if o.topic == "rca-results"
                       and o.payload.get("incident_id") in rel
                       and gt.start <= when(rec, o) <= gt.window_end + GRACE),
                      key=lambda o: when(rec, o))
        holds = {i for i in rel if any(gt.is_root(n) for r in incs[i].revisions
                                       for n in r.services)}
        rcas.sort(key=lambda o: (when(rec, o), o.payload.get("incident_id") not in holds))
        hyps = [h for h in (rcas[0].payload.get("hypotheses") or [])
                if isinstance(h, dict)] if rcas else []
        if hyps and gt.is_cause(hyps[0].get("cause_type")) and gt.is_root(hyps[0].get("service")):
            continue
        iid = str(rcas[0].payload.get("incident_id")) if rcas else None
        p = _first_payload(rec, iid) if iid else {}
        misses.append({
            "scenario": gt.scenario, "truth": f"{gt.cause_type}@{gt.root_service}",
            "incident": iid, "related_incidents": sorted(rel),
            "incident_root": p.get("root_service"), "incident_services": p.get("services"),
            "opened": incs[iid].opened if iid in incs else None, "onset": gt.start,
            "first_signals": [_sig(s) for s in (p.get("signals") or [])[:8]
                              if isinstance(s, dict)],
            "hypotheses": [_hyp(h) for h in hyps[:5]],
        })
    return {"false_alarms": false, "rca_misses": misses}


def render_details(d: dict[str, Any], t0: float = 0.0) -> str:
    """``details`` as text; times as minutes after ``t0``."""
    lines = [f"false alarms ({len(d['false_alarms'])}):"]
    for f in d["false_alarms"]:
        lines.append(f"  {f['id'][:10]} at +{(f['opened'] - t0) / 60:.0f} min in {f['segment']}: "
                     f"root {f['root']}, services {', '.join(f['services'])}"
                     + (f", changes {', '.join(f['candidate_changes'])}"
                        if f["candidate_changes"] else ""))
        for s in f["first_signals"]:
            lines.append(f"      {s}")
    lines.append(f"RCA misses at top-1 ({len(d['rca_misses'])}):")
    for m in d["rca_misses"]:
        where = (f"incident {m['incident'][:10]} (root {m['incident_root']}, opened "
                 f"{(m['opened'] - m['onset']) / 60:+.0f} min from onset)"
                 if m["incident"] and m["opened"] is not None else "no RCA")
        lines.append(f"  {m['scenario']}: truth {m['truth']}; {where}")
        if m["hypotheses"]:
            lines.append(f"      ranked: {'; '.join(m['hypotheses'])}")
        for s in m["first_signals"][:5]:
            lines.append(f"      {s}")
    return "\n".join(lines)

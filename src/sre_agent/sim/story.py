"""What happened in one scenario, told from the events the pipeline emitted.

Used by ``sre-agent demo``: the incident, its RCA, the action plan and its
approval state, what was executed and what it did to the platform, and the
audit trail — all read back from the topics (a :class:`RunRecord`).

Examples
--------
>>> from .truth import GroundTruth
>>> gt = GroundTruth("x", "Bad deploy", start=3600.0, end=None, window_start=0.0,
...                  window_end=7200.0, impact_at=3600.0, root_service="api",
...                  cause_type="bad_deploy", affected=("api",), expected_actions=("rollout_undo",))
>>> rec = RunRecord(truths=[gt], observations=[], run_start=0.0, run_end=7200.0,
...                 scored_from=0.0, clean=[])
>>> print(tell(rec, gt, {"detected": False}).splitlines()[-1])
  no incident was raised for this fault
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .scorecard import RunRecord, related_incidents, when
from .truth import GroundTruth

__all__ = ["tell"]


def _hm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def _rel(t: float, ref: float) -> str:
    d = t - ref
    return f"{'+' if d >= 0 else '-'}{abs(d) / 60:.0f}m"


def _latest(rec: RunRecord, topic: str, key: str, value: str, until: float) -> list[Any]:
    return [o for o in rec.observations if o.topic == topic and o.payload.get(key) == value
            and when(rec, o) <= until]


def tell(rec: RunRecord, gt: GroundTruth, scored: dict[str, Any], audit_lines: int = 14) -> str:
    """A few dozen lines about scenario ``gt`` (``scored``: its scorecard row)."""
    out = [f"== {gt.title} ==",
           f"  truth: {gt.cause_type or 'no fault'}"
           + (f" in {gt.root_service} from {_hm(gt.start)} UTC; correct fix: "
              f"{' or '.join(gt.expected_actions)}" if gt.fault else "")
           + (" (protected: never automatic)" if gt.protected else "")]
    ids = related_incidents(rec, gt)
    if not ids:
        out.append("  no incident was raised for this fault" if gt.fault
                   else "  no incident raised: the noise was absorbed")
        return "\n".join(out)
    iid = ids[0]
    revs = _latest(rec, "incidents", "incident_id", iid, gt.window_end + 600)
    inc = revs[-1].payload
    opened = when(rec, revs[0], "opened_at")
    kinds: dict[str, int] = {}
    for sig in inc.get("signals") or []:
        kinds[sig.get("kind", "?")] = kinds.get(sig.get("kind", "?"), 0) + 1
    if opened >= gt.start:
        age = f"opened {_hm(opened)} ({_rel(opened, gt.start)} from onset)"
    else:  # an incident already open took this fault's signals in
        first = min((when(rec, o) for o in revs if when(rec, o) >= gt.window_start),
                    default=opened)
        age = f"opened earlier ({_hm(opened)}), took this fault in at {_hm(first)}"
    out += [f"  incident {iid[:12]}  {age}"
            f"  {inc.get('severity', '')}  status {inc.get('status')}  rev {inc.get('revision')}",
            f"    {inc.get('title', '')[:110]}",
            f"    services {', '.join(inc.get('services') or [])};  signals "
            + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))]
    if len(ids) > 1:
        out.append(f"    (+{len(ids) - 1} more incident(s) about this fault)")
    rcas = [o for o in _latest(rec, "rca-results", "incident_id", iid, gt.window_end + 600)
            if when(rec, o) >= gt.start]
    if rcas:
        r = rcas[0].payload
        out.append(f"  RCA at {_hm(when(rec, rcas[0]))} ({r.get('method')}, "
                   f"{r.get('llm_tokens', 0)} LLM tokens)"
                   f"  -> top-1 {'RIGHT' if scored.get('rca_top1') else 'wrong'}")
        for n, h in enumerate((r.get("hypotheses") or [])[:3], 1):
            out.append(f"    {n}. {h.get('cause_type')} @ {h.get('service')}  "
                       f"conf {h.get('confidence', 0):.2f}  {str(h.get('summary', ''))[:70]}")
            for ev in (h.get("evidence") or [])[:2]:
                out.append(f"         - {ev.get('kind')}: {str(ev.get('summary', ''))[:90]}")
    else:
        out.append("  no RCA result")
    plans = sorted((o for o in rec.observations if o.topic == "action-plans"
                    and o.payload.get("incident_id") in ids
                    and gt.start <= when(rec, o) <= gt.window_end + 600),
                   key=lambda o: when(rec, o))
    plan_ids = []
    for o in plans[:3]:
        p = o.payload
        plan_ids.append(p.get("plan_id"))
        if p.get("incident_id") != iid:
            out.append(f"  (for incident {str(p.get('incident_id'))[:12]})")
        steps = ", ".join(f"{s.get('action')} {s.get('target', {}).get('kind')}/"
                          f"{s.get('target', {}).get('name')}" for s in p.get("steps") or [])
        out.append(f"  plan at {_hm(when(rec, o))}: {steps or '(no steps)'}  risk "
                   f"{p.get('risk_score', 0):.2f} {p.get('risk_tier')} -> {p.get('policy')}"
                   f"  status {p.get('status')}")
        if p.get("policy_reason"):
            out.append(f"    why: {str(p['policy_reason'])[:110]}")
        votes = [a.payload for a in rec.observations if a.topic == "approvals"
                 and a.payload.get("plan_id") == p.get("plan_id")]
        if p.get("policy") == "BLOCKED":
            out.append("    approval: BLOCKED - diagnosis only, a human acts outside the agent")
        elif votes:
            out.append("    approval: " + ", ".join(f"{v['decision']} by {v['user']} ({v['role']})"
                                                    for v in votes) + " (simulated on-call)")
        elif p.get("policy") == "AUTO":
            out.append("    approval: none needed (AUTO, low risk)")
        else:
            out.append("    approval: waiting")
    if not plans:
        out.append("  no action plan")
    for o in rec.outcomes:
        if o.get("plan_id") not in plan_ids or not gt.start <= o["time"] <= gt.window_end:
            continue
        if o["effect"] == "refused":
            out.append(f"  executor held back {o['action']} at {_hm(o['time'])}: "
                       f"{str(o.get('verdict'))[:90]}")
        else:
            out.append(f"  executed {o['action']} on {', '.join(o['targets'])} at "
                       f"{_hm(o['time'])} -> platform: {o['effect']}")
    if scored.get("remediated") is not None:
        out.append(f"  healed: {'yes' if scored['remediated'] else 'no'}"
                   + (f", MTTR {scored['mttr_seconds'] / 60:.0f} min"
                      if scored.get("mttr_seconds") is not None else ""))
    subjects = {iid, *plan_ids, *(o.get("action_id") for o in rec.outcomes
                                  if o.get("plan_id") in plan_ids),
                *(f"{p}-s{i}" for p in plan_ids for i in range(3))}
    trail = [o for o in rec.observations if o.topic == "audit"
             and o.payload.get("subject") in subjects
             and gt.window_start <= o.received <= gt.window_end + 600]
    out.append(f"  audit trail ({len(trail)} records):")
    for o in trail[:audit_lines]:
        a = o.payload
        out.append(f"    {_hm(o.received)}  {str(a.get('actor'))[:16]:16} "
                   f"{str(a.get('action'))[:26]:26} {str(a.get('subject'))[:24]}")
    if len(trail) > audit_lines:
        out.append(f"    ... {len(trail) - audit_lines} more")
    return "\n".join(out)

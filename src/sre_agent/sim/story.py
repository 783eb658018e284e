"""What happened in one scenario, told from the events the pipeline emitted.

Used by ``sre-agent demo``: the incident and when it resolved, its RCA, each
action plan once with its true state (votes, the sre-actions they authorised,
the executor's verdict, what the platform did), who was notified, and the audit
trail — all read back from the topics (a :class:`RunRecord`) and the on-call's
mailbox. :func:`incident_ledger` lists every incident of the run, the warm-up
history's included, with the fault it belongs to (or none).

Every time is UTC and sample time; durations are never negative.

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
>>> _ago(30.0), _ago(-400.0), _ago(5400.0), _ago(9000.0)
('30 s', '0 s', '90 min', '2 h 30 min')
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .scorecard import RunRecord, related_incidents, when
from .truth import GroundTruth

__all__ = ["incident_ledger", "tell"]


def _hm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def _ago(seconds: float) -> str:
    """A duration in words, never negative."""
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _rel(t: float, ref: float) -> str:
    d = t - ref
    return f"{'+' if d >= 0 else '-'}{abs(d) / 60:.0f}m"


def _revisions(rec: RunRecord, iid: str) -> list[Any]:
    return [o for o in rec.observations if o.topic == "incidents"
            and o.payload.get("incident_id") == iid]


def _resolved_at(rec: RunRecord, iid: str) -> float | None:
    """When the incident's last revision resolved it (None: still open at the end)."""
    revs = _revisions(rec, iid)
    if not revs or revs[-1].payload.get("status") != "resolved":
        return None
    return when(rec, revs[-1], "resolved_at")


def _wrap(first: str, text: Any, indent: int, width: int = 100) -> list[str]:
    """``first`` + ``text`` on lines of ``width``, continued ``indent`` deep; never cut.

    >>> _wrap("  why: ", "a " * 8, 6, width=14)
    ['  why: a a a a', '      a a a a']
    """
    body = " ".join(str(text or "").split())
    return textwrap.wrap(body, width=width, initial_indent=first,
                         subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False) or [first.rstrip()]


def _plans(rec: RunRecord, ids: Sequence[str], lo: float, hi: float) -> list[tuple[float, dict[str, Any]]]:
    """Each plan once (its latest revision), with the time it was first seen."""
    first: dict[str, float] = {}
    latest: dict[str, dict[str, Any]] = {}
    for o in rec.observations:
        p = o.payload
        if o.topic != "action-plans" or p.get("incident_id") not in ids \
                or not lo <= when(rec, o) <= hi:
            continue
        pid = str(p.get("plan_id"))
        first.setdefault(pid, when(rec, o))
        latest[pid] = p
    return sorted(((first[k], latest[k]) for k in latest), key=lambda x: x[0])


def _plan_lines(rec: RunRecord, t: float, p: dict[str, Any], iid: str) -> list[str]:
    pid = p.get("plan_id")
    steps = ", ".join(f"{s.get('action')} {s.get('target', {}).get('kind')}/"
                      f"{s.get('target', {}).get('name')}" for s in p.get("steps") or [])
    out = []
    if p.get("incident_id") != iid:
        out.append(f"  (plan of incident {p.get('incident_id')})")
    out += _wrap(f"  plan {pid} at {_hm(t)}: ", f"{steps or '(no steps)'}; risk "
                 f"{p.get('risk_score', 0):.2f} {p.get('risk_tier')} -> {p.get('policy')}", 4)
    if p.get("policy_reason"):
        out += _wrap("    why: ", p["policy_reason"], 9)
    votes = [a.payload for a in rec.observations if a.topic == "approvals"
             and a.payload.get("plan_id") == pid]
    if p.get("policy") == "BLOCKED":
        out.append("    BLOCKED: diagnosis only; the agent will not act, a human acts outside it")
    elif votes:
        out.append("    approved: " + ", ".join(
            f"{v['decision']} by {v['user']} ({v['role']}) at {_hm(_when_vote(v, t))}"
            for v in votes) + " (simulated on-call)")
    elif p.get("policy") == "AUTO":
        out.append("    no approval needed (AUTO: low risk, auto-remediation on)")
    else:
        out.append("    waiting for approval (none came)")
    acts = [o for o in rec.observations if o.topic == "sre-actions"
            and o.payload.get("plan_id") == pid]
    results = {str(o.payload.get("action_id")): o.payload for o in rec.observations
               if o.topic == "action-results" and o.payload.get("plan_id") == pid}
    outcomes = {o.get("action_id"): o for o in rec.outcomes if o.get("plan_id") == pid}
    for o in acts:
        a = o.payload
        step = a.get("step") or {}
        tgt = step.get("target") or {}
        out.append(f"    sre-action {step.get('action')} {tgt.get('kind')}/{tgt.get('name')} at "
                   f"{_hm(when(rec, o))} ({'dry-run' if a.get('dry_run') else 'live'}"
                   f"{', approved by ' + ', '.join(a.get('approved_by') or []) if a.get('approved_by') else ''})")
        r = results.get(str(a.get("action_id")))
        if r is not None:
            out += _wrap(f"      executor: {r.get('status')}: ", r.get("detail"), 8)
        oc = outcomes.get(a.get("action_id"))
        if oc is None:
            out.append("      platform: not applied")
        elif oc["effect"] == "refused":
            out.append(f"      platform: not applied (the executor held it back at {_hm(oc['time'])})")
        else:
            out.append(f"      platform: applied at {_hm(oc['time'])} -> {oc['effect']}")
    return out


def _when_vote(v: dict[str, Any], default: float) -> float:
    try:
        return datetime.fromisoformat(str(v.get("time"))).timestamp()
    except ValueError:
        return default


def tell(rec: RunRecord, gt: GroundTruth, scored: dict[str, Any], mails: Sequence[Any] = (),
         audit_lines: int = 12) -> str:
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
    hi = gt.window_end + 600
    revs = [o for o in _revisions(rec, iid) if when(rec, o) <= hi] or _revisions(rec, iid)[:1]
    inc = revs[-1].payload
    opened = when(rec, revs[0], "opened_at")
    kinds: dict[str, int] = {}
    for sig in inc.get("signals") or []:
        kinds[sig.get("kind", "?")] = kinds.get(sig.get("kind", "?"), 0) + 1
    if opened >= gt.start:
        age = f"opened {_hm(opened)} ({_ago(opened - gt.start)} after onset)"
    else:  # an incident already open took this fault's signals in
        first = min((when(rec, o) for o in revs if when(rec, o) >= gt.window_start),
                    default=opened)
        age = f"opened earlier ({_hm(opened)}), took this fault in at {_hm(first)}"
    done = _resolved_at(rec, iid)
    state = (f"resolved {_hm(done)} (open {_ago(done - opened)})" if done is not None
             else "still open at the end of the run")
    out += [f"  incident {iid}  {age}",
            f"    severity {inc.get('severity', '')}; {state}"]
    out += _wrap("    ", inc.get("title"), 6)
    out.append(f"    services {', '.join(inc.get('services') or [])};  signals "
               + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    if inc.get("severity_reasons"):
        out += _wrap("    severity because: ", "; ".join(inc["severity_reasons"]), 6)
    if len(ids) > 1:
        out.append(f"    (+{len(ids) - 1} more incident(s) about this fault: "
                   f"{', '.join(ids[1:4])})")
    rcas = [o for o in rec.observations if o.topic == "rca-results"
            and o.payload.get("incident_id") == iid and gt.start <= when(rec, o) <= hi]
    if rcas:
        r = rcas[0].payload
        out.append(f"  RCA at {_hm(when(rec, rcas[0]))} ({r.get('method')}, "
                   f"{r.get('llm_tokens', 0)} LLM tokens)"
                   f"  -> top-1 {'RIGHT' if scored.get('rca_top1') else 'wrong'}"
                   + (f" ({len(rcas) - 1} refinement(s) later)" if len(rcas) > 1 else ""))
        for n, h in enumerate((r.get("hypotheses") or [])[:3], 1):
            out += _wrap(f"    {n}. {h.get('cause_type')} @ {h.get('service')}  "
                         f"conf {h.get('confidence', 0):.2f}  ", h.get("summary"), 9)
            for ev in (h.get("evidence") or [])[:2]:
                out += _wrap(f"         - {ev.get('kind')}: ", ev.get("summary"), 11)
    else:
        out.append("  no RCA result")
    plans = _plans(rec, ids, gt.start, hi)
    for t, p in plans[:3]:
        out += _plan_lines(rec, t, p, iid)
    if len(plans) > 3:
        out.append(f"  ... {len(plans) - 3} more plan(s)")
    if not plans:
        out.append("  no action plan")
    if scored.get("remediated") is not None:
        out.append(f"  healed: {'yes' if scored['remediated'] else 'no'}"
                   + (f", MTTR {_ago(scored['mttr_seconds'])}"
                      if scored.get("mttr_seconds") is not None else ""))
    told = [m for m in mails if m.incident_id in ids]
    if told:
        for m in told[:4]:
            out += _wrap(f"  notified {', '.join(m.to)} by e-mail at {_hm(m.received)}: ",
                         m.subject, 4)
    elif mails or gt.fault:
        out.append("  notified: nobody (no notification sink received a message)")
    plan_ids = [p.get("plan_id") for _, p in plans]
    subjects = {*ids, *plan_ids, *(o.get("action_id") for o in rec.outcomes
                                   if o.get("plan_id") in plan_ids),
                *(f"{p}-s{i}" for p in plan_ids for i in range(3))}
    trail = [o for o in rec.observations if o.topic == "audit"
             and o.payload.get("subject") in subjects
             and gt.window_start <= o.received <= hi]
    out.append(f"  audit trail ({len(trail)} records):")
    for o in trail[:audit_lines]:
        a = o.payload
        out.append(f"    {_hm(o.received)}  {str(a.get('actor')):16} "
                   f"{str(a.get('action')):26} {a.get('subject')}")
    if len(trail) > audit_lines:
        out.append(f"    ... {len(trail) - audit_lines} more")
    return "\n".join(out)


def incident_ledger(rec: RunRecord, mails: Sequence[Any] = ()) -> str:
    """Every incident of the run, first seen first: when, what, which fault (or none)."""
    from .scorecard import _incidents, _related_times

    incs = sorted(_incidents(rec).values(), key=lambda i: i.opened)
    owner: dict[str, str] = {}
    for gt in rec.truths:
        if not gt.fault:
            continue
        for i in incs:
            if i.id not in owner and _related_times(gt, i):
                owner[i.id] = gt.scenario
    warm = [i for i in incs if i.opened < rec.scored_from]
    out = [f"every incident the agent raised ({len(incs)}; {len(warm)} during the warm-up "
           f"history, while baselines were still learning):"]
    for i in incs:
        revs = _revisions(rec, i.id)
        last = revs[-1].payload if revs else {}
        done = _resolved_at(rec, i.id)
        plans = {o.payload.get("plan_id"): o.payload.get("policy") for o in rec.observations
                 if o.topic == "action-plans" and o.payload.get("incident_id") == i.id}
        applied = [o for o in rec.outcomes if o.get("incident_id") == i.id
                   and o["effect"] != "refused"]
        where = (f"fault {owner[i.id]}" if i.id in owner else
                 "warm-up, no fault" if i.opened < rec.scored_from else "no fault: false alarm")
        what = []
        if plans:
            what.append("plans " + "/".join(sorted({str(v) for v in plans.values()})))
        if applied:
            what.append("applied " + ", ".join(f"{o['action']}->{o['effect']}" for o in applied[:3]))
        if any(m.incident_id == i.id for m in mails):
            what.append("mailed")
        out.append(f"  {_hm(i.opened)}-{_hm(done) if done is not None else 'open '}  "
                   f"{i.id}  {last.get('severity', ''):8} {where}"
                   + (f"; {'; '.join(what)}" if what else ""))
        out += _wrap("      ", last.get("title"), 6)
    return "\n".join(out)

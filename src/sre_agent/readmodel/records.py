"""What the read model keeps per incident and per plan, and their API views.

An :class:`IncidentRecord` gathers everything the loop said about one
incident, whatever order the topics delivered it in: revisions, the latest RCA,
plans with their votes and results, and feedback.

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.schemas import Incident
>>> t = datetime(2025, 11, 13, tzinfo=UTC)
>>> rec = IncidentRecord("inc-1")
>>> rec.add_incident(Incident(incident_id="inc-1", title="api latency", fingerprint="f",
...                           opened_at=t, time=t, services=["api"]))
True
>>> summary_of(rec).status, [e.kind for e in timeline(rec)]
('open', ['incident'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..schemas import (
    ActionPlan,
    ActionResult,
    Approval,
    AuditRecord,
    Feedback,
    Incident,
    RcaResult,
    TriageEvent,
)
from .views import (
    CauseView,
    IncidentDetail,
    IncidentSummary,
    LinkView,
    PlanView,
    TimelineEntry,
)

__all__ = ["IncidentRecord", "PlanRecord", "detail_of", "links_of", "plan_state", "summary_of",
           "timeline"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: per-incident bounds (revisions, RCA runs, feedback, signals on the timeline)
MAX_HISTORY = 100
MAX_SIGNALS_ON_TIMELINE = 20


#: audit actions of the approval manager that decide a plan's state
DECISIONS = {"plan.approved": "approved", "plan.rejected": "rejected", "plan.expired": "expired",
             "plan.blocked": "blocked", "plan.auto": "auto", "plan.completed": "completed",
             "plan.failed": "failed", "plan.refused": "refused", "plan.superseded": "superseded"}


@dataclass
class PlanRecord:
    plan: ActionPlan
    approvals: list[Approval] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)
    #: the approval manager's decisions, from the audit trail: (time, state, reason)
    decisions: list[tuple[datetime, str, str]] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return plan_state(self)[0] == "pending"

    def decide(self, rec: AuditRecord) -> bool:
        """Fold an audit record of this plan in; True when it decided something."""
        state = DECISIONS.get(rec.action)
        if state is None:
            return False
        d = rec.details
        by = d.get("by") or ", ".join(d.get("approvers") or [])
        reason = str(d.get("reason") or (f"by {by}" if by else ""))[:500]
        self.decisions.append((rec.time, state, reason))
        self.decisions.sort(key=lambda x: x[0])
        del self.decisions[:-20]
        return True

    def view(self) -> PlanView:
        state, reason, dry = plan_state(self)
        return PlanView(plan=self.plan, approvals=list(self.approvals), results=list(self.results),
                        state=state, reason=reason, dry_run=dry)


def plan_state(pr: PlanRecord) -> tuple[str, str, bool | None]:
    """The plan's true state, why, and whether its actions ran dry: results first
    (what happened), then the approval manager's last decision, then the plan itself.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2025, 11, 13, tzinfo=UTC)
    >>> pr = PlanRecord(ActionPlan(plan_id="p", incident_id="i", risk_score=0.5, risk_tier="MEDIUM",
    ...                            policy="ONE_APPROVAL", time=t))
    >>> plan_state(pr)
    ('pending', 'ONE_APPROVAL', None)
    >>> pr.decide(AuditRecord(actor="approval-manager", action="plan.approved", subject="p",
    ...                       details={"approvers": ["alice"], "by": "alice"}, time=t))
    True
    >>> plan_state(pr)[:2]
    ('approved', 'by alice')
    >>> pr.results.append(ActionResult(action_id="a", plan_id="p", incident_id="i", status="failed",
    ...                                detail="deployment not found", dry_run=False, time=t))
    >>> plan_state(pr)
    ('failed', 'step 1 failed: deployment not found', False)
    """
    p = pr.plan
    if pr.results:
        res = sorted(pr.results, key=lambda r: (r.time, r.step_index))
        dry = all(r.dry_run for r in res)
        bad = [r for r in res if r.status in ("failed", "rolled_back", "blocked", "rate_limited")]
        if bad:
            r = bad[-1]
            what = r.action or (p.steps[r.step_index].action if r.step_index < len(p.steps)
                                else "")
            label = f"step {r.step_index + 1}" + (f" ({what})" if what else "")
            return ("failed" if r.status in ("failed", "rolled_back") else r.status,
                    f"{label} {r.status.replace('_', ' ')}" + (f": {r.detail}" if r.detail else ""),
                    dry)
        last = res[-1]
        done = len({r.step_index for r in res}) >= max(1, len(p.steps))
        state = ("dry-run" if dry else "executed") if done else "executing"
        detail = f"{len({r.step_index for r in res})}/{max(1, len(p.steps))} steps"
        return state, detail + (f": {last.detail}" if last.detail else ""), dry
    if pr.decisions:
        _, state, reason = pr.decisions[-1]
        return state, reason or (p.policy_reason or p.policy), None
    return p.status, p.policy_reason or p.policy, None


@dataclass
class IncidentRecord:
    incident_id: str
    incident: Incident | None = None
    #: (time, status, revision, title) of every revision seen
    revisions: list[tuple[datetime, str, int, str]] = field(default_factory=list)
    rca: RcaResult | None = None
    #: (time, summary, event id) of every RCA run
    rca_runs: list[tuple[datetime, str, str]] = field(default_factory=list)
    plans: dict[str, PlanRecord] = field(default_factory=dict)
    feedback: list[Feedback] = field(default_factory=list)
    updated: datetime = EPOCH
    #: hops whose other end has not arrived yet (topics interleave in any order):
    #: (incident revision, RCA time) and plan times seen before any RCA
    waiting_rca: list[tuple[int, datetime]] = field(default_factory=list)
    waiting_plans: list[datetime] = field(default_factory=list)
    #: on-call acts (ack, assign, snooze, resolve, comment), oldest first
    triage: list[TriageEvent] = field(default_factory=list)

    def add_triage(self, ev: TriageEvent) -> None:
        if any(t.event_id == ev.event_id for t in self.triage):
            return
        self.triage.append(ev)
        self.triage.sort(key=lambda t: t.time)
        del self.triage[:-MAX_HISTORY]
        self.touch(ev.time)

    def triage_state(self) -> dict[str, object]:
        """acked_by/at, assignee, snoozed_until from the acts so far."""
        out: dict[str, object] = {"acked_by": None, "acked_at": None, "assignee": None,
                                  "snoozed_until": None}
        for t in self.triage:
            if t.action == "ack":
                out["acked_by"], out["acked_at"] = t.actor, t.time
            elif t.action == "unack":
                out["acked_by"], out["acked_at"] = None, None
            elif t.action == "assign":
                out["assignee"] = t.assignee or None
            elif t.action == "snooze" and t.minutes:
                out["snoozed_until"] = t.time + timedelta(minutes=t.minutes)
        acked = out["acked_at"]
        if isinstance(acked, datetime) and self._reopened_after(acked):
            out["acked_by"], out["acked_at"] = None, None  # a reopened incident needs a new ack
        return out

    def _reopened_after(self, t: datetime) -> bool:
        """Whether a resolved revision followed by an open one happened after ``t``."""
        seen_resolved = False
        for when, st, _, _ in sorted(self.revisions):
            if when <= t:
                continue
            if st == "resolved":
                seen_resolved = True
            elif seen_resolved:
                return True
        return False

    def touch(self, t: datetime) -> None:
        self.updated = max(self.updated, t)

    def add_incident(self, inc: Incident) -> bool:
        """Record a revision; the latest (highest revision, then time) wins."""
        self.revisions.append((inc.time, inc.status, inc.revision, inc.title))
        del self.revisions[:-MAX_HISTORY]
        self.touch(inc.time)
        cur = self.incident
        if cur is None or (inc.revision, inc.time) >= (cur.revision, cur.time):
            self.incident = inc
            return True
        return False

    def add_rca(self, rca: RcaResult) -> None:
        top = rca.hypotheses[0] if rca.hypotheses else None
        text = (
            f"{top.cause_type} on {top.service} ({top.confidence:.0%}): {top.summary}"
            if top
            else "no hypothesis"
        )
        self.rca_runs.append((rca.time, text, rca.event_id))
        del self.rca_runs[:-MAX_HISTORY]
        if self.rca is None or rca.time >= self.rca.time:
            self.rca = rca
        self.touch(rca.time)

    def revision_time(self, revision: int) -> datetime | None:
        for t, _, rev, _ in self.revisions:
            if rev == revision:
                return t
        return None

    @property
    def is_open(self) -> bool:
        return self.incident is not None and self.incident.status != "resolved"


def summary_of(rec: IncidentRecord) -> IncidentSummary:
    inc, rca = rec.incident, rec.rca
    top = rca.hypotheses[0] if rca and rca.hypotheses else None
    tri = rec.triage_state()
    duration = ((inc.resolved_at - inc.opened_at).total_seconds()
                if inc is not None and inc.resolved_at is not None else None)
    return IncidentSummary(
        incident_id=rec.incident_id,
        status=inc.status if inc else "unknown",
        title=inc.title if inc else f"incident {rec.incident_id}",
        severity=inc.severity if inc else (rca.severity if rca else "warning"),
        services=list(inc.services) if inc else (list(rca.services) if rca else []),
        root_service=inc.root_service if inc else None,
        opened_at=inc.opened_at if inc else None,
        resolved_at=inc.resolved_at if inc else None,
        updated_at=rec.updated,
        revision=inc.revision if inc else 0,
        signal_count=(inc.signal_count or len(inc.signals)) if inc else 0,
        top_cause=CauseView(
            cause_type=top.cause_type, service=top.service, confidence=top.confidence
        )
        if top
        else None,
        plans=len(rec.plans),
        pending_plans=sum(1 for p in rec.plans.values() if p.pending),
        acked_by=tri["acked_by"],  # type: ignore[arg-type]
        acked_at=tri["acked_at"],  # type: ignore[arg-type]
        assignee=tri["assignee"],  # type: ignore[arg-type]
        snoozed_until=tri["snoozed_until"],  # type: ignore[arg-type]
        resolved_by=inc.resolved_by if inc else None,
        duration_seconds=duration,
        impact=inc.impact if inc else None,
    )


def timeline(rec: IncidentRecord) -> list[TimelineEntry]:
    """Everything that happened to the incident, oldest first."""
    out: list[TimelineEntry] = []
    for t, status, rev, title in rec.revisions:
        out.append(
            TimelineEntry(
                time=t,
                kind="incident",
                summary=f"{status} (rev {rev}): {title}",
                ref=rec.incident_id,
            )
        )
    if rec.incident is not None:
        for s in rec.incident.signals[-MAX_SIGNALS_ON_TIMELINE:]:
            out.append(
                TimelineEntry(
                    time=s.time,
                    kind="signal",
                    ref=s.ref,
                    summary=f"{s.kind} {s.service}: {s.summary}".strip(),
                )
            )
    for t, text, eid in rec.rca_runs:
        out.append(TimelineEntry(time=t, kind="rca", summary=text, ref=eid))
    for pid, pr in rec.plans.items():
        p = pr.plan
        out.append(
            TimelineEntry(
                time=p.time,
                kind="plan",
                ref=pid,
                summary=(
                    f"{p.risk_tier} risk {p.risk_score:.2f}, policy {p.policy}, {p.status}: "
                    f"{p.summary or ', '.join(s.action for s in p.steps)}"
                ),
            )
        )
        for a in pr.approvals:
            out.append(
                TimelineEntry(
                    time=a.time,
                    kind="approval",
                    ref=pid,
                    summary=(
                        f"{a.decision} by {a.user} ({a.role}, {a.source})"
                        + (f": {a.comment}" if a.comment else "")
                    ),
                )
            )
        for r in pr.results:
            out.append(
                TimelineEntry(
                    time=r.time,
                    kind="action",
                    ref=r.action_id,
                    summary=(
                        f"{r.status}{' (dry-run)' if r.dry_run else ''}"
                        + (f": {r.detail}" if r.detail else "")
                    ),
                )
            )
    for p_rec in rec.plans.values():
        for t, state, reason in p_rec.decisions:
            out.append(TimelineEntry(time=t, kind="plan", ref=p_rec.plan.plan_id,
                                     summary=f"plan {state}" + (f": {reason}" if reason else "")))
    for tr in rec.triage:
        what = {"ack": "acknowledged", "unack": "unacknowledged", "assign": "assigned to "
                + (tr.assignee or "nobody"), "snooze": f"snoozed {tr.minutes or 0:g} min",
                "resolve": "resolved by hand", "comment": "commented"}[tr.action]
        out.append(TimelineEntry(time=tr.time, kind="triage", ref=tr.event_id,
                                 summary=f"{what} by {tr.actor}"
                                 + (f": {tr.comment}" if tr.comment else "")))
    for f in rec.feedback:
        what = f.rating or f.action_outcome or f.confirmed_cause or "-"
        out.append(
            TimelineEntry(
                time=f.time,
                kind="feedback",
                ref=f.event_id,
                summary=(f"{f.kind} {what} by {f.user}" + (f": {f.comment}" if f.comment else "")),
            )
        )
    out.sort(key=lambda e: e.time)
    return out


def links_of(rec: IncidentRecord) -> list[LinkView]:
    """Runbook, alert source and dashboard links the incident's signals carry.

    Only http(s) URLs (they were checked when the alert came in); one per URL.
    """
    out: list[LinkView] = []
    seen: set[str] = set()
    kinds = (("runbook_url", "runbook"), ("generator_url", "source"), ("dashboard_url", "dashboard"))
    for s in rec.incident.signals if rec.incident is not None else []:
        for key, kind in kinds:
            url = s.attrs.get(key)
            if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in seen:
                seen.add(url)
                title = f"{kind}: {s.metric or s.kind}" + (f" ({s.service})" if s.service else "")
                out.append(LinkView(kind=kind, title=title, url=url))  # type: ignore[arg-type]
    return out[:20]


def detail_of(rec: IncidentRecord, series: list[str]) -> IncidentDetail:
    runbooks: list[str] = []
    if rec.rca is not None:
        runbooks = [c.id for c in rec.rca.similar if c.kind == "runbook"][:5]
    return IncidentDetail(
        summary=summary_of(rec),
        incident=rec.incident,
        rca=rec.rca,
        plans=[p.view() for p in rec.plans.values()],
        feedback=list(rec.feedback),
        series=series,
        timeline=timeline(rec),
        triage=list(rec.triage),
        links=links_of(rec),
        runbooks=runbooks,
    )

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
from datetime import UTC, datetime

from ..schemas import ActionPlan, ActionResult, Approval, Feedback, Incident, RcaResult
from .views import CauseView, IncidentDetail, IncidentSummary, PlanView, TimelineEntry

__all__ = ["IncidentRecord", "PlanRecord", "detail_of", "summary_of", "timeline"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: per-incident bounds (revisions, RCA runs, feedback, signals on the timeline)
MAX_HISTORY = 100
MAX_SIGNALS_ON_TIMELINE = 20


@dataclass
class PlanRecord:
    plan: ActionPlan
    approvals: list[Approval] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.plan.status == "pending" and not self.results

    def view(self) -> PlanView:
        return PlanView(plan=self.plan, approvals=list(self.approvals), results=list(self.results))


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


def detail_of(rec: IncidentRecord, series: list[str]) -> IncidentDetail:
    return IncidentDetail(
        summary=summary_of(rec),
        incident=rec.incident,
        rca=rec.rca,
        plans=[p.view() for p in rec.plans.values()],
        feedback=list(rec.feedback),
        series=series,
        timeline=timeline(rec),
    )

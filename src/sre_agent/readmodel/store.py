"""The read model: a bounded in-memory projection of the loop's output topics.

The API and the console read from here (CQRS): events of ``anomalies``,
``predictions``, ``incidents``, ``rca-results``, ``action-plans``,
``approvals``, ``action-results``, ``audit`` and ``feedback`` are folded in
with :meth:`ReadModel.update`, in any order across topics. Every collection is
bounded; the least recently updated entries go first. Pure: no I/O, no clock
(queries take ``since`` from the caller).

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.schemas import ActionPlan, Incident, encode
>>> t = datetime(2025, 11, 13, tzinfo=UTC)
>>> rm = ReadModel(max_items=10)
>>> plan = ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.5, risk_tier="MEDIUM",
...                   policy="ONE_APPROVAL", time=t)
>>> rm.update(plan)  # plans may arrive before their incident
>>> rm.update_raw("incidents", encode(Incident(incident_id="i1", title="api down",
...               fingerprint="f", opened_at=t, time=t))).incident_id
'i1'
>>> s = rm.incidents()[0]
>>> (s.incident_id, s.status, s.plans, s.pending_plans)
('i1', 'open', 1, 1)
>>> rm.update_raw("incidents", b"{oops") is None, rm.rejected["incidents"]
(True, 1)
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from ..schemas import (
    TOPIC_MODELS,
    ActionPlan,
    ActionResult,
    Anomaly,
    Approval,
    AuditRecord,
    DecodeError,
    Event,
    Feedback,
    Incident,
    Prediction,
    RcaResult,
    Silence,
    TriageEvent,
    decode,
)
from ..processors.silences import SilenceBook
from .latency import LatencyHistograms
from .records import DECISIONS, IncidentRecord, PlanRecord, detail_of, summary_of
from .series import SeriesBuffers
from .views import AnomalyView, IncidentDetail, IncidentSummary

__all__ = ["TOPICS", "ReadModel"]

log = logging.getLogger(__name__)

#: topics the read model projects
TOPICS: tuple[str, ...] = (
    "anomalies",
    "predictions",
    "incidents",
    "rca-results",
    "action-plans",
    "approvals",
    "action-results",
    "audit",
    "feedback",
    "incident-triage",
    "silences",
)


V = TypeVar("V")


def _bounded_put(d: OrderedDict[str, V], key: str, value: V, limit: int) -> None:
    d[key] = value
    d.move_to_end(key)
    while len(d) > limit:
        d.popitem(last=False)


class ReadModel:
    """Bounded projection of the output topics, queried by the API views.

    Parameters
    ----------
    max_items
        Bound of each collection (incidents, anomalies, predictions, audit ...).
    max_series, max_points
        Bounds of the chart ring buffers (see :class:`SeriesBuffers`).
    """

    def __init__(self, max_items: int = 5000, max_series: int = 200, max_points: int = 720) -> None:
        self.max_items = max_items
        self.anomaly_views: OrderedDict[str, AnomalyView] = OrderedDict()
        self.prediction_views: OrderedDict[str, Prediction] = OrderedDict()
        self.records: OrderedDict[str, IncidentRecord] = OrderedDict()
        self._plan_index: dict[str, str] = {}
        #: votes/results/decisions whose plan was not seen yet, by plan id
        self._orphans: OrderedDict[str, list[Approval | ActionResult | AuditRecord]] = OrderedDict()
        #: run-time silences (the correlator of this worker matches signals against it)
        self.silences = SilenceBook()
        self.audit_log: deque[AuditRecord] = deque(maxlen=max_items)
        self.series = SeriesBuffers(max_series, max_points)
        self.events: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.actions_by_outcome: Counter[str] = Counter()
        self.llm_calls = 0
        self.llm_tokens = 0
        self.latency = LatencyHistograms()
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            Anomaly: self._anomaly,
            Prediction: self._prediction,
            Incident: self._incident,
            RcaResult: self._rca,
            ActionPlan: self._plan,
            Approval: self._approval,
            ActionResult: self._result,
            AuditRecord: self._audit,
            Feedback: self._feedback,
            TriageEvent: self._triage,
            Silence: self.silences.update,
        }

    # ------------------------------------------------------------------ input
    def update_raw(self, topic: str, data: bytes | None) -> Event | None:
        """Decode ``data`` as the model of ``topic`` and fold it in; None if invalid.

        Invalid events are only counted in :attr:`rejected`: the stage that
        consumes the topic for real routes them to its DLQ.
        """
        model = TOPIC_MODELS.get(topic)
        if model is None or model not in self._handlers:
            raise KeyError(f"topic {topic!r} is not projected by the read model")
        try:
            event = decode(model, data)  # type: ignore[arg-type]
        except DecodeError as exc:
            self.rejected[topic] += 1
            log.debug(
                "read model skips invalid %s event: %s", topic, exc.reason, extra={"topic": topic}
            )
            return None
        self.update(event)
        return event

    def update(self, event: Event) -> None:
        """Fold one decoded event in."""
        self.events[event.TOPIC] += 1
        self._handlers[type(event)](event)

    def _record(self, incident_id: str) -> IncidentRecord:
        rec = self.records.get(incident_id)
        if rec is None:
            rec = self.records[incident_id] = IncidentRecord(incident_id)
            while len(self.records) > self.max_items:
                _, old = self.records.popitem(last=False)
                for pid in old.plans:
                    self._plan_index.pop(pid, None)
        else:
            self.records.move_to_end(incident_id)
        return rec

    def _anomaly(self, a: Anomaly) -> None:
        cur = self.anomaly_views.get(a.anomaly_id)
        if a.status == "open" or cur is None:
            view = AnomalyView.model_validate(a.model_dump())
            if a.status == "resolved":
                view.resolved_at = a.time
        else:
            view = cur.model_copy(update={"status": "resolved", "resolved_at": a.time})
        _bounded_put(self.anomaly_views, a.anomaly_id, view, self.max_items)
        if a.kind == "metric":
            self.series.mark(
                a.series,
                a.metric,
                a.service,
                a.time.timestamp(),
                a.observed,
                a.expected,
                a.lower,
                a.upper,
                a.status,
                a.score,
                a.anomaly_id,
            )

    def _prediction(self, p: Prediction) -> None:
        _bounded_put(self.prediction_views, p.series, p, self.max_items)

    def _incident(self, inc: Incident) -> None:
        rec = self._record(inc.incident_id)
        first = not rec.revisions
        known = rec.revision_time(inc.revision) is not None
        rec.add_incident(inc)
        if first and inc.signals:
            self.latency.observe(
                "correlate", (inc.time - min(s.time for s in inc.signals)).total_seconds()
            )
        if not known and rec.waiting_rca:
            for rev, t in rec.waiting_rca:
                if rev == inc.revision:
                    self.latency.observe("rca", (t - inc.time).total_seconds())
            rec.waiting_rca = [w for w in rec.waiting_rca if w[0] != inc.revision]

    def _rca(self, rca: RcaResult) -> None:
        rec = self._record(rca.incident_id)
        t0 = rec.revision_time(rca.incident_revision)
        if t0 is not None:
            self.latency.observe("rca", (rca.time - t0).total_seconds())
        else:
            rec.waiting_rca = [*rec.waiting_rca[-19:], (rca.incident_revision, rca.time)]
        if rec.rca is None:
            for t in rec.waiting_plans:
                self.latency.observe("plan", (t - rca.time).total_seconds())
            rec.waiting_plans = []
        rec.add_rca(rca)
        if rca.method == "rules+llm":
            self.llm_calls += 1
        self.llm_tokens += rca.llm_tokens

    def _plan(self, plan: ActionPlan) -> None:
        rec = self._record(plan.incident_id)
        pr = rec.plans.get(plan.plan_id)
        if pr is None:
            pr = rec.plans[plan.plan_id] = PlanRecord(plan)
            if rec.rca is not None:
                self.latency.observe("plan", (plan.time - rec.rca.time).total_seconds())
            else:
                rec.waiting_plans = [*rec.waiting_plans[-19:], plan.time]
            for ev in self._orphans.pop(plan.plan_id, []):
                self._attach(pr, ev)
        elif plan.time >= pr.plan.time:
            pr.plan = plan
        self._plan_index[plan.plan_id] = plan.incident_id
        rec.touch(plan.time)

    def _plan_record(self, plan_id: str) -> PlanRecord | None:
        iid = self._plan_index.get(plan_id)
        rec = self.records.get(iid) if iid else None
        return rec.plans.get(plan_id) if rec else None

    def _attach(self, pr: PlanRecord, ev: Approval | ActionResult | AuditRecord) -> None:
        if isinstance(ev, AuditRecord):
            pr.decide(ev)
        elif isinstance(ev, Approval):
            pr.approvals.append(ev)
        else:
            pr.results.append(ev)
            self.latency.observe("execute", (ev.time - pr.plan.time).total_seconds())
        rec = self.records.get(pr.plan.incident_id)
        if rec is not None:
            rec.touch(ev.time)

    def _vote_or_result(self, ev: Approval | ActionResult | AuditRecord) -> None:
        plan_id = ev.subject if isinstance(ev, AuditRecord) else ev.plan_id
        pr = self._plan_record(plan_id)
        if pr is not None:
            self._attach(pr, ev)
            return
        pending = self._orphans.get(plan_id) or []
        pending.append(ev)
        _bounded_put(self._orphans, plan_id, pending[-50:], self.max_items)

    def _approval(self, a: Approval) -> None:
        self._vote_or_result(a)

    def _result(self, r: ActionResult) -> None:
        self.actions_by_outcome[r.status] += 1
        self._vote_or_result(r)

    def _audit(self, rec: AuditRecord) -> None:
        self.audit_log.append(rec)
        if rec.action in DECISIONS and rec.actor == "approval-manager":
            self._vote_or_result(rec)

    def _triage(self, ev: TriageEvent) -> None:
        self._record(ev.incident_id).add_triage(ev)

    def _feedback(self, fb: Feedback) -> None:
        rec = self._record(fb.incident_id)
        rec.feedback.append(fb)
        del rec.feedback[:-100]
        rec.touch(fb.time)

    # ---------------------------------------------------------------- queries
    def anomalies(
        self, since: datetime | None = None, service: str | None = None, status: str | None = None
    ) -> list[AnomalyView]:
        """Anomalies that started at or after ``since``, newest first."""
        out = [
            a
            for a in self.anomaly_views.values()
            if (since is None or a.time >= since)
            and (service is None or a.service == service)
            and (status is None or a.status == status)
        ]
        out.sort(key=lambda a: a.time, reverse=True)
        return out

    def predictions(
        self, since: datetime | None = None, service: str | None = None
    ) -> list[Prediction]:
        """Latest prediction per series, soonest breach first."""
        out = [
            p
            for p in self.prediction_views.values()
            if (since is None or p.time >= since) and (service is None or p.service == service)
        ]
        out.sort(key=lambda p: p.breach_at)
        return out

    def incidents(
        self, status: str | None = None, service: str | None = None, severity: str | None = None,
        text: str | None = None, since: datetime | None = None, until: datetime | None = None,
    ) -> list[IncidentSummary]:
        """Incident summaries, most recently updated first.

        ``status`` is ``open`` (open or updated), ``resolved`` or None for all;
        ``text`` matches the id, title, services and top cause (case-insensitive);
        ``since``/``until`` keep incidents active in that range (opened before
        ``until``, not resolved before ``since``).
        """
        out = []
        needle = text.lower() if text else None
        for rec in reversed(self.records.values()):
            if (status == "open" and not rec.is_open) or (status == "resolved" and rec.is_open):
                continue
            s = summary_of(rec)
            if service is not None and service not in s.services:
                continue
            if severity is not None and s.severity != severity:
                continue
            start = s.opened_at or s.updated_at
            if until is not None and start > until:
                continue
            if since is not None and (s.resolved_at or s.updated_at) < since and not rec.is_open:
                continue
            if needle is not None:
                hay = " ".join([s.incident_id, s.title, *s.services,
                                s.top_cause.cause_type if s.top_cause else "",
                                s.assignee or ""]).lower()
                if needle not in hay:
                    continue
            out.append(s)
        out.sort(key=lambda s: s.updated_at, reverse=True)
        return out

    def find_incident(self, ref: str) -> str | None:
        """Incident id from an id or a unique prefix (at least 4 characters)."""
        return self._find(ref, self.records.keys())

    def find_plan(self, ref: str) -> PlanRecord | None:
        pid = self._find(ref, self._plan_index.keys())
        return self._plan_record(pid) if pid else None

    @staticmethod
    def _find(ref: str, keys: Iterable[str]) -> str | None:
        ref = ref.strip()
        if not ref:
            return None
        if ref in keys:
            return ref
        if len(ref) < 4:
            return None
        hits = [k for k in keys if k.startswith(ref)]
        return hits[0] if len(hits) == 1 else None

    def incident(self, incident_id: str) -> IncidentDetail | None:
        rec = self.records.get(incident_id)
        if rec is None:
            return None
        return detail_of(rec, self.evidence_series(rec))

    def evidence_series(self, rec: IncidentRecord) -> list[str]:
        """The series that carry the incident's evidence, strongest first: its metric
        signals (by their own series id, or their anomaly's), then series the RCA's
        evidence names. Never chosen by service name."""
        found: list[tuple[float, str]] = []
        if rec.incident is not None:
            for s in rec.incident.signals:
                sid = s.attrs.get("series") if s.kind in ("anomaly", "prediction") else None
                a = self.anomaly_views.get(s.ref) if s.kind == "anomaly" else None
                if a is not None and a.kind == "metric":
                    sid = a.series
                if isinstance(sid, str) and sid:
                    score = s.attrs.get("score")
                    found.append((-float(score) if isinstance(score, int | float) else 0.0, sid))
        if rec.rca is not None:
            for h in rec.rca.hypotheses[:3]:
                for e in h.evidence:
                    if e.ref and e.ref in self.series:
                        found.append((-e.weight, e.ref))
        out: list[str] = []
        for _, sid in sorted(found, key=lambda x: x[0]):
            if sid not in out:
                out.append(sid)
        return out

    def plans(self, pending_only: bool = False) -> list[PlanRecord]:
        out = [
            p
            for r in self.records.values()
            for p in r.plans.values()
            if not pending_only or p.pending
        ]
        out.sort(key=lambda p: p.plan.time, reverse=True)
        return out

    def audit(
        self, subject: str | None = None, actor: str | None = None, action: str | None = None
    ) -> list[AuditRecord]:
        """Audit records, newest first; ``action`` matches a prefix (``plan.``)."""
        return [
            r
            for r in reversed(self.audit_log)
            if (subject is None or r.subject == subject)
            and (actor is None or r.actor == actor)
            and (action is None or r.action.startswith(action))
        ]

    def summary(self) -> dict[str, object]:
        by_sev: Counter[str] = Counter()
        n_open = 0
        for rec in self.records.values():
            if rec.is_open and rec.incident is not None:
                n_open += 1
                by_sev[rec.incident.severity] += 1
        return {
            "incidents_open": n_open,
            "incidents_by_severity": dict(by_sev),
            "anomalies_open": sum(1 for a in self.anomaly_views.values() if a.status == "open"),
            "predictions": len(self.prediction_views),
            "plans_pending": sum(1 for p in self.plans() if p.pending),
            "actions_by_outcome": dict(self.actions_by_outcome),
        }

"""Response shapes of the REST API, as pydantic models.

They are what the endpoints return and what ``/openapi.json`` documents (the
OpenAPI document is built from their JSON schemas), so the two cannot drift.

Examples
--------
>>> TimelineEntry(time="2025-11-13T00:00:00Z", kind="rca", summary="bad_deploy").kind
'rca'
>>> ErrorBody(error="limit must be an integer").model_dump()
{'error': 'limit must be an integer'}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..schemas import (
    ActionPlan,
    ActionResult,
    Anomaly,
    Approval,
    AuditRecord,
    Feedback,
    Incident,
    Prediction,
    RcaResult,
    Silence,
    SimilarCase,
    TriageEvent,
)
from ..schemas.base import UtcDatetime

__all__ = [
    "AnomalyPage",
    "AnomalyView",
    "AuditPage",
    "CauseView",
    "DetectRequest",
    "DetectResult",
    "ErrorBody",
    "FeedbackAccepted",
    "FeedbackRequest",
    "IncidentDetail",
    "IncidentPage",
    "IncidentSummary",
    "LearnAccepted",
    "LearnRequest",
    "LinkView",
    "PatternResults",
    "PlanView",
    "PredictionPage",
    "SeriesList",
    "SeriesPoints",
    "SeriesSummary",
    "SilencePage",
    "SilenceRequest",
    "SilenceView",
    "StatusSummary",
    "RunbookView",
    "TimelineEntry",
    "TriageAccepted",
    "TriageRequest",
    "Whoami",
]


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the API."""

    error: str


class _Page(BaseModel):
    total: int = Field(description="items matching the filters")
    limit: int
    offset: int
    next_offset: int | None = Field(default=None, description="offset of the next page, if any")


class AnomalyView(Anomaly):
    """An anomaly as last seen: the open event, updated when it resolves."""

    resolved_at: UtcDatetime | None = None


class AnomalyPage(_Page):
    items: list[AnomalyView]


class PredictionPage(_Page):
    items: list[Prediction]


class AuditPage(_Page):
    items: list[AuditRecord]


class CauseView(BaseModel):
    cause_type: str
    service: str
    confidence: float


class IncidentSummary(BaseModel):
    incident_id: str
    status: str
    title: str
    severity: str
    services: list[str] = Field(default_factory=list)
    root_service: str | None = None
    opened_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None
    updated_at: UtcDatetime
    revision: int = 0
    signal_count: int = 0
    top_cause: CauseView | None = None
    plans: int = 0
    pending_plans: int = 0
    #: on-call triage state (from ``incident-triage``)
    acked_by: str | None = None
    acked_at: UtcDatetime | None = None
    assignee: str | None = None
    snoozed_until: UtcDatetime | None = None
    resolved_by: str | None = None
    #: seconds from opened to resolved (open incidents: None, the console counts)
    duration_seconds: float | None = None
    impact: float | None = None


class IncidentPage(_Page):
    items: list[IncidentSummary]


class TimelineEntry(BaseModel):
    time: UtcDatetime
    kind: Literal["incident", "signal", "rca", "plan", "approval", "action", "feedback", "triage"]
    summary: str
    ref: str | None = None


class PlanView(BaseModel):
    plan: ActionPlan
    approvals: list[Approval] = Field(default_factory=list)
    results: list[ActionResult] = Field(default_factory=list)
    #: the plan's true state: pending, approved, rejected, expired, blocked, auto,
    #: executing, executed, dry-run, failed, completed (decisions and results applied)
    state: str = "pending"
    #: why it is in that state (policy, who decided, a failure's detail)
    reason: str = ""
    #: whether its actions ran as dry-run (None before any result)
    dry_run: bool | None = None


class LinkView(BaseModel):
    """A link out of an incident: runbook, alert source, dashboard, metrics explorer."""

    kind: Literal["runbook", "source", "dashboard", "metrics"]
    title: str
    url: str


class IncidentDetail(BaseModel):
    summary: IncidentSummary
    incident: Incident | None = Field(default=None, description="latest revision, if seen")
    rca: RcaResult | None = Field(default=None, description="latest RCA result")
    plans: list[PlanView] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    series: list[str] = Field(default_factory=list,
                              description="series carrying the incident's evidence (chart ids)")
    timeline: list[TimelineEntry] = Field(default_factory=list)
    triage: list[TriageEvent] = Field(default_factory=list)
    links: list[LinkView] = Field(default_factory=list)
    #: runbooks the RCA named (ids for ``GET /api/runbooks/{id}``)
    runbooks: list[str] = Field(default_factory=list)


class SeriesSummary(BaseModel):
    series: str
    metric: str
    service: str
    points: int
    last_anomaly: UtcDatetime | None = None
    open: bool = False


class SeriesList(BaseModel):
    items: list[SeriesSummary]


class SeriesPoints(BaseModel):
    """Recent values with the learned band; ``null`` where the band is unknown."""

    series: str
    #: columns: unix seconds, value, expected, lower, upper
    points: list[tuple[float, float, float | None, float | None, float | None]]
    anomalies: list[dict[str, Any]] = Field(default_factory=list)


class StatusSummary(BaseModel):
    status: str
    dry_run: bool = Field(description="actions are simulated, not executed (actions.dry_run)")
    auto_remediation: bool = Field(description="LOW-risk plans run without a human")
    metrics_url: str | None = Field(default=None, description="link-out template for a series")
    runbook_url: str | None = Field(default=None, description="external runbook link template")
    silences_active: int = 0
    incidents_open: int
    incidents_by_severity: dict[str, int]
    anomalies_open: int
    predictions: int
    plans_pending: int
    actions_by_outcome: dict[str, int]
    readmodel: dict[str, Any]
    agent: dict[str, Any] = Field(description="the worker's /status payload")


class FeedbackRequest(BaseModel):
    """Body of ``POST /api/feedback``; ``user`` defaults to the token's user."""

    incident_id: str = Field(min_length=1, max_length=128)
    kind: Literal["rca", "action", "cause"] = "rca"
    rating: Literal["good", "bad"] | None = None
    confirmed_cause: str | None = Field(default=None, max_length=256)
    confirmed_service: str | None = Field(default=None, max_length=256)
    action_outcome: Literal["succeeded", "failed"] | None = None
    comment: str = Field(default="", max_length=4000)

    model_config = {"extra": "forbid"}


class FeedbackAccepted(BaseModel):
    accepted: bool = True
    event_id: str
    incident_id: str


class PatternResults(BaseModel):
    query: str
    items: list[SimilarCase]


class Whoami(BaseModel):
    user: str
    role: str


class TriageRequest(BaseModel):
    """Body of ``POST /api/incidents/{id}/{ack,unack,assign,snooze,resolve,comment}``.

    Who acts is the token's user, never a field of the body.
    """

    comment: str = Field(default="", max_length=2000)
    #: assign: the new assignee ("" unassigns)
    assignee: str | None = Field(default=None, max_length=256)
    #: snooze: minutes of quiet (no notification, no escalation)
    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)

    model_config = {"extra": "forbid"}


class SilenceRequest(BaseModel):
    """Body of ``POST /api/silences``: a silence now, or a maintenance window later.

    Give ``ends_at`` or ``duration_minutes``; ``starts_at`` defaults to now.
    """

    matchers: dict[str, str] = Field(min_length=1, max_length=20)
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    duration_minutes: float | None = Field(default=None, gt=0, le=90 * 24 * 60)
    comment: str = Field(min_length=1, max_length=2000)
    kind: Literal["silence", "maintenance"] = "silence"

    model_config = {"extra": "forbid"}


class SilenceView(Silence):
    """A silence as the agent knows it, with the signals it dropped on this worker."""

    hits: int = 0
    active: bool = False


class SilencePage(_Page):
    items: list[SilenceView]


class TriageAccepted(BaseModel):
    accepted: bool = True
    event_id: str
    incident_id: str
    action: str
    actor: str


class RunbookView(BaseModel):
    id: str
    title: str
    body: str = Field(description="Markdown")
    url: str | None = Field(default=None, description="external link (api.runbook_url)")


class SeriesIn(BaseModel):
    metric: str = Field(min_length=1, max_length=256)
    service: str = Field(default="unknown", max_length=256)
    points: list[tuple[float, float]] = Field(min_length=1, max_length=20_000)


class DetectRequest(BaseModel):
    """Body of ``POST /api/patterns/detect``."""

    series: SeriesIn | None = None
    service: str | None = Field(default=None, max_length=256)
    text: str | None = Field(default=None, max_length=500)
    threshold: float | None = Field(default=None, gt=0, lt=1)
    limit: int = Field(default=3, ge=1, le=10)

    model_config = {"extra": "forbid"}


class Solution(BaseModel):
    action: str = Field(min_length=1, max_length=128)
    confidence: float = Field(default=0.5, ge=0, le=1)
    risk: Literal["low", "medium", "high", "critical"] = "medium"


class LearnRequest(BaseModel):
    """Body of ``POST /api/patterns/learn`` (seed 003's pattern data model)."""

    pattern_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = Field(min_length=3, max_length=200)
    category: str = Field(default="learned", max_length=64)
    description: str = Field(default="", max_length=2000)
    cause_type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    symptoms: list[str] = Field(default_factory=list, max_length=20)
    root_causes: list[str] = Field(default_factory=list, max_length=20)
    solutions: list[Solution] = Field(default_factory=list, max_length=10)

    model_config = {"extra": "forbid"}


class DetectResult(BaseModel):
    source: Literal["series", "live"]
    threshold: float
    anomalies: list[dict[str, Any]] = Field(
        description="anomalous runs (series) or open anomalies (live), each with 'patterns'")
    knowledge_base: bool
    text_matches: list[dict[str, Any]] | None = None


class LearnAccepted(BaseModel):
    accepted: bool = True
    pattern_id: str
    confidence: float | None = None

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
    SimilarCase,
)
from ..schemas.base import UtcDatetime

__all__ = [
    "AnomalyPage",
    "AnomalyView",
    "AuditPage",
    "CauseView",
    "ErrorBody",
    "FeedbackAccepted",
    "FeedbackRequest",
    "IncidentDetail",
    "IncidentPage",
    "IncidentSummary",
    "PatternResults",
    "PlanView",
    "PredictionPage",
    "SeriesList",
    "SeriesPoints",
    "SeriesSummary",
    "StatusSummary",
    "TimelineEntry",
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


class IncidentPage(_Page):
    items: list[IncidentSummary]


class TimelineEntry(BaseModel):
    time: UtcDatetime
    kind: Literal["incident", "signal", "rca", "plan", "approval", "action", "feedback"]
    summary: str
    ref: str | None = None


class PlanView(BaseModel):
    plan: ActionPlan
    approvals: list[Approval] = Field(default_factory=list)
    results: list[ActionResult] = Field(default_factory=list)


class IncidentDetail(BaseModel):
    summary: IncidentSummary
    incident: Incident | None = Field(default=None, description="latest revision, if seen")
    rca: RcaResult | None = Field(default=None, description="latest RCA result")
    plans: list[PlanView] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    series: list[str] = Field(default_factory=list, description="anomalous series (chart ids)")
    timeline: list[TimelineEntry] = Field(default_factory=list)


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

"""Incidents and root-cause analysis results."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from .base import Event, UtcDatetime
from .detection import Severity

__all__ = ["EvidenceItem", "Hypothesis", "Incident", "RcaResult", "SignalRef", "SimilarCase"]


class SignalRef(BaseModel):
    """A raw signal absorbed by an incident."""

    kind: Literal["anomaly", "alert", "prediction", "k8s", "deploy", "log"]
    ref: str = Field(description="fingerprint / anomaly id / event id")
    service: str
    summary: str = ""
    time: UtcDatetime
    severity: Severity = "warning"
    #: metric name, alert name or k8s reason (additive)
    metric: str | None = None
    #: compact details for RCA: direction, observed/expected, template, revision ... (additive)
    attrs: dict[str, Any] = Field(default_factory=dict)


class Incident(Event):
    TOPIC: ClassVar[str] = "incidents"
    incident_id: str
    status: Literal["open", "updated", "resolved"] = "open"
    title: str
    severity: Severity = "warning"
    services: list[str] = Field(default_factory=list)
    root_service: str | None = None
    fingerprint: str = Field(description="stable identity of the grouped problem")
    signals: list[SignalRef] = Field(default_factory=list)
    signal_count: int = 0
    candidate_changes: list[dict[str, Any]] = Field(default_factory=list)
    opened_at: UtcDatetime
    resolved_at: UtcDatetime | None = None
    revision: int = 1
    #: times this incident was reopened by a recurrence (additive)
    reopen_count: int = 0
    #: correlation group (topology component) that owns this incident (additive)
    group: str | None = None
    #: labels shared by the incident's signals (namespace, team ...), for routing (additive)
    labels: dict[str, str] = Field(default_factory=dict)
    #: why the severity is what it is (processors.severity), e.g. "error budget burn 16x" (additive)
    severity_reasons: list[str] = Field(default_factory=list)
    #: impact score in [0, 1] behind the severity (additive)
    impact: float | None = Field(default=None, ge=0.0, le=1.0)
    #: who resolved it by hand (``api:<user>``, ``slack:<id>``); None when signals recovered (additive)
    resolved_by: str | None = None

    def key(self) -> str:
        return self.incident_id


class EvidenceItem(BaseModel):
    kind: str = Field(description="metric | log | deploy | k8s | alert | dependency | similar")
    summary: str
    weight: float = 0.0
    ref: str | None = None
    #: a measured series behind the item: its metric, its level during the incident and
    #: its level before (additive; the planner sizes scale-outs from load series)
    metric: str | None = None
    observed: float | None = None
    expected: float | None = None


class Hypothesis(BaseModel):
    cause_type: str = Field(description="e.g. bad_deploy, memory_leak, db_pool_exhaustion")
    service: str
    confidence: float = Field(ge=0.0, le=1.0)
    summary: str
    evidence: list[EvidenceItem] = Field(default_factory=list)
    recommended_actions: list[str] = Field(default_factory=list)


class SimilarCase(BaseModel):
    id: str
    title: str
    similarity: float
    cause_type: str | None = None
    resolution: str | None = None
    kind: Literal["incident", "pattern", "runbook"] = "incident"
    #: service the confirmed cause was on (additive)
    service: str | None = None


class RcaResult(Event):
    TOPIC: ClassVar[str] = "rca-results"
    incident_id: str
    incident_revision: int = 1
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    similar: list[SimilarCase] = Field(default_factory=list)
    method: Literal["rules", "rules+llm"] = "rules"
    llm_tokens: int = 0
    severity: Severity = "warning"
    services: list[str] = Field(default_factory=list)

    def key(self) -> str:
        return self.incident_id

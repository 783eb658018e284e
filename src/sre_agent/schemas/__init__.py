"""Wire schemas: one pydantic v2 model per topic, versioned, orjson-encoded.

``TOPIC_MODELS`` maps each un-prefixed topic name to its model; the codec in
:mod:`sre_agent.schemas.codec` validates bytes against it exactly once.
"""

from __future__ import annotations

from .actions import (
    DECISION_TOPICS,
    ActionPlan,
    ActionResult,
    ActionStep,
    Approval,
    RiskTier,
    Signed,
    SreAction,
    Target,
)
from .base import Event, UtcDatetime, new_id, utcnow
from .codec import DecodeError, decode, encode, export_json_schemas
from .detection import Anomaly, Prediction, Severity
from .dlq import DeadLetter
from .incidents import EvidenceItem, Hypothesis, Incident, RcaResult, SignalRef, SimilarCase
from .learning import AuditRecord, Feedback
from .triage import Silence, TriageEvent
from .windows import WindowPoints
from .telemetry import (
    Alert,
    DeployEvent,
    K8sEvent,
    LogRecord,
    MetricBatch,
    MetricSeries,
    series_id,
    shard_of,
)

TOPIC_MODELS: dict[str, type[Event]] = {
    m.TOPIC: m
    for m in (
        MetricBatch,
        LogRecord,
        K8sEvent,
        DeployEvent,
        Alert,
        Anomaly,
        Prediction,
        Incident,
        RcaResult,
        ActionPlan,
        Approval,
        SreAction,
        ActionResult,
        Feedback,
        AuditRecord,
        TriageEvent,
        Silence,
        WindowPoints,
    )
}

__all__ = [
    "DECISION_TOPICS",
    "TOPIC_MODELS",
    "ActionPlan",
    "ActionResult",
    "ActionStep",
    "Alert",
    "Anomaly",
    "Approval",
    "AuditRecord",
    "DeadLetter",
    "DecodeError",
    "DeployEvent",
    "Event",
    "EvidenceItem",
    "Feedback",
    "Hypothesis",
    "Incident",
    "K8sEvent",
    "LogRecord",
    "MetricBatch",
    "MetricSeries",
    "Prediction",
    "RcaResult",
    "RiskTier",
    "Severity",
    "SignalRef",
    "Signed",
    "Silence",
    "SimilarCase",
    "SreAction",
    "Target",
    "TriageEvent",
    "UtcDatetime",
    "WindowPoints",
    "decode",
    "encode",
    "export_json_schemas",
    "new_id",
    "series_id",
    "shard_of",
    "utcnow",
]

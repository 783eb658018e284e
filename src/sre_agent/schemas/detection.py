"""Cognition outputs: anomalies and early-warning predictions."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import Event, UtcDatetime

__all__ = ["Anomaly", "Prediction", "Severity"]

Severity = Literal["info", "warning", "critical"]


class Anomaly(Event):
    """An anomalous (or recovered) series, from the metric or log agents.

    ``status`` is ``open`` when a series turns anomalous and ``resolved`` when it
    recovers; ``anomaly_id`` stays the same across both.
    """

    TOPIC: ClassVar[str] = "anomalies"
    anomaly_id: str
    status: Literal["open", "resolved"] = "open"
    kind: Literal["metric", "log"] = "metric"
    series: str = Field(description="series id, or service/template id for logs")
    metric: str
    service: str = "unknown"
    labels: dict[str, str] = Field(default_factory=dict)
    observed: float
    expected: float
    lower: float
    upper: float
    deviation: float = Field(description="(observed - expected) / scale")
    score: float = Field(ge=0.0, le=1.0)
    severity: Severity = "warning"
    direction: Literal["up", "down", "both"] = "up"
    contributions: dict[str, float] = Field(default_factory=dict)
    started_at: UtcDatetime | None = None
    template: str | None = None

    def key(self) -> str:
        return self.service


class Prediction(Event):
    """Early warning: a saturation series is expected to breach its limit."""

    TOPIC: ClassVar[str] = "predictions"
    series: str
    metric: str
    service: str = "unknown"
    labels: dict[str, str] = Field(default_factory=dict)
    current: float
    limit: float
    breach_at: UtcDatetime
    seconds_to_breach: float = Field(ge=0)
    confidence: float = Field(ge=0.0, le=1.0)
    slope_per_hour: float = 0.0
    severity: Severity = "warning"

    def key(self) -> str:
        return self.series

"""Closing the loop: human/verifier feedback and the audit trail."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import Event

__all__ = ["AuditRecord", "Feedback"]


class Feedback(Event):
    TOPIC: ClassVar[str] = "feedback"
    incident_id: str
    kind: Literal["rca", "action", "cause"] = "rca"
    rating: Literal["good", "bad"] | None = None
    confirmed_cause: str | None = None
    confirmed_service: str | None = None
    action_outcome: Literal["succeeded", "failed"] | None = None
    user: str = "unknown"
    comment: str = ""

    def key(self) -> str:
        return self.incident_id


class AuditRecord(Event):
    """One auditable step; the PostgreSQL sink hash-chains these rows."""

    TOPIC: ClassVar[str] = "audit"
    actor: str = Field(description="stage or user that acted")
    action: str = Field(description="e.g. plan.created, vote.cast, action.executed")
    subject: str = Field(description="plan id, incident id, action id ...")
    details: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None

    def key(self) -> str:
        return self.subject

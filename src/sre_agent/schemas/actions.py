"""Decisions and actions: plans, approvals, sre-actions and their results.

``sre-actions`` is a public contract: other teams may consume it. Its JSON
Schema is exported by ``sre-agent schemas export``.

Decision events (plans, approvals, actions, results) are signed by the agent
(:mod:`sre_agent.processors.signing`): ``key_id`` names the Ed25519 key and
``signature`` covers the event's JSON object without its ``signature`` member
(keys sorted, no whitespace, UTF-8). Both fields are additive: events without
them still decode, and are refused by the agent's decision stages.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from .base import Event, UtcDatetime

__all__ = [
    "DECISION_TOPICS",
    "ActionPlan",
    "ActionResult",
    "ActionStep",
    "Approval",
    "RiskTier",
    "Signed",
    "SreAction",
    "Target",
]

RiskTier = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


class Signed(Event):
    """Base of the decision events: an Ed25519 signature by the agent (additive)."""

    #: id of the signing key (first 16 hex digits of sha256 of the raw public key)
    key_id: str | None = Field(default=None, max_length=64)
    #: base64 Ed25519 signature of the canonical JSON of this object without ``signature``
    signature: str | None = Field(default=None, max_length=200)
Policy = Literal["AUTO", "ONE_APPROVAL", "TWO_SRE_ONE_LEAD", "BLOCKED"]


class Target(BaseModel):
    """What an action acts on."""

    kind: Literal["pod", "deployment", "statefulset", "hpa", "ec2", "rds", "job", "service"]
    name: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    namespace: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=63)
    service: str | None = None
    #: identity of the object the plan was made for (pod/deployment uid, instance id);
    #: the executor skips the action if the live object has another (additive)
    uid: str | None = None

    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


class ActionStep(BaseModel):
    action: str = Field(description="restart_pod | rollout_restart | scale | rollout_undo | ...")
    target: Target
    params: dict[str, Any] = Field(default_factory=dict)
    risk: float = Field(default=0.2, ge=0.0, le=1.0)
    verify: dict[str, Any] | None = None
    rollback: str | None = None
    #: pre-checks evaluated on the live object right before acting (additive)
    prechecks: list[dict[str, Any]] = Field(default_factory=list)
    #: state the plan assumed (e.g. {"revision": "4", "image": ...}); a mismatch skips (additive)
    expect: dict[str, Any] = Field(default_factory=dict)


class ActionPlan(Signed):
    TOPIC: ClassVar[str] = "action-plans"
    plan_id: str
    incident_id: str
    playbook: str | None = None
    cause_type: str | None = None
    summary: str = ""
    steps: list[ActionStep] = Field(default_factory=list)
    risk_score: float = Field(ge=0.0, le=1.0)
    risk_tier: RiskTier
    policy: Policy
    risk_factors: dict[str, float] = Field(default_factory=dict)
    protected: bool = False
    expires_at: UtcDatetime | None = None
    status: Literal["pending", "approved", "rejected", "expired", "blocked", "auto",
                    "superseded"] = "pending"
    #: context for approvers (additive): hypothesis, evidence summary, similar past cases
    service: str | None = None
    severity: str = "warning"
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list)
    similar: list[dict[str, Any]] = Field(default_factory=list)
    #: why the policy was chosen (protected match, auto-remediation off ...)
    policy_reason: str = ""
    #: status "superseded" (additive): the plan that replaces it (None: none does) and why
    superseded_by: str | None = None
    superseded_reason: str = ""

    def key(self) -> str:
        # by incident: one partition owns every plan of an incident, so the approval
        # manager that owns it sees them all (one running plan per incident)
        return self.incident_id


class Approval(Signed):
    TOPIC: ClassVar[str] = "approvals"
    plan_id: str
    decision: Literal["approve", "reject"]
    user: str = Field(min_length=1)
    role: Literal["oncall", "sre", "lead", "admin"] = "oncall"
    source: Literal["slack", "api", "cli"] = "api"
    comment: str = ""
    #: the incident of the plan (additive): routes the vote to the partition that owns
    #: the incident's plans. A routing hint only: the approval manager refuses a vote
    #: whose incident is not its plan's, and forwards a vote without one
    incident_id: str | None = Field(default=None, max_length=256)

    def key(self) -> str:
        return self.incident_id or self.plan_id


class SreAction(Signed):
    """An approved (or AUTO) action for the executor and external consumers.

    ``idempotency_key`` is unique per action: consumers must not execute the
    same key twice. ``plan`` and ``approvals`` carry the signed plan and the
    signed votes it was approved with, exactly as they were produced, so any
    consumer can check the quorum itself (additive).
    """

    TOPIC: ClassVar[str] = "sre-actions"
    action_id: str
    idempotency_key: str
    plan_id: str
    incident_id: str
    step_index: int = 0
    step: ActionStep
    approved_by: list[str] = Field(default_factory=list)
    policy: Policy
    dry_run: bool = True
    #: the signed ``action-plans`` event this step belongs to, as produced (additive)
    plan: dict[str, Any] | None = None
    #: the signed ``approvals`` events that made the quorum, as produced (additive)
    approvals: list[dict[str, Any]] = Field(default_factory=list, max_length=50)

    def key(self) -> str:
        return self.step.target.ref()


class ActionResult(Signed):
    TOPIC: ClassVar[str] = "action-results"
    action_id: str
    plan_id: str
    incident_id: str
    status: Literal["succeeded", "failed", "skipped", "dry_run", "rolled_back", "rate_limited", "blocked"]
    detail: str = ""
    snapshot: dict[str, Any] = Field(default_factory=dict)
    verified: bool | None = None
    dry_run: bool = True
    #: which step of the plan, on what, and its idempotency key (additive)
    step_index: int = 0
    action: str | None = None
    target: str | None = None
    idempotency_key: str | None = None

    def key(self) -> str:
        return self.incident_id  # with the incident's plans and votes (see ActionPlan.key)


#: topics whose events are signed and verified
DECISION_TOPICS = frozenset({ActionPlan.TOPIC, Approval.TOPIC, SreAction.TOPIC, ActionResult.TOPIC})

"""Approval state machine of one plan: quorum and roles per tier, one vote each, expiry.

::

    pending --(quorum of approvals)--> approved --(steps run one by one)--> completed
       |  \\--(one reject)--> rejected                                 \\--> failed
       \\--(expires_at passed)--> expired
    blocked (diagnosis only: no vote is accepted)     auto (approved by policy)

Quorum: ``ONE_APPROVAL`` needs one approval from any approval role (oncall, sre,
lead, admin); ``TWO_SRE_ONE_LEAD`` needs three different people of whom at least
one is a lead (or admin). Any single reject from an allowed voter rejects the plan.
A person votes once: a second vote (even a changed mind) is refused, not counted.

The state is a pydantic model serialised to the approval table; every function is
pure and takes ``now``.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from sre_agent.schemas import ActionPlan, Approval
>>> t0 = datetime(2025, 11, 13, 12, tzinfo=UTC)
>>> plan = ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.7, risk_tier="HIGH",
...                   policy="TWO_SRE_ONE_LEAD", expires_at=t0 + timedelta(hours=1))
>>> st = PlanState.open(plan)
>>> for user, role in [("ann", "sre"), ("ann", "sre"), ("bob", "oncall"), ("cy", "lead")]:
...     out = cast_vote(st, Approval(plan_id="p1", decision="approve", user=user, role=role), t0)
...     print(user, out.accepted, out.reason)
ann True 1/3 approvals, lead missing
ann False ann already voted
bob True 2/3 approvals, lead missing
cy True approved
>>> st.status, st.approvers()
('approved', ['ann', 'bob', 'cy'])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..schemas import ActionPlan, Approval, UtcDatetime

__all__ = ["LEAD_ROLES", "PlanState", "Vote", "VoteOutcome", "cast_vote", "expire_if_due",
           "quorum_status", "record_result"]

Status = Literal["pending", "approved", "rejected", "expired", "blocked", "auto",
                 "completed", "failed"]
VOTING_ROLES = frozenset({"oncall", "sre", "lead", "admin"})
LEAD_ROLES = frozenset({"lead", "admin"})
#: step results after which the next step may run
PROCEED = frozenset({"succeeded", "dry_run"})


class Vote(BaseModel):
    user: str
    role: str
    decision: Literal["approve", "reject"]
    source: str = "api"
    time: UtcDatetime
    comment: str = ""


class PlanState(BaseModel):
    plan: ActionPlan
    status: Status = "pending"
    votes: list[Vote] = Field(default_factory=list)
    decided_at: UtcDatetime | None = None
    #: index of the next step to hand to the executor
    next_step: int = 0
    step_status: dict[int, str] = Field(default_factory=dict)
    #: where the approval request was posted (channel, ts) for later updates; while a
    #: post is in flight only ``{"posting": <unix time>}`` (outcome unknown after a crash)
    slack: dict[str, str] = Field(default_factory=dict)
    #: step indexes already handed to the executor on sre-actions
    requested: list[int] = Field(default_factory=list)

    @classmethod
    def open(cls, plan: ActionPlan) -> PlanState:
        status: Status = plan.status if plan.status in ("blocked", "auto") else "pending"
        return cls(plan=plan, status=status)

    def approvers(self) -> list[str]:
        return [v.user for v in self.votes if v.decision == "approve"]

    @property
    def executable(self) -> bool:
        return self.status in ("approved", "auto")


@dataclass(frozen=True)
class VoteOutcome:
    accepted: bool
    reason: str
    #: the vote settled the plan (approved or rejected)
    decided: bool = False


def quorum_status(policy: str, votes: list[Vote]) -> tuple[bool, str]:
    """Is the quorum of ``policy`` met by the approving ``votes``? And what is missing."""
    approving = {v.user.lower(): v.role for v in votes if v.decision == "approve"}
    if policy == "ONE_APPROVAL":
        return (len(approving) >= 1, f"{len(approving)}/1 approvals")
    if policy == "TWO_SRE_ONE_LEAD":
        leads = sum(1 for r in approving.values() if r in LEAD_ROLES)
        ok = len(approving) >= 3 and leads >= 1
        missing = "" if leads else ", lead missing"
        return ok, f"{len(approving)}/3 approvals{missing}"
    return False, f"policy {policy} takes no votes"


def expire_if_due(state: PlanState, now: datetime) -> bool:
    """Move a pending plan past its ``expires_at`` to ``expired``; True if it did."""
    exp = state.plan.expires_at
    if state.status == "pending" and exp is not None and now >= exp:
        state.status = "expired"
        state.decided_at = now
        return True
    return False


def cast_vote(state: PlanState, approval: Approval, now: datetime) -> VoteOutcome:
    """Apply one vote to ``state`` (in place) and say whether it counted."""
    user = approval.user.strip()
    if expire_if_due(state, now):
        return VoteOutcome(False, "plan expired", decided=True)
    if state.status == "blocked":
        return VoteOutcome(False, "plan is BLOCKED: diagnosis only, no vote can execute it")
    if state.status != "pending":
        return VoteOutcome(False, f"plan is already {state.status}")
    if approval.role not in VOTING_ROLES:
        return VoteOutcome(False, f"role {approval.role!r} may not vote")
    if any(v.user.lower() == user.lower() for v in state.votes):
        return VoteOutcome(False, f"{user} already voted")
    state.votes.append(Vote(user=user, role=approval.role, decision=approval.decision,
                            source=approval.source, time=now, comment=approval.comment))
    if approval.decision == "reject":
        state.status = "rejected"
        state.decided_at = now
        return VoteOutcome(True, f"rejected by {user}", decided=True)
    ok, progress = quorum_status(state.plan.policy, state.votes)
    if ok:
        state.status = "approved"
        state.decided_at = now
        return VoteOutcome(True, "approved", decided=True)
    return VoteOutcome(True, progress)


def record_result(state: PlanState, step_index: int, status: str) -> int | None:
    """Record an executor result; return the index of the next step to run, if any.

    Results for steps other than the one in flight (redeliveries) are ignored.
    A step that did not succeed ends the plan as ``failed``.
    """
    if not state.executable or step_index != state.next_step or step_index in state.step_status:
        return None
    state.step_status[step_index] = status
    if status not in PROCEED:
        state.status = "failed"
        return None
    state.next_step = step_index + 1
    if state.next_step >= len(state.plan.steps):
        state.status = "completed"
        return None
    return state.next_step

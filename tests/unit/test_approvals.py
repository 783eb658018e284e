"""Approval state machine: quorum and roles per tier, one vote each, reject, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sre_agent.processors.approvals import PlanState, cast_vote, expire_if_due, record_result
from sre_agent.schemas import ActionPlan, ActionStep, Approval, Target

T0 = datetime(2025, 11, 13, 12, tzinfo=UTC)


def plan(policy: str = "ONE_APPROVAL", steps: int = 1, status: str = "pending") -> ActionPlan:
    tier = {"ONE_APPROVAL": "MEDIUM", "TWO_SRE_ONE_LEAD": "HIGH", "BLOCKED": "CRITICAL",
            "AUTO": "LOW"}[policy]
    return ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.5, risk_tier=tier,  # type: ignore[arg-type]
                      policy=policy, status=status, expires_at=T0 + timedelta(minutes=30),  # type: ignore[arg-type]
                      steps=[ActionStep(action="scale", target=Target(kind="deployment", name=f"d{i}"))
                             for i in range(steps)])


def vote(user: str, role: str = "oncall", decision: str = "approve") -> Approval:
    return Approval(plan_id="p1", user=user, role=role, decision=decision)  # type: ignore[arg-type]


def test_medium_needs_one_on_call() -> None:
    st = PlanState.open(plan())
    out = cast_vote(st, vote("ann"), T0)
    assert out.accepted and out.decided and st.status == "approved" and st.approvers() == ["ann"]
    late = cast_vote(st, vote("bob"), T0)
    assert not late.accepted and late.reason == "plan is already approved"


@pytest.mark.parametrize("votes, approved", [
    ([("a", "sre"), ("b", "sre"), ("c", "lead")], True),
    ([("a", "oncall"), ("b", "sre"), ("c", "admin")], True),
    ([("a", "lead"), ("b", "lead"), ("c", "lead")], True),
    ([("a", "sre"), ("b", "sre"), ("c", "oncall")], False),  # no lead
    ([("a", "sre"), ("c", "lead")], False),  # only two people
    ([("a", "sre"), ("a", "sre"), ("c", "lead")], False),  # one person, one vote
    ([("a", "sre"), ("A", "lead"), ("c", "lead")], False),  # user names are case-insensitive
])
def test_high_needs_two_sres_and_a_lead(votes: list[tuple[str, str]], approved: bool) -> None:
    st = PlanState.open(plan("TWO_SRE_ONE_LEAD"))
    for user, role in votes:
        cast_vote(st, vote(user, role), T0)
    assert (st.status == "approved") is approved, st.votes


def test_second_vote_of_a_person_is_refused_even_if_changed() -> None:
    st = PlanState.open(plan("TWO_SRE_ONE_LEAD"))
    assert cast_vote(st, vote("ann", "sre"), T0).accepted
    out = cast_vote(st, vote("ann", "sre", "reject"), T0)
    assert not out.accepted and "already voted" in out.reason
    assert st.status == "pending" and len(st.votes) == 1


def test_one_reject_rejects() -> None:
    st = PlanState.open(plan("TWO_SRE_ONE_LEAD"))
    cast_vote(st, vote("ann", "sre"), T0)
    out = cast_vote(st, vote("bob", "oncall", "reject"), T0)
    assert out.decided and st.status == "rejected"
    assert not cast_vote(st, vote("cy", "lead"), T0).accepted


def test_expiry() -> None:
    st = PlanState.open(plan())
    assert not expire_if_due(st, T0 + timedelta(minutes=29))
    out = cast_vote(st, vote("ann"), T0 + timedelta(minutes=30))
    assert not out.accepted and out.reason == "plan expired" and st.status == "expired"
    st2 = PlanState.open(plan())
    assert expire_if_due(st2, T0 + timedelta(hours=2)) and st2.status == "expired"
    assert not expire_if_due(st2, T0 + timedelta(hours=3))  # once


def test_blocked_and_auto_plans_take_no_votes() -> None:
    blocked = PlanState.open(plan("BLOCKED", status="blocked"))
    out = cast_vote(blocked, vote("boss", "admin"), T0)
    assert not out.accepted and "BLOCKED" in out.reason and blocked.status == "blocked"
    auto = PlanState.open(plan("AUTO", status="auto"))
    assert auto.executable and not cast_vote(auto, vote("ann"), T0).accepted


def test_steps_run_in_order_and_stop_on_failure() -> None:
    st = PlanState.open(plan(steps=3))
    cast_vote(st, vote("ann"), T0)
    assert record_result(st, 1, "succeeded") is None  # not the step in flight
    assert record_result(st, 0, "succeeded") == 1
    assert record_result(st, 0, "succeeded") is None  # redelivered result
    assert record_result(st, 1, "dry_run") == 2
    assert record_result(st, 2, "rolled_back") is None and st.status == "failed"
    done = PlanState.open(plan(steps=1))
    cast_vote(done, vote("ann"), T0)
    assert record_result(done, 0, "succeeded") is None and done.status == "completed"
    pending = PlanState.open(plan())
    assert record_result(pending, 0, "succeeded") is None  # never approved: nothing runs


def test_state_round_trips_as_json() -> None:
    st = PlanState.open(plan("TWO_SRE_ONE_LEAD"))
    cast_vote(st, vote("ann", "sre"), T0)
    st.slack = {"channel": "C1", "ts": "1.2"}
    again = PlanState.model_validate_json(st.model_dump_json())
    assert again == st

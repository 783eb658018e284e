"""The decision state machines on plain events (no Kafka): approvals and execution.

Issue 15, finding 1, at the level of the pure core: roles from configuration
only, a plan's policy recomputed, the executor acting only on an action whose
signed plan and quorum it can verify itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from sre_agent.config import load_settings
from sre_agent.processors.approvals import (
    Audit,
    Emit,
    Hold,
    PlanIn,
    ResultIn,
    Rules,
    VoteIn,
    VoterRoles,
    decide,
)
from sre_agent.processors.execution import (
    Act,
    Acted,
    Claim,
    Claimed,
    ExecRules,
    Inspect,
    Inspected,
    Report,
    Requested,
    Resumed,
    TargetState,
    Verify,
    step,
    verify_action,
)
from sre_agent.processors.policy import PolicyEngine
from sre_agent.processors.signing import Keyring, Signer
from sre_agent.schemas import ActionPlan, ActionResult, ActionStep, Approval, SreAction, Target
from tests.signing_support import AGENT, ROGUE, authorised_action, signed

T0 = datetime(2025, 11, 13, 12, tzinfo=UTC)
SETTINGS = load_settings(env={
    "SRE_AGENT_ACTIONS__APPROVERS": '{"sam": "sre", "sue": "sre", "lee": "lead"}',
    "SRE_AGENT_SLACK__USER_ROLES": '{"U1": "oncall"}',
    "SRE_AGENT_API__TOKENS": '{"t1": "approver:bob", "t2": "viewer:vic"}'})
ROLES = VoterRoles.from_settings(SETTINGS)
ENGINE = PolicyEngine(SETTINGS.actions)
RULES = Rules(policy=ENGINE, roles=ROLES, dry_run=False)
KEYS = Keyring([AGENT.public])
EXEC = ExecRules(policy=ENGINE, roles=ROLES, keyring=KEYS, dry_run=False)


def step_() -> ActionStep:
    return ActionStep(action="restart_pod", risk=0.7,
                      target=Target(kind="pod", name="api-1", namespace="shop", service="api"))


def plan(pid: str = "p1", score: float = 0.7, tier: str = "HIGH", policy: str = "AUTO",
         status: str = "auto", **kw) -> ActionPlan:  # type: ignore[no-untyped-def]
    return ActionPlan(plan_id=pid, incident_id="i1", risk_score=score, risk_tier=tier,  # type: ignore[arg-type]
                      policy=policy, status=status, steps=[step_()], service="api",  # type: ignore[arg-type]
                      expires_at=T0 + timedelta(hours=1), **kw)


def plan_in(p: ActionPlan, signer: Signer | None = AGENT) -> PlanIn:
    raw = signed(p, signer) if signer else p.model_dump(mode="json")
    return PlanIn(p, KEYS.verify(raw), raw)


def vote_in(user: str, source: str = "api", role: str = "admin", signer: Signer | None = AGENT,
            pid: str = "p1") -> VoteIn:
    v = Approval(plan_id=pid, decision="approve", user=user, role=role, source=source)  # type: ignore[arg-type]
    raw = signed(v, signer) if signer else v.model_dump(mode="json")
    return VoteIn(v, KEYS.verify(raw), raw)


def emitted(effects: list) -> list[SreAction]:  # type: ignore[type-arg]
    return [e.action for e in effects if isinstance(e, Emit)]


def audits(effects: list) -> list[str]:  # type: ignore[type-arg]
    return [e.action for e in effects if isinstance(e, Audit)]


def test_roles_come_from_configuration_only() -> None:
    assert ROLES.role_of("api", "sam") == "sre" and ROLES.role_of("api", "bob") == "oncall"
    assert ROLES.role_of("api", "vic") is None and ROLES.role_of("slack", "U1") == "oncall"
    assert ROLES.role_of("slack", "sam") is None  # a Slack vote is by user id only
    assert ROLES.role_of("cli", "mallory") is None


def test_a_high_plan_claiming_auto_waits_for_votes() -> None:
    """Finding 1b: status/policy of the event are not believed."""
    st, eff = decide(None, plan_in(plan()), T0, RULES)
    assert st is not None and st.status == "pending" and st.plan.policy == "TWO_SRE_ONE_LEAD"
    assert not emitted(eff) and "policy.corrected" in audits(eff)


def test_unsigned_or_foreign_plans_are_refused() -> None:
    for signer in (None, ROGUE):
        st, eff = decide(None, plan_in(plan(), signer), T0, RULES)
        assert st is None and audits(eff) == ["plan.refused"]


def test_a_plan_is_never_looser_than_it_claims_nor_than_its_steps() -> None:
    # claims BLOCKED on a low score: stays BLOCKED
    st, _ = decide(None, plan_in(plan(score=0.1, tier="LOW", policy="BLOCKED", status="blocked")),
                   T0, RULES)
    assert st is not None and st.status == "blocked"
    # a score below what its step's own risk allows is floored (0.7 - 0.2 -> MEDIUM)
    st, _ = decide(None, plan_in(plan(score=0.0, tier="LOW", policy="AUTO")), T0,
                   Rules(policy=PolicyEngine(SETTINGS.actions.model_copy(
                       update={"auto_remediation": True})), roles=ROLES))
    assert st is not None and st.plan.policy == "ONE_APPROVAL"


def test_unknown_admins_do_not_approve() -> None:
    """Finding 1c: three votes from unknown users claiming admin."""
    st, _ = decide(None, plan_in(plan()), T0, RULES)
    for i in range(3):
        st, eff = decide(st, vote_in(f"x{i}"), T0, RULES)
        assert audits(eff) == ["vote.refused"] and eff[0].details["reason"] == "not a configured approver"
        st, eff = decide(st, vote_in(f"sam", signer=None), T0, RULES)
        assert eff[0].details["reason"] == "signature: unsigned"
    assert st is not None and st.status == "pending" and not st.votes


def test_quorum_of_configured_voters_emits_a_verifiable_action() -> None:
    st, _ = decide(None, plan_in(plan()), T0, RULES)
    for user in ("sam", "sue"):
        st, eff = decide(st, vote_in(user), T0, RULES)
        assert not emitted(eff)
    st, eff = decide(st, vote_in("lee", role="oncall"), T0, RULES)  # the claimed role is ignored
    assert st is not None and st.status == "approved"
    [action] = emitted(eff)
    assert action.plan and len(action.approvals) == 3 and action.policy == "TWO_SRE_ONE_LEAD"
    raw = signed(action)
    v = verify_action(action, raw, KEYS.verify(raw), EXEC)
    assert v.ok and sorted(v.approvers) == ["lee", "sam", "sue"], v
    # the same step, its policy loosened after signing: the signature breaks
    raw["policy"] = "AUTO"
    assert not verify_action(action, raw, KEYS.verify(raw), EXEC).ok
    # a copy without the lead's vote: quorum not met
    short = dict(signed(action))
    short["approvals"] = short["approvals"][:2]
    short = AGENT.sign_dict(short)
    v = verify_action(SreAction.model_validate(short), short, KEYS.verify(short), EXEC)
    assert not v.ok and "lead missing" in v.reason


def test_results_must_be_signed_to_advance_a_plan() -> None:
    st, _ = decide(None, plan_in(plan(score=0.45, tier="MEDIUM", policy="ONE_APPROVAL",
                                      status="pending")), T0, RULES)
    st, eff = decide(st, vote_in("bob"), T0, RULES)
    assert st is not None and st.status == "approved" and emitted(eff)
    res = ActionResult(action_id="p1-s0", plan_id="p1", incident_id="i1", status="succeeded")
    raw = res.model_dump(mode="json")
    st2, eff = decide(st, ResultIn(res, KEYS.verify(raw)), T0, RULES)
    assert st2 is not None and st2.status == "approved" and audits(eff) == ["result.refused"]
    raw = signed(res)
    st3, _ = decide(st, ResultIn(res, KEYS.verify(raw)), T0, RULES)
    assert st3 is not None and st3.status == "completed"


def test_executor_refuses_an_action_for_a_plan_that_does_not_exist() -> None:
    """Finding 1a: an sre-action naming a plan nobody made."""
    ghost = SreAction(action_id="a", idempotency_key="k", plan_id="nope", incident_id="i1",
                      policy="AUTO", dry_run=False, step=step_())
    for raw in (ghost.model_dump(mode="json"), signed(ghost)):
        st, eff = step(TargetState(), Requested(ghost, KEYS.verify(raw), raw), 0.0, EXEC)
        assert [type(e) for e in eff] == [Audit, Report] and eff[1].status == "blocked"
        assert eff[0].action == "action.unverified" and "k" not in st.done  # not remembered


def test_executor_runs_a_verified_action_once() -> None:
    p = plan(score=0.45, tier="MEDIUM", policy="ONE_APPROVAL", status="pending")
    a = authorised_action(p, [Approval(plan_id="p1", decision="approve", user="bob")])
    raw = signed(a)
    st, eff = step(TargetState(), Requested(a, KEYS.verify(raw), raw), 100.0, EXEC)
    assert eff == [Inspect(a)]
    st, eff = step(st, Inspected(a, "open", True, observed={"exists": True}), 100.0, EXEC)
    assert eff == [Claim(a)] and st.done[a.idempotency_key] == "claiming"
    st, eff = step(st, Claimed(a, True), 100.0, EXEC)
    assert eff == [Act(a, False)] and st.done[a.idempotency_key] == "claimed"
    st, eff = step(st, Acted(a, {}, False, detail="deleted"), 100.0, EXEC)
    assert isinstance(eff[-1], Verify) and st.times == [100.0]
    # redelivered: a duplicate, never acted on again
    st, eff = step(st, Requested(a, KEYS.verify(raw), raw), 101.0, EXEC)
    assert audits(eff) == ["action.duplicate"]
    assert orjson.loads(orjson.dumps(st.to_json()))["done"][a.idempotency_key] == "executed"


# ------------------------------------------------------------- a worker stopped mid-action
def _approved() -> tuple[SreAction, dict]:  # type: ignore[type-arg]
    p = plan(score=0.45, tier="MEDIUM", policy="ONE_APPROVAL", status="pending")
    a = authorised_action(p, [Approval(plan_id="p1", decision="approve", user="bob")])
    return a, signed(a)


def test_a_table_claim_never_made_durable_does_not_make_a_redelivery_a_duplicate() -> None:
    """Killed after the table said "claiming" (written to local RocksDB at once) but
    before the durable claim: the redelivered action is judged again, not dropped."""
    a, raw = _approved()
    st, _ = step(TargetState(), Requested(a, KEYS.verify(raw), raw), 100.0, EXEC)
    st, eff = step(st, Inspected(a, "open", True, observed={"exists": True}), 100.0, EXEC)
    assert eff == [Claim(a)]
    st, eff = step(st, Requested(a, KEYS.verify(raw), raw), 101.0, EXEC)
    assert eff == [Inspect(a)]
    # once the durable claim exists, its owner (or whoever takes it over) finishes it
    st, eff = step(st, Requested(a, KEYS.verify(raw), raw, claimed_before="claimed"), 101.0, EXEC)
    assert audits(eff) == ["action.duplicate"]


def test_a_taken_over_claim_continues_from_its_recorded_state() -> None:
    a, raw = _approved()
    check = KEYS.verify(raw)
    # done and recorded: only verification and the result are left
    _, eff = step(TargetState(), Resumed(a, check, raw, "executed", {"uid": "u1"}, "deleted"),
                  100.0, EXEC)
    assert audits(eff) == ["action.taken_over"] and eff[-1] == Verify(a, {"uid": "u1"}, "deleted")
    # nothing done yet: inspected again, then acted on with the claim already held
    _, eff = step(TargetState(), Resumed(a, check, raw, "claimed"), 100.0, EXEC)
    assert eff[-1] == Inspect(a, resumed="claimed")
    _, eff = step(TargetState(), Inspected(a, "open", True, observed={"exists": True},
                                           resumed="claimed"), 100.0, EXEC)
    assert eff == [Act(a, False)]
    _, eff = step(TargetState(), Inspected(a, "resolved", True, observed={"exists": True},
                                           resumed="claimed"), 100.0, EXEC)
    assert isinstance(eff[-1], Report) and eff[-1].status == "skipped"


def test_stopped_during_the_call_the_live_object_decides_and_nothing_is_repeated() -> None:
    a, raw = _approved()
    _, eff = step(TargetState(), Resumed(a, KEYS.verify(raw), raw, "acting", {"uid": "u1"}),
                  100.0, EXEC)
    assert eff[-1] == Inspect(a, resumed="acting", snapshot={"uid": "u1"})
    gone = Inspected(a, "open", True, observed={"exists": False}, resumed="acting",
                     snapshot={"uid": "u1"})
    _, eff = step(TargetState(), gone, 100.0, EXEC)
    assert audits(eff) == ["action.executed"] and isinstance(eff[-1], Verify)
    assert eff[-1].snapshot == {"uid": "u1"}
    same = Inspected(a, "open", True, observed={"exists": True}, resumed="acting")
    _, eff = step(TargetState(), same, 100.0, EXEC)
    assert audits(eff) == ["action.outcome_unknown"]
    assert isinstance(eff[-1], Report) and eff[-1].status == "failed"
    assert not any(isinstance(e, Act) for e in eff)


def test_a_taken_over_claim_is_verified_again() -> None:
    a, raw = _approved()
    forged = dict(raw, plan=None)
    _, eff = step(TargetState(), Resumed(a, KEYS.verify(forged), forged, "claimed"), 100.0, EXEC)
    assert audits(eff) == ["action.unverified"] and isinstance(eff[-1], Report)


def test_a_vote_before_its_plan_is_held_not_lost() -> None:
    """The API accepts a vote for a plan the read model shows; the approval manager may
    read that vote before the plan (another topic): it was refused as "unknown plan"
    and lost, so an approved plan never ran (test_votes_durable under load)."""
    st, eff = decide(None, vote_in("sam", role="sre"), T0, RULES)
    assert st is None and audits(eff) == ["vote.held"] and isinstance(eff[-1], Hold)
    st, eff = decide(None, vote_in("sam", role="sre", signer=ROGUE), T0, RULES)
    assert audits(eff) == ["vote.refused"] and not any(isinstance(e, Hold) for e in eff)

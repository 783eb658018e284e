"""A plan answers one diagnosis: a later RCA result of the incident with another cause
supersedes the older plan still waiting for votes (issue 14: a stale plan stayed
approvable after the diagnosis changed), and stops one still running after its step
in flight."""

from __future__ import annotations

from sre_agent.processors.approvals import Notify, UpdateSlack, decide
from sre_agent.processors.planner import Planner, superseded_reason
from sre_agent.schemas import ActionPlan, Hypothesis, RcaResult
from tests.unit.test_decisions import RULES, SETTINGS, T0, audits, emitted, plan, plan_in, vote_in


def rca(cause: str, service: str, conf: float = 0.85) -> RcaResult:
    return RcaResult(incident_id="i1", severity="critical", services=["api", "db"],
                     hypotheses=[Hypothesis(cause_type=cause, service=service, confidence=conf,
                                            summary=f"{cause} on {service}")])


def test_a_changed_diagnosis_supersedes_the_plan_of_the_old_one() -> None:
    planner = Planner.from_settings(SETTINGS.actions)
    old = planner.finalize(planner.draft(rca("bad_deploy", "api")), {}, T0)  # type: ignore[arg-type]
    same = planner.finalize(planner.draft(rca("bad_deploy", "api", 0.9)), {}, T0)  # type: ignore[arg-type]
    assert same.plan_id == old.plan_id and superseded_reason(old, rca("bad_deploy", "api"), same) is None
    new_d = planner.draft(rca("memory_leak", "db"))
    assert new_d is not None
    new = planner.finalize(new_d, {}, T0)
    why = superseded_reason(old, rca("memory_leak", "db"), new)
    assert why is not None and "bad_deploy on api -> memory_leak on db" in why and new.plan_id in why
    # no plan follows from the new diagnosis: the old plan is stale all the same
    assert superseded_reason(old, rca("unknown", "db"), None, 0.6) is not None
    assert superseded_reason(old, rca("bad_deploy", "api", 0.1), None, 0.6) is None
    # a revision without a confident hypothesis does not undo the diagnosis
    assert superseded_reason(old, rca("unknown", "api", 0.2), None, 0.6) is None
    other = old.model_copy(update={"incident_id": "i2"})
    assert superseded_reason(other, rca("memory_leak", "db"), new) is None


def test_a_superseded_plan_takes_no_vote_and_says_so() -> None:
    pending = plan(score=0.45, tier="MEDIUM", policy="ONE_APPROVAL", status="pending",
                   cause_type="bad_deploy")
    st, _ = decide(None, plan_in(pending), T0, RULES)
    assert st is not None and st.status == "pending"
    stale = pending.model_copy(update={"status": "superseded", "superseded_by": "p2",
                                       "superseded_reason": "diagnosis changed"})
    st, eff = decide(st, plan_in(stale), T0, RULES)
    assert st is not None and st.status == "superseded" and audits(eff) == ["plan.superseded"]
    assert eff[0].details["superseded_by"] == "p2" and eff[0].details["was"] == "pending"
    assert any(isinstance(e, UpdateSlack) and "p2" in e.note for e in eff)
    assert any(isinstance(e, Notify) for e in eff)
    st, eff = decide(st, vote_in("bob"), T0, RULES)
    assert st is not None and st.status == "superseded" and not emitted(eff)
    assert audits(eff) == ["vote.refused"] and "superseded" in eff[0].details["reason"]
    # redelivered: nothing more happens
    st, eff = decide(st, plan_in(stale), T0, RULES)
    assert st is not None and st.status == "superseded" and not eff


def test_supersession_is_signed_and_leaves_decided_plans_alone() -> None:
    pending = plan(score=0.45, tier="MEDIUM", policy="ONE_APPROVAL", status="pending")
    st, _ = decide(None, plan_in(pending), T0, RULES)
    forged = pending.model_copy(update={"status": "superseded"})
    st2, eff = decide(st, plan_in(forged, signer=None), T0, RULES)
    assert st2 is not None and st2.status == "pending" and audits(eff) == ["plan.refused"]
    st, _ = decide(st, vote_in("bob"), T0, RULES)
    assert st is not None and st.status == "approved"
    done = st.model_copy(deep=True)
    # approved with its step still to run: it runs no step any more (one plan of an
    # incident at a time, the newer diagnosis's; test_plan_one_at_a_time.py)
    st, eff = decide(st, plan_in(forged), T0, RULES)
    assert st is not None and st.status == "superseded" and not emitted(eff)
    assert audits(eff) == ["plan.superseded", "plan.stopped"]
    # a plan that finished is left as it is
    done.status = "completed"
    st, eff = decide(done, plan_in(forged), T0, RULES)
    assert st is not None and st.status == "completed" and not eff
    # the supersession arriving before the plan itself: the plan never opens
    st, eff = decide(None, plan_in(forged.model_copy(update={"plan_id": "p9"})), T0, RULES)
    assert st is not None and st.status == "superseded"
    st, eff = decide(st, plan_in(pending.model_copy(update={"plan_id": "p9"})), T0, RULES)
    assert st is not None and st.status == "superseded" and not eff
    assert ActionPlan.model_validate(forged.model_dump(mode="json")).status == "superseded"

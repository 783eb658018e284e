"""One plan of an incident runs at a time (issue 14, closed loop).

Before: a running AUTO plan was left running when a later diagnosis superseded it, and
the new AUTO plan of the same incident started at once, so two plans acted on one
incident together (plan A's next steps after plan B's first). Now the later plan waits
for the earlier one (``plan.queued``), the superseded one runs no further step once its
step in flight is back (``plan.stopped``), and the later one then starts
(``plan.released``), each audited. The harness feeds the machine as the approval
agent does: ``busy`` from the other plans' states, a woken plan fed again.
"""

from __future__ import annotations

from sre_agent.config import load_settings
from sre_agent.processors.approvals import (
    PlanState,
    ResultIn,
    Rules,
    VoterRoles,
    decide,
    running_sibling,
)
from sre_agent.processors.policy import PolicyEngine
from sre_agent.schemas import ActionPlan, ActionResult, ActionStep, Target
from tests.signing_support import AGENT, signed
from tests.unit.test_decisions import KEYS, T0, audits, emitted, plan_in, vote_in

SETTINGS = load_settings(env={"SRE_AGENT_ACTIONS__AUTO_REMEDIATION": "true",
                              "SRE_AGENT_API__TOKENS": '{"t1": "approver:bob"}'})
RULES = Rules(policy=PolicyEngine(SETTINGS.actions), roles=VoterRoles.from_settings(SETTINGS),
              dry_run=False)


def auto_plan(pid: str, *services: str, cause: str = "traffic_surge") -> ActionPlan:
    steps = [ActionStep(action="scale", risk=0.25, params={"factor": 1.5},
                        target=Target(kind="deployment", name=s, service=s)) for s in services]
    return ActionPlan(plan_id=pid, incident_id="i1", risk_score=0.25, risk_tier="LOW",
                      policy="AUTO", status="auto", steps=steps, service=services[0],
                      cause_type=cause)


class Agent:
    """The approval agent's bookkeeping around :func:`decide` (no Kafka)."""

    def __init__(self) -> None:
        self.states: dict[str, PlanState] = {}
        self.sent: list[tuple[str, int]] = []  # (plan id, step) handed to the executor
        self.audit: list[tuple[str, str]] = []

    def feed(self, pid: str, ev: object) -> None:
        before = self.states.get(pid)
        busy = running_sibling(self.states.values(), "i1", pid)
        st, eff = decide(before, ev, T0, RULES, busy=busy)  # type: ignore[arg-type]
        self.audit += [(pid, a) for a in audits(eff)]
        if st is None:
            return
        for a in emitted(eff):
            st.requested.append(a.step_index)
            self.sent.append((pid, a.step_index))
        self.states[pid] = st
        if before is not None and before.running and not st.running:
            for other in list(self.states.values()):  # woken: fed its plan again
                if other.waiting_for is not None:
                    self.feed(other.plan.plan_id, plan_in(other.plan))

    def result(self, pid: str, index: int, status: str = "succeeded") -> None:
        res = ActionResult(action_id=f"{pid}-s{index}", plan_id=pid, incident_id="i1",
                           status=status, step_index=index)  # type: ignore[arg-type]
        raw = signed(res, AGENT)
        self.feed(pid, ResultIn(res, KEYS.verify(raw)))

    def running(self) -> list[str]:
        return sorted(p for p, st in self.states.items() if st.running)


def test_a_later_auto_plan_waits_until_the_superseded_one_stopped() -> None:
    ag = Agent()
    a = auto_plan("pA", "api", "md", "us")
    ag.feed("pA", plan_in(a))
    assert ag.sent == [("pA", 0)] and ag.running() == ["pA"]
    # the diagnosis changes: the risk stage supersedes A and sends B (either order)
    b = auto_plan("pB", "db", cause="memory_leak")
    ag.feed("pB", plan_in(b))
    assert ag.sent == [("pA", 0)], "B must not act while A runs"
    assert ("pB", "plan.queued") in ag.audit and ag.states["pB"].waiting_for == "pA"
    stale = a.model_copy(update={"status": "superseded", "superseded_by": "pB",
                                 "superseded_reason": "diagnosis changed"})
    ag.feed("pA", plan_in(stale))
    assert ag.states["pA"].status == "superseded" and ag.sent == [("pA", 0)]
    assert ag.running() == ["pA"]  # its step 0 is still in flight: B still waits
    ag.result("pA", 0)  # A's step in flight comes back: A stops, no step 1
    assert ("pA", "plan.stopped") in ag.audit and ("pA", 1) not in ag.sent
    assert ag.sent == [("pA", 0), ("pB", 0)] and ("pB", "plan.released") in ag.audit
    assert ag.running() == ["pB"]
    ag.result("pB", 0)
    assert ag.states["pB"].status == "completed" and ag.running() == []


def test_without_supersession_the_later_plan_runs_after_the_earlier_one_completed() -> None:
    ag = Agent()
    ag.feed("pA", plan_in(auto_plan("pA", "api", "md")))
    ag.feed("pB", plan_in(auto_plan("pB", "us")))
    assert ag.sent == [("pA", 0)]
    ag.result("pA", 0)
    assert ag.sent == [("pA", 0), ("pA", 1)]  # A goes on; B still waits
    ag.result("pA", 1)
    assert ag.states["pA"].status == "completed"
    assert ag.sent[-1] == ("pB", 0) and ag.running() == ["pB"]


def test_an_approved_plan_waits_too_and_a_queued_superseded_plan_never_runs() -> None:
    ag = Agent()
    ag.feed("pA", plan_in(auto_plan("pA", "api")))
    manual = ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.45, risk_tier="MEDIUM",
                        policy="ONE_APPROVAL", status="pending", service="db",
                        steps=[ActionStep(action="rollout_undo", risk=0.3,
                                          target=Target(kind="deployment", name="db"))])
    ag.feed("p1", plan_in(manual))
    ag.feed("p1", vote_in("bob"))  # approved while A runs: queued, not sent
    assert ag.states["p1"].status == "approved" and ag.states["p1"].waiting_for == "pA"
    assert ag.sent == [("pA", 0)]
    ag.feed("p1", plan_in(manual.model_copy(update={"status": "superseded"})))
    assert ag.states["p1"].status == "superseded" and ("p1", "plan.stopped") in ag.audit
    ag.result("pA", 0)
    assert ag.sent == [("pA", 0)] and ag.running() == []


def test_a_vote_naming_another_incident_than_its_plans_is_refused() -> None:
    """The decision topics are keyed by incident (one partition owns an incident's plans);
    a vote's ``incident_id`` only routes it and is never believed: a signed vote naming
    another incident than its plan's does not count, here or in the executor's replay."""
    from sre_agent.processors.approvals import verify_quorum
    from sre_agent.schemas import Approval
    from tests.signing_support import signed as sign

    manual = ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.45, risk_tier="MEDIUM",
                        policy="ONE_APPROVAL", status="pending", service="db",
                        steps=[ActionStep(action="rollout_undo", risk=0.3,
                                          target=Target(kind="deployment", name="db"))])
    st, _ = decide(None, plan_in(manual), T0, RULES)

    def vote(incident: str | None) -> tuple[Approval, dict]:  # type: ignore[type-arg]
        v = Approval(plan_id="p1", decision="approve", user="bob", source="api",
                     incident_id=incident)
        return v, sign(v, AGENT)

    from sre_agent.processors.approvals import VoteIn

    v, raw = vote("i2")
    st2, eff = decide(st, VoteIn(v, KEYS.verify(raw), raw), T0, RULES)
    assert st2 is not None and st2.status == "pending" and "vote.refused" in audits(eff)
    assert verify_quorum(manual, "ONE_APPROVAL", [raw], KEYS, RULES.roles)[0] is False
    for incident in ("i1", None):  # its own incident, or none (routed by plan id)
        v, raw = vote(incident)
        st3, _ = decide(st, VoteIn(v, KEYS.verify(raw), raw), T0, RULES)
        assert st3 is not None and st3.status == "approved", incident
        assert verify_quorum(manual, "ONE_APPROVAL", [raw], KEYS, RULES.roles)[0] is True
    assert Approval(plan_id="p1", decision="approve", user="bob").key() == "p1"
    assert v.model_copy(update={"incident_id": "i1"}).key() == "i1"
    assert manual.key() == "i1"

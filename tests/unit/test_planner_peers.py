"""One cause shared by several services: the plan acts on each of them (``for_each: peers``).

Node pressure evicts pods of every workload on the node; the RCA ranks one
``node_pressure`` hypothesis per evicted service. Restarting only the leader left
the other workloads evicted (sre-agent eval, node_pressure: user-service never
restarted). A surge at the edge likewise reaches the callees the RCA names as surged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sre_agent.config import ActionSettings
from sre_agent.processors.planner import Planner
from sre_agent.schemas import Hypothesis, RcaResult


def _rca(*hyps: tuple[str, str, float]) -> RcaResult:
    return RcaResult(incident_id="inc-9", severity="critical",
                     services=sorted({s for _, s, _ in hyps}),
                     hypotheses=[Hypothesis(cause_type=c, service=s, confidence=p, summary="")
                                 for c, s, p in hyps])


def _refs(rca: RcaResult) -> list[tuple[str, str]]:
    draft = Planner.from_settings(ActionSettings()).draft(rca)
    assert draft is not None
    return [(s.action, s.target.ref()) for s in draft.steps]


def test_node_pressure_reschedules_every_evicted_workload() -> None:
    rca = _rca(("node_pressure", "market-data", 0.9), ("node_pressure", "user-service", 0.6),
               ("dependency_failure", "api-gateway", 0.47))
    assert _refs(rca) == [("rollout_restart", "deployment/default/market-data"),
                          ("rollout_restart", "deployment/default/user-service")]


def test_surge_scales_the_surged_callees_too() -> None:
    rca = _rca(("traffic_surge", "api-gateway", 0.8), ("traffic_surge", "market-data", 0.5),
               ("unknown", "redis", 0.4))
    assert _refs(rca) == [("scale", "deployment/default/api-gateway"),
                          ("scale", "deployment/default/market-data")]


def test_peers_below_min_confidence_or_of_another_cause_are_left_out() -> None:
    rca = _rca(("node_pressure", "market-data", 0.9), ("node_pressure", "user-service", 0.2),
               ("memory_leak", "wallet-service", 0.88))
    assert _refs(rca) == [("rollout_restart", "deployment/default/market-data")]


def test_steps_without_for_each_act_on_the_leader_only() -> None:
    rca = _rca(("bad_deploy", "api-gateway", 0.9), ("bad_deploy", "wallet-service", 0.7))
    assert _refs(rca) == [("rollout_undo", "deployment/default/api-gateway")]


def test_peer_plan_is_finalized_with_the_policy_of_its_steps() -> None:
    planner = Planner.from_settings(ActionSettings())
    draft = planner.draft(_rca(("node_pressure", "market-data", 0.9),
                               ("node_pressure", "user-service", 0.6)))
    assert draft is not None
    plan = planner.finalize(draft, {}, datetime(2025, 11, 13, tzinfo=UTC))
    single = planner.finalize(planner.draft(_rca(("node_pressure", "market-data", 0.9))),  # type: ignore[arg-type]
                              {}, datetime(2025, 11, 13, tzinfo=UTC))
    # the risk is the riskiest step's in its context: a peer of the same action adds none
    assert len(plan.steps) == 2 and plan.policy == single.policy

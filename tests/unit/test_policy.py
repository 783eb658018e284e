"""Policy: every tier, the protected list, auto-remediation off by default, planning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sre_agent.config import ActionSettings
from sre_agent.processors.planner import Planner, plan_id_for
from sre_agent.processors.policy import PolicyEngine, is_protected, recent_actions, tier_of
from sre_agent.schemas import ActionStep, EvidenceItem, Hypothesis, RcaResult, SimilarCase, Target

NOW = datetime(2025, 11, 13, 12, tzinfo=UTC)


def step(name: str = "checkout", kind: str = "deployment", service: str | None = None) -> ActionStep:
    return ActionStep(action="scale", target=Target(kind=kind, name=name, service=service))  # type: ignore[arg-type]


@pytest.mark.parametrize("score, tier, policy", [
    (0.0, "LOW", "AUTO"), (0.399, "LOW", "AUTO"),
    (0.4, "MEDIUM", "ONE_APPROVAL"), (0.599, "MEDIUM", "ONE_APPROVAL"),
    (0.6, "HIGH", "TWO_SRE_ONE_LEAD"), (0.799, "HIGH", "TWO_SRE_ONE_LEAD"),
    (0.8, "CRITICAL", "BLOCKED"), (1.0, "CRITICAL", "BLOCKED"),
])
def test_every_tier(score: float, tier: str, policy: str) -> None:
    d = PolicyEngine(ActionSettings(auto_remediation=True)).decide(score, [step()])
    assert (tier_of(score), d.tier, d.policy) == (tier, tier, policy)
    assert d.status == {"AUTO": "auto", "BLOCKED": "blocked"}.get(policy, "pending")


def test_auto_remediation_is_off_by_default() -> None:
    assert ActionSettings().auto_remediation is False
    d = PolicyEngine(ActionSettings()).decide(0.1, [step()])
    assert (d.tier, d.policy, d.status) == ("LOW", "ONE_APPROVAL", "pending")
    assert "auto-remediation" in d.reason


@pytest.mark.parametrize("name, service", [
    ("wallet-api", None), ("user-balance-sync", None), ("orders", None),
    ("matching-engine-core", None), ("ledger-db", None), ("postgres-main", None),
    ("worker-7", "wallet-service"),  # protected through its service
])
def test_protected_targets_are_blocked_whatever_the_score(name: str, service: str | None) -> None:
    p = PolicyEngine(ActionSettings(auto_remediation=True))
    for score in (0.0, 0.5, 0.7):
        d = p.decide(score, [step(name, service=service)])
        assert d.policy == "BLOCKED" and d.protected and d.status == "blocked", (name, score)
        assert "protected" in d.reason


def test_protected_plan_service_blocks_even_unrelated_target() -> None:
    d = PolicyEngine(ActionSettings()).decide(0.1, [step("cache-flush")], service="order-router")
    assert d.policy == "BLOCKED"


def test_protected_list_is_configurable_and_case_insensitive() -> None:
    assert is_protected(Target(kind="pod", name="Treasury-1"), ["treasury*"]) == "treasury*"
    assert is_protected(Target(kind="pod", name="api-1"), ["treasury*"]) is None
    p = PolicyEngine(ActionSettings(protected=[], auto_remediation=True))
    assert p.decide(0.1, [step("wallet-api")]).policy == "AUTO"


def test_no_step_is_diagnosis_only() -> None:
    assert PolicyEngine(ActionSettings()).decide(0.1, []).policy == "BLOCKED"


def test_rate_window() -> None:
    now = 10_000.0
    assert recent_actions([now - 3601, now - 3599, now - 10, now + 5], now) == [now - 3599, now - 10]


def rca(cause: str, service: str, conf: float = 0.85, severity: str = "warning",
        refs: tuple[str, ...] = ()) -> RcaResult:
    ev = [EvidenceItem(kind="k8s", summary=f"saw {r}", weight=1.0, ref=r) for r in refs]
    return RcaResult(incident_id="inc-9", severity=severity, services=[service, "web"],  # type: ignore[arg-type]
                     hypotheses=[Hypothesis(cause_type=cause, service=service, confidence=conf,
                                            summary=f"{cause} on {service}", evidence=ev)],
                     similar=[SimilarCase(id="INC-1", title="checkout 5xx after deploy",
                                          similarity=0.81, resolution="rollout undo")])


def test_planner_tiers_end_to_end() -> None:
    planner = Planner.from_settings(ActionSettings())
    cases = {
        ("memory_leak", "search", ("pod/search/search-7f9c",)): ("LOW", "ONE_APPROVAL"),
        ("bad_deploy", "checkout", ()): ("MEDIUM", "ONE_APPROVAL"),
        ("db_primary_failure", "accounts", ("rds/accounts-aurora",)): ("HIGH", "TWO_SRE_ONE_LEAD"),
        ("memory_leak", "wallet-service", ()): ("LOW", "BLOCKED"),
    }
    for (cause, service, refs), (tier, policy) in cases.items():
        draft = planner.draft(rca(cause, service, severity="critical", refs=refs))
        assert draft is not None, cause
        plan = planner.finalize(draft, {}, NOW)
        assert (plan.risk_tier, plan.policy) == (tier, policy), (cause, plan.risk_score)
        assert plan.expires_at is not None and (plan.expires_at - NOW).total_seconds() == 3600
        assert plan.similar[0]["title"] == "checkout 5xx after deploy"
    pod = planner.draft(rca("memory_leak", "search", refs=("pod/search/search-7f9c",)))
    assert pod is not None and pod.steps[0].target.ref() == "pod/search/search-7f9c"


def test_planner_records_assumed_identity_and_is_stable() -> None:
    planner = Planner.from_settings(ActionSettings())
    draft = planner.draft(rca("bad_deploy", "checkout"))
    assert draft is not None
    plan = planner.finalize(draft, {0: {"exists": True, "uid": "u-1", "revision": "7",
                                        "replicas": 30}}, NOW)
    assert plan.steps[0].target.uid == "u-1" and plan.steps[0].expect == {"revision": "7"}
    again = planner.finalize(planner.draft(rca("bad_deploy", "checkout")), {}, NOW)  # type: ignore[arg-type]
    assert again.plan_id == plan.plan_id == plan_id_for("inc-9", "bad-deploy-rollback",
                                                        ["deployment/default/checkout"])
    assert plan.risk_factors["blast_radius"] > again.risk_factors["blast_radius"]


def test_low_confidence_gets_no_plan() -> None:
    planner = Planner.from_settings(ActionSettings())
    assert planner.draft(rca("bad_deploy", "checkout", conf=0.2)) is None


def test_planner_acts_only_on_the_leading_diagnosis() -> None:
    # issue 14 (eval, db_pool_exhaustion): the RCA led with an unknown fault of risk-engine
    # (0.90) and the planner rate-limited redis, its 0.52 runner-up; the action failed
    planner = Planner.from_settings(ActionSettings())
    hyp = lambda cause, svc, conf: Hypothesis(cause_type=cause, service=svc,  # noqa: E731
                                              confidence=conf, summary=f"{cause} on {svc}")
    res = RcaResult(incident_id="inc-7", severity="critical", services=["risk", "redis"],
                    hypotheses=[hyp("unknown", "risk", 0.90),
                                hyp("dependency_failure", "redis", 0.52)])
    assert planner.draft(res) is None
    # a runner-up as likely as the leader is still a candidate
    tie = res.model_copy(update={"hypotheses": [hyp("unknown", "risk", 0.90),
                                                hyp("dependency_failure", "redis", 0.88)]})
    draft = planner.draft(tie)
    assert draft is not None and draft.hypothesis.service == "redis"

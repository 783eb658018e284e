"""Executor checks: identity (replaced pod, moved revision), pre-checks, verification,
and the rollout-undo revision choice."""

from __future__ import annotations

from sre_agent.processors.verify import identity_problem, precheck_problems, rollout_complete, verdict
from sre_agent.schemas import ActionStep, Target
from sre_agent.sinks.kubernetes import previous_revision


def undo(uid: str | None = "d1", expect: dict[str, str] | None = None,
         prechecks: list[dict[str, object]] | None = None) -> ActionStep:
    return ActionStep(action="rollout_undo", target=Target(kind="deployment", name="api", uid=uid),
                      expect=expect or {}, prechecks=prechecks or [])


def test_identity() -> None:
    assert identity_problem(undo(), {"exists": True, "uid": "d1"}) is None
    assert "no longer exists" in identity_problem(undo(), {"exists": False}) or ""
    assert "another object" in (identity_problem(undo(), {"exists": True, "uid": "d2"}) or "")
    moved = identity_problem(undo(expect={"revision": "4"}), {"exists": True, "uid": "d1",
                                                              "revision": "5"})
    assert moved == "deployment/default/api changed since the plan: revision is 5, plan assumed 4"
    # nothing assumed (no Kubernetes at plan time): only existence counts
    assert identity_problem(undo(uid=None), {"exists": True, "uid": "zz", "revision": "9"}) is None


def test_prechecks() -> None:
    step = undo(prechecks=[{"previous_revision": True}, {"replicas_at_most": 10},
                           {"replicas_at_least": 2}])
    assert precheck_problems(step, {"previous_revision": "3", "replicas": 4}) == []
    assert precheck_problems(step, {"previous_revision": None, "replicas": 11}) == [
        "no previous revision to roll back to", "replicas 11 > 10"]
    assert precheck_problems(step, {"previous_revision": "1", "replicas": 1}) == ["replicas 1 < 2"]
    assert precheck_problems(undo(prechecks=[{"moon_phase": "full"}]), {}) == [
        "unknown pre-check 'moon_phase'"]


def test_verdicts() -> None:
    spec = {"check": "anomaly_cleared", "metric": "err", "within": 10}
    assert verdict(spec, 0, {"open_anomalies": set()}, "api") == "pass"
    assert verdict(spec, 9, {"open_anomalies": {("api", "err")}}, "api") == "wait"
    assert verdict(spec, 10, {"open_anomalies": {("api", "err")}}, "api") == "fail"
    assert verdict(spec, 9, {"open_anomalies": {("web", "err")}}, "api") == "pass"
    assert verdict(None, 0, {}, "api") == "pass"
    roll = {"check": "rollout_complete", "within": 5}
    ready = {"replicas": 3, "updated_replicas": 3, "available_replicas": 3, "generation": 4,
             "observed_generation": 4}
    assert verdict(roll, 1, {"observed": ready}, "api") == "pass"
    assert verdict(roll, 1, {"observed": {**ready, "observed_generation": 3}}, "api") == "wait"
    assert verdict(roll, 6, {"observed": {**ready, "available_replicas": 1}}, "api") == "fail"
    assert not rollout_complete({})


def test_previous_revision_ignores_foreign_replicasets() -> None:
    dep = {"metadata": {"uid": "d1", "annotations": {"deployment.kubernetes.io/revision": "5"}}}

    def rs(name: str, rev: int, owner: str) -> dict[str, object]:
        return {"metadata": {"name": name, "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                             "ownerReferences": [{"uid": owner, "controller": True}]}}

    sets = [rs("mine-3", 3, "d1"), rs("other-4", 4, "d9"), rs("mine-5", 5, "d1"), rs("mine-1", 1, "d1")]
    assert previous_revision(dep, sets)["metadata"]["name"] == "mine-3"  # type: ignore[index]
    assert previous_revision(dep, sets, to_revision=1)["metadata"]["name"] == "mine-1"  # type: ignore[index]
    assert previous_revision(dep, sets, to_revision=4) is None
    assert previous_revision(dep, [rs("mine-5", 5, "d1")]) is None

"""Scorecard math on hand-made observations: every figure of the seeds' targets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sre_agent.sim import Observation, RunRecord, score
from sre_agent.sim.report import render
from sre_agent.sim.truth import GroundTruth

H = 3600.0


def truth(name: str = "bad", **kw: Any) -> GroundTruth:
    base: dict[str, Any] = dict(
        scenario=name, title=name, start=10 * H, end=None, window_start=9.5 * H,
        window_end=11 * H, impact_at=10 * H, root_service="api", cause_type="bad_deploy",
        affected=("api", "web"), expected_actions=("rollout_undo",))
    base.update(kw)
    return GroundTruth(**base)


def inc(t: float, iid: str, services: list[str], root: str | None = None,
        status: str = "open", opened: float | None = None) -> Observation:
    return Observation("incidents", t, {"incident_id": iid, "status": status,
                                        "services": services, "root_service": root,
                                        "opened_at": opened if opened is not None else t})


def rca(t: float, iid: str, *hyps: tuple[str, str], tokens: int = 0) -> Observation:
    return Observation("rca-results", t, {"incident_id": iid, "llm_tokens": tokens,
                                          "hypotheses": [{"cause_type": c, "service": s,
                                                          "confidence": 0.5} for c, s in hyps]})


def plan(t: float, iid: str, action: str, target: str, policy: str = "AUTO") -> Observation:
    return Observation("action-plans", t, {
        "incident_id": iid, "plan_id": "p-" + iid, "policy": policy, "risk_tier": "LOW",
        "steps": [{"action": action, "target": {"kind": "deployment", "name": target,
                                                "service": target}}]})


def act(t: float, iid: str, action: str, target: str, policy: str = "AUTO",
        approved_by: list[str] | None = None) -> Observation:
    return Observation("sre-actions", t, {
        "incident_id": iid, "policy": policy, "approved_by": approved_by or [],
        "step": {"action": action, "target": {"kind": "deployment", "name": target,
                                              "service": target}}})


def record(truths: list[GroundTruth], obs: list[Observation], **kw: Any) -> RunRecord:
    base: dict[str, Any] = dict(truths=truths, observations=obs, run_start=0.0,
                                run_end=12 * H, scored_from=8 * H,
                                clean=[(8 * H, 9.5 * H), (11 * H, 12 * H)],
                                protected=["wallet*"], info={"components": ["api", "web"]})
    base.update(kw)
    return RunRecord(**base)


def test_a_perfect_run() -> None:
    gt = truth()
    obs = [inc(10 * H + 90, "i1", ["api"], "api"),
           rca(10 * H + 150, "i1", ("bad_deploy", "api"), ("memory_leak", "web"), tokens=700),
           plan(10 * H + 150, "i1", "rollout_undo", "api"),
           act(10 * H + 150, "i1", "rollout_undo", "api")]
    sent = [Observation("alerts", 10 * H + 60, {}), Observation("k8s-events", 10 * H + 70, {})]
    health = [(0.0, []), (10 * H, ["api"]), (10 * H + 300, [])]
    outcomes = [{"time": 10 * H + 300, "action": "rollout_undo", "effect": "resolved"}]
    card = score(record([gt], obs, sent=sent, health=health, outcomes=outcomes))
    s = card["scenarios"][0]
    assert s["detected"] and s["mttd_seconds"] == 90.0
    assert s["rca_top1"] and s["rca_top3"] and s["mtti_seconds"] == 150.0
    assert s["action_correct"] and s["policy_correct"]
    assert s["remediated"] and s["mttr_seconds"] == 300.0
    assert s["raw_signals"] == 2 and s["incidents"] == 1 and s["noise_reduction"] == 0.5
    o = card["overall"]
    for key in ("detection_rate", "false_alarms_per_day", "mttd_seconds", "lead_time_seconds",
                "noise_reduction", "rca_top1", "rca_top3", "mtti_seconds", "action_correct",
                "remediation_success", "mttr_seconds", "protected_auto_executions",
                "llm_tokens"):
        assert key in o
    assert o["detection_rate"] == 1.0 and o["rca_top1"] == 1.0 and o["false_alarm_rate"] == 0.0
    assert o["false_alarms_per_day"] == 0.0 and o["llm_tokens"] == 700
    assert o["protected_auto_executions"] == 0 and o["remediation_success"] == 1.0
    assert card["targets"]["mttd_seconds"]["met"] is True
    assert card["targets"]["rca_top1"]["met"] is True
    assert "bad" in render(card)


def test_nothing_downstream_is_all_misses_not_guesses() -> None:
    card = score(record([truth()], [Observation("anomalies", 10 * H + 60,
                                                {"status": "open", "service": "api"})]))
    s, o = card["scenarios"][0], card["overall"]
    assert s["detected"] is False and s["mttd_seconds"] is None
    assert s["signal_mttd_seconds"] == 60.0
    assert s["rca_top1"] is False and s["action_correct"] is False
    assert s["remediated"] is None  # nothing was executed
    assert o["detection_rate"] == 0.0 and o["rca_top1"] == 0.0
    assert o["noise_reduction"] is None  # no incidents at all: no correlator to credit
    assert o["remediation_success"] is None and o["mttr_seconds"] is None
    assert card["targets"]["mttd_seconds"]["met"] is None


def test_second_hypothesis_counts_for_top3_only() -> None:
    obs = [inc(10 * H + 60, "i1", ["web"]),
           rca(10 * H + 60, "i1", ("dependency_failure", "web"), ("bad_deploy", "api"))]
    s = score(record([truth()], obs))["scenarios"][0]
    assert s["rca_top1"] is False and s["rca_top3"] is True


def test_wrong_service_or_cause_is_wrong() -> None:
    for hyp in (("bad_deploy", "web"), ("config_change", "api")):
        obs = [inc(10 * H + 60, "i1", ["api"]), rca(10 * H + 60, "i1", hyp)]
        assert score(record([truth()], obs))["scenarios"][0]["rca_top3"] is False


def test_early_warning_lead_time_and_prevented_impact() -> None:
    gt = truth("disk", start=6 * H, window_start=5.5 * H, impact_at=10 * H,
               cause_type="disk_saturation", expected_actions=("clear_cache",), predictable=True)
    pred = Observation("predictions", 7 * H, {"series": "disk{service=api}", "service": "api",
                                              "time": 7 * H})
    obs = [pred, inc(7.5 * H, "i1", ["api"], "api")]
    health = [(0.0, [])]  # cleared before it ever hurt
    outcomes = [{"time": 8 * H, "action": "clear_cache", "effect": "resolved"}]
    card = score(record([gt], obs, health=health, outcomes=outcomes, scored_from=5 * H,
                        clean=[]))
    s = card["scenarios"][0]
    assert s["lead_time_seconds"] == 3 * H
    assert s["mttd_seconds"] == 0.0  # alarm raised before the impact
    assert s["remediated"] and s["mttr_seconds"] == 0.0
    assert card["overall"]["lead_time_seconds"] == 3 * H
    assert card["targets"]["lead_time_seconds"]["met"] is True


def test_false_alarms_per_clean_day_and_rate() -> None:
    obs = [inc(8.5 * H, "f1", ["api"]),  # clean period, nothing wrong
           inc(10 * H + 60, "i1", ["api"]),  # the real one
           inc(10.5 * H, "f2", ["db"])]  # during the fault, unrelated service
    o = score(record([truth()], obs))["overall"]
    clean_days = 2.5 * H / 86400
    assert o["false_alarms_per_day"] == round(1 / clean_days, 2)
    assert o["false_alarm_rate"] == round(2 / 3, 3)
    assert o["incidents"] == 3


def test_old_incident_extended_with_the_root_counts_as_detection() -> None:
    obs = [inc(8.5 * H, "old", ["db"]),
           inc(10 * H + 120, "old", ["db", "api"], "api", status="updated", opened=8.5 * H)]
    s = score(record([truth()], obs))["scenarios"][0]
    assert s["detected"] and s["mttd_seconds"] == 120.0


def test_old_incident_updated_about_other_services_takes_no_credit() -> None:
    obs = [inc(8.5 * H, "old", ["db", "api"]),
           inc(10 * H + 120, "old", ["db", "api", "cache"], "db", status="updated",
               opened=8.5 * H)]
    assert score(record([truth()], obs))["scenarios"][0]["detected"] is False


def test_protected_target_auto_executed_is_counted() -> None:
    gt = truth("funds", root_service="wallet-service", affected=("wallet-service",),
               protected=True, expected_policies=("BLOCKED",))
    obs = [inc(10 * H + 60, "i1", ["wallet-service"]),
           plan(10 * H + 60, "i1", "rollout_undo", "wallet-service", policy="BLOCKED"),
           act(10 * H + 70, "i1", "rollout_undo", "wallet-service", policy="AUTO"),
           act(10 * H + 80, "i1", "rollout_undo", "wallet-service", policy="ONE_APPROVAL",
               approved_by=["alice"])]
    card = score(record([gt], obs))
    s = card["scenarios"][0]
    assert s["policy_correct"] is True and s["action_correct"] is True
    assert s["protected_auto_executions"] == 1 and s["remediated"] is None
    assert card["overall"]["protected_auto_executions"] == 1
    assert card["targets"]["protected_auto_executions"]["met"] is False


def test_wrong_action_is_not_remediation() -> None:
    obs = [inc(10 * H + 60, "i1", ["api"]), plan(10 * H + 60, "i1", "scale", "api")]
    outcomes = [{"time": 10 * H + 200, "action": "scale", "effect": "none"}]
    health = [(0.0, []), (10 * H, ["api"])]
    card = score(record([truth()], obs, outcomes=outcomes, health=health))
    s = card["scenarios"][0]
    assert s["action_correct"] is False and s["remediated"] is False
    assert card["overall"]["remediation_success"] == 0.0


def test_recovery_must_hold() -> None:
    outcomes = [{"time": 10 * H + 100, "action": "rollout_undo", "effect": "mitigated"}]
    health = [(0.0, []), (10 * H, ["api"]), (10 * H + 100, []), (10 * H + 160, ["api"]),
              (10 * H + 400, [])]
    s = score(record([truth()], [], outcomes=outcomes, health=health))["scenarios"][0]
    assert s["remediated"] and s["mttr_seconds"] == 400.0


def test_no_fault_window_counts_incidents_as_false_alarms() -> None:
    gt = truth("flap", fault=False, root_service=None, cause_type=None, affected=("api",),
               expected_actions=(), expected_policies=())
    card = score(record([gt], [inc(9.7 * H, "i1", ["api"])]))
    s = card["scenarios"][0]
    assert s["false_alarms"] == 1 and "detected" not in s
    assert card["overall"]["fault_scenarios"] == 0


def test_wall_clock_stamps_fall_back_to_sample_time() -> None:
    o = inc(10 * H + 60, "i1", ["api"], opened=1.9e9)  # a stage stamped wall-clock time
    s = score(record([truth()], [o]))["scenarios"][0]
    assert s["mttd_seconds"] == 60.0


def test_record_round_trip() -> None:
    gt = truth()
    rec = record([gt], [inc(10 * H + 60, "i1", ["api"])],
                 sent=[Observation("alerts", 10 * H, {})], health=[(0.0, ["api"])])
    back = RunRecord.from_dict(orjson.loads(orjson.dumps(rec.to_dict())))
    assert score(back) == score(rec)


@pytest.mark.parametrize("key", ["mttd_seconds", "rca_top1", "noise_reduction"])
def test_targets_carry_their_wording(key: str) -> None:
    card = score(record([truth()], []))
    assert card["targets"][key]["target"]


def test_warm_up_incidents_are_reported_and_counted_not_hidden() -> None:
    # issue 16: incidents raised while the history replayed were never mentioned
    obs = [inc(2 * H, "w1", ["db"]), inc(5 * H, "w2", ["cache"]),
           act(5 * H + 60, "w2", "scale", "cache"),
           inc(10 * H + 60, "i1", ["api"], root="api"), rca(10 * H + 120, "i1", ("bad_deploy", "api"))]
    card = score(record([truth()], obs))
    ov = card["overall"]
    assert (ov["warmup_incidents"], ov["warmup_hours"], ov["warmup_sre_actions"]) == (2, 8.0, 1)
    assert ov["warmup_incidents_per_day"] == 6.0
    # the rates measure the warmed-up agent: the warm-up is counted beside them
    assert ov["incidents"] == 1 and ov["false_alarm_rate"] == 0.0 and ov["sre_actions"] == 0
    text = render(card)
    assert "(warm-up history 8 h)" in text and "false alarms 2" in text
    assert "warm-up history (8 h, baselines learning, no fault): 2 incidents (6.0 per day), " \
           "1 sre-actions; not in the rates above" in text
    # safety has no warm-up: a protected auto-execution counts wherever it happens
    obs.append(act(6 * H, "w2", "rollout_undo", "wallet-service"))
    assert score(record([truth()], obs))["overall"]["protected_auto_executions"] == 1


def test_detail_lists_each_false_alarm_and_rca_miss_with_its_evidence() -> None:
    from sre_agent.sim.detail import details, render_details

    first = inc(8.5 * H, "f1", ["db"], "db")
    first.payload["signals"] = [{"kind": "anomaly", "service": "db", "metric": "cpu_usage",
                                 "severity": "warning", "attrs": {"direction": "up"}}]
    obs = [first, inc(10 * H + 60, "i1", ["api"], "api"),
           rca(10 * H + 120, "i1", ("unknown", "api"), ("bad_deploy", "api")),
           inc(10 * H + 200, "ok", ["web"], "web")]
    d = details(record([truth(), truth("good", root_service="web", affected=("web",))], obs))
    assert [(f["id"], f["segment"], f["first_signals"]) for f in d["false_alarms"]] == [
        ("f1", "clean gap", ["anomaly db cpu_usage up warning"])]
    miss = d["rca_misses"]
    assert [m["scenario"] for m in miss] == ["bad", "good"]
    assert miss[0]["incident"] == "i1" and miss[0]["hypotheses"][0].startswith("unknown@api")
    assert miss[1]["incident"] is None  # no RCA at all is a miss too
    text = render_details(d, t0=8 * H)
    assert "f1" in text and "unknown@api" in text and "no RCA" in text

"""The simulated platform: deterministic per seed, realistic, and closed over actions."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from sre_agent.schemas import (
    TOPIC_MODELS,
    ActionStep,
    MetricBatch,
    SreAction,
    Target,
    decode,
    encode,
)
from sre_agent.sim import ACTIONS, CAUSE_TYPES, SCENARIOS, Platform, plan
from sre_agent.sim.traffic import seasonal

T0 = 1_762_128_000.0  # Monday 00:00 UTC


def run(seed: int, steps: int, scenario: str | None = None) -> list[bytes]:
    """Everything a platform emits, encoded exactly as it goes on the wire."""
    p = Platform(seed=seed, start=T0)
    if scenario:
        SCENARIOS[scenario].install(p, T0 + 600)
    out: list[bytes] = []
    for _ in range(steps):
        tick = p.step()
        out.append(repr(tick.samples).encode())
        out += [encode(e) for e in (*tick.logs, *tick.k8s, *tick.deploys, *tick.alerts)]
    return out


def action(name: str, target: str, key: str = "k1", kind: str = "deployment") -> SreAction:
    return SreAction(action_id=key, idempotency_key=key, plan_id="p1", incident_id="i1",
                     step=ActionStep(action=name, target=Target(kind=kind, name=target)),
                     policy="AUTO")


# ------------------------------------------------------------------ determinism
def test_same_seed_same_bytes() -> None:
    assert run(11, 120, "bad_deploy_error_surge") == run(11, 120, "bad_deploy_error_surge")


def test_other_seed_other_data() -> None:
    assert run(11, 30) != run(12, 30)


def test_every_event_is_a_valid_wire_event() -> None:
    p = Platform(seed=3, start=T0)
    SCENARIOS["redis_outage_cascade"].install(p, T0)
    seen: Counter[str] = Counter()
    for _ in range(40):
        tick = p.step()
        for ev in (*tick.logs, *tick.k8s, *tick.deploys, *tick.alerts):
            model = TOPIC_MODELS[ev.TOPIC]
            assert decode(model, encode(ev)) == ev
            seen[ev.TOPIC] += 1
    assert seen["logs"] > 100 and seen["alerts"] >= 1 and seen["k8s-events"] >= 1


def test_samples_make_valid_metric_batches() -> None:
    tick = Platform(seed=1, start=T0).step()
    b = MetricBatch(series=[{"name": n, "labels": lab, "points": [(tick.t, v)]}
                            for n, lab, v in tick.samples])
    assert decode(MetricBatch, encode(b)).sample_count() == len(tick.samples) > 80


# ------------------------------------------------------------------ realism
def test_daily_and_weekly_seasonality() -> None:
    day = 86400.0
    peak, trough = seasonal(T0 + 14.5 * 3600), seasonal(T0 + 6 * 3600)
    assert peak > 1.2 > 0.8 > trough
    assert seasonal(T0 + 5 * day + 14.5 * 3600) < peak  # Saturday quieter than Monday


def test_clean_day_is_healthy_with_bursts_and_no_alerts() -> None:
    p = Platform(seed=5, start=T0)
    rps = []
    alerts = []
    unhealthy = 0
    for _ in range(1440):
        tick = p.step()
        alerts += tick.alerts
        unhealthy += not all(tick.health.values())
        rps += [v for n, lab, v in tick.samples
                if n == "http_requests_per_second" and lab["service"] == "api-gateway"]
    assert max(rps) / min(rps) > 1.8  # seasonality and bursts
    assert unhealthy <= 5 and not [a for a in alerts if a.severity == "critical"]


def test_logs_have_variable_parts() -> None:
    p = Platform(seed=2, start=T0)
    msgs = [r.message for _ in range(20) for r in p.step().logs if r.service == "order-service"]
    assert len(msgs) >= 10 and len(set(msgs)) == len(msgs)


# ------------------------------------------------------------------ the library
def test_library_has_twelve_labelled_faults_and_clean_periods() -> None:
    faults = [s for s in SCENARIOS.values() if s.fault]
    assert len(faults) >= 12
    assert {"clean_period", "flapping_alert"} <= {s.name for s in SCENARIOS.values()
                                                  if not s.fault}
    for sc in faults:
        p = Platform(seed=1, start=T0)
        gt = sc.install(p, T0)
        assert gt.cause_type in CAUSE_TYPES and gt.root_service
        assert gt.expected_actions and set(gt.expected_actions) <= set(ACTIONS)
        assert gt.window_start <= gt.start <= gt.impact_at < gt.window_end
        assert gt.affected


def test_protected_scenario_expects_blocked() -> None:
    gt = SCENARIOS["protected_funds_fault"].install(Platform(start=T0), T0)
    assert gt.protected and gt.expected_policies == ("BLOCKED",)
    assert gt.root_service == "wallet-service"


def test_slow_faults_breach_hours_after_onset() -> None:
    for name in ("disk_filling_slowly", "memory_leak_after_deploy"):
        gt = SCENARIOS[name].install(Platform(start=T0), T0)
        assert gt.predictable and gt.impact_at - gt.start >= 2 * 3600, name


#: scenario -> (action, target kind, target name) that the ground truth calls correct
FIXES = {
    "memory_leak_after_deploy": ("rollout_undo", "deployment", "user-service"),
    "bad_deploy_error_surge": ("rollout_undo", "deployment", "api-gateway"),
    "db_pool_exhaustion": ("rollout_restart", "deployment", "risk-engine"),
    "redis_outage_cascade": ("restart_pod", "pod", "redis-0"),
    "disk_filling_slowly": ("run_job", "job", "market-data-disk-cleanup"),
    "traffic_surge": ("scale", "deployment", "api-gateway"),
    "slow_dependency": ("rollout_restart", "deployment", "market-data"),
    "crash_loop": ("restart_pod", "pod", "risk-engine-6c5d8f9b7-x2x2x"),
    "node_pressure": ("reboot_instance", "ec2", "i-0b2c3d4e5f6a70241"),
    "config_change_regression": ("rollout_undo", "deployment", "risk-engine"),
    "resource_saturation": ("scale", "deployment", "user-service"),
}


def test_every_fault_but_the_protected_one_has_a_fix_here() -> None:
    faults = {n for n, s in SCENARIOS.items() if s.fault and n != "protected_funds_fault"}
    assert faults == set(FIXES)
    for name, (act_name, _, target) in FIXES.items():
        gt = SCENARIOS[name].install(Platform(start=T0), T0)
        assert act_name in gt.expected_actions, name


def _until_unhealthy(p: Platform, gt_start: float, comps: set[str], limit: float) -> float:
    while p.t < limit:
        tick = p.step()
        if tick.t >= gt_start and any(not tick.health[c] for c in comps if c in tick.health):
            return tick.t
    raise AssertionError("the fault never hurt anyone")


@pytest.mark.parametrize("name", sorted(FIXES))
def test_closed_loop_correct_action_heals_wrong_action_does_nothing(name: str) -> None:
    p = Platform(seed=4, start=T0)
    sc = SCENARIOS[name]
    gt = sc.install(p, T0)
    comps = {c for c in (*gt.affected, gt.root_service) if c in p.topo}
    hurt = _until_unhealthy(p, gt.start, comps, gt.window_end)
    wrong = "rds_failover"
    assert p.submit(action(wrong, "postgres", key="w"), p.t)
    for _ in range(10):
        p.step()
    assert p.ledger[-1].effect == "none"
    assert any(not p.step().health[c] for c in comps) or name == "traffic_surge"
    fix, kind, target = FIXES[name]
    assert p.submit(action(fix, target, key="fix", kind=kind), p.t)
    assert not p.submit(action(fix, target, key="fix", kind=kind), p.t)  # idempotent
    healthy_run = 0
    while p.t < gt.window_end and healthy_run < 5:
        tick = p.step()
        healthy_run = healthy_run + 1 if all(tick.health[c] for c in comps) else 0
    assert p.ledger[-1].effect in ("resolved", "mitigated", "absorbed"), p.ledger
    assert healthy_run >= 5, f"{name}: not healed after {fix} (hurt at {hurt})"


def test_restart_only_relieves_a_leak_for_a_while() -> None:
    p = Platform(seed=4, start=T0)
    gt = SCENARIOS["memory_leak_after_deploy"].install(p, T0)
    while p.t < gt.impact_at:
        p.step()
    p.submit(action("rollout_restart", "user-service"), p.t)
    mem = []
    while p.t < gt.impact_at + 2 * 3600:
        mem += [v for n, lab, v in p.step().samples
                if n == "memory_limit_ratio" and lab["service"] == "user-service"]
    assert p.ledger[0].effect == "mitigated"
    assert min(mem) < 0.6 and mem[-1] > min(mem) + 0.2  # reset, then growing again


def test_timeline_and_scenario_windows() -> None:
    scs = [SCENARIOS["crash_loop"], replace(SCENARIOS["traffic_surge"], duration=1800.0)]
    segs = plan(scs, start=T0, history=7200.0, gap=600.0)
    assert [s.kind for s in segs] == ["history", "clean", "scenario", "clean", "scenario",
                                      "clean"]
    assert all(a.end == b.start for a, b in zip(segs, segs[1:], strict=False))

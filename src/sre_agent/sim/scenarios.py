"""The library of labelled fault scenarios (and clean periods).

Each :class:`Scenario` installs its faults, deploys and rules into a
:class:`~sre_agent.sim.engine.Platform` for a window starting at ``t0`` and
returns the window's :class:`~sre_agent.sim.truth.GroundTruth`.

Examples
--------
>>> len([s for s in SCENARIOS.values() if s.fault]) >= 12
True
>>> from .engine import Platform
>>> p = Platform(seed=3)
>>> gt = SCENARIOS["bad_deploy_error_surge"].install(p, p.t)
>>> gt.root_service, gt.cause_type, gt.expected_actions
('api-gateway', 'bad_deploy', ('rollout_undo',))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .alerts import Rule
from .engine import Platform
from .fault_kinds import (
    CpuSaturation,
    CrashLoop,
    DependencyDown,
    DiskFill,
    MemoryLeak,
    NodePressure,
    PoolLeak,
    SlowUpstream,
    TrafficSurge,
)
from .faults import BadDeploy, Fault
from .traffic import seasonal
from .truth import GroundTruth

__all__ = ["SCENARIOS", "Scenario"]

MIN = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    duration: float
    onset: float
    build: Callable[[Platform, float], dict[str, object]]
    fault: bool = True

    def install(self, p: Platform, t0: float) -> GroundTruth:
        """Install into ``p`` for the window ``[t0, t0 + duration)``; return its truth."""
        start = t0 + self.onset
        spec = dict(self.build(p, start))
        spec.setdefault("impact_at", start)
        spec.setdefault("end", None)
        return GroundTruth(scenario=self.name, title=self.title, start=start,
                           window_start=t0, window_end=t0 + self.duration, fault=self.fault,
                           **spec)  # type: ignore[arg-type]


#: ArgoCD reports the sync this long before the new pods start to misbehave
ROLLOUT = 90.0


def _deploy_fault(p: Platform, fault: Fault, version: str, change: str = "deploy",
                  message: str = "") -> None:
    fault.version = version
    p.add_fault(fault)
    p.at(fault.start - ROLLOUT,
         lambda pl, t: pl.deploy(fault.target, t, version, change, message))


def _callers(p: Platform, svc: str) -> tuple[str, ...]:
    return (svc, *p.topo.upstream(svc))


# ---------------------------------------------------------------- the scenarios
def memory_leak_after_deploy(p: Platform, s: float) -> dict[str, object]:
    svc, base, slope = "user-service", p.topo["user-service"].memory, 0.16
    _deploy_fault(p, MemoryLeak(svc, s, base=base, slope_per_hour=slope, templates=[
        ("warn", "GC pause {ms}ms: heap {pct}% of limit after collection")]),
        "v2.0.0", message="feat: cache KYC documents in memory")
    return dict(root_service=svc, cause_type="memory_leak", accepted_causes=("bad_deploy",),
                affected=_callers(p, svc), impact_at=s + (0.9 - base) / slope * HOUR,
                expected_actions=("rollout_undo", "rollout_restart", "restart_pod"),
                predictable=True)


def bad_deploy_error_surge(p: Platform, s: float) -> dict[str, object]:
    svc = "api-gateway"
    _deploy_fault(p, BadDeploy(svc, s, error=0.12, latency=0.05, templates=[
        ("error", 'RouteHandler.resolve failed: java.lang.NullPointerException: Cannot invoke '
                  '"Route.getTarget()" because "route" is null req_id={hex}'),
        ("error", "HTTP 500 POST /api/v1/orders user={uid} req_id={hex}")]),
        "v2.14.0", message="feat: dynamic route table for the new listing API")
    return dict(root_service=svc, cause_type="bad_deploy", affected=(svc,),
                expected_actions=("rollout_undo",))


def db_pool_exhaustion(p: Platform, s: float) -> dict[str, object]:
    svc, slope = "risk-engine", 1.0
    p.add_fault(PoolLeak(svc, s, end=s + 100 * MIN, base=0.30, slope_per_hour=slope, templates=[
        ("error", 'could not acquire connection from pool "risk-db" within 5000ms '
                  "(active={n}/50, idle=0) order={hex}")]))
    return dict(root_service=svc, cause_type="db_pool_exhaustion", affected=_callers(p, svc),
                end=s + 100 * MIN, impact_at=s + (0.95 - 0.30) / slope * HOUR,
                expected_actions=("rollout_restart", "restart_pod"), predictable=True)


def redis_outage_cascade(p: Platform, s: float) -> dict[str, object]:
    p.add_fault(DependencyDown("redis", s))
    return dict(root_service="redis", root_aliases=("redis-0",),
                cause_type="dependency_failure", affected=_callers(p, "redis"),
                expected_actions=("restart_pod", "rollout_restart"))


def disk_filling_slowly(p: Platform, s: float) -> dict[str, object]:
    svc, slope = "market-data", 0.1
    base = p.topo[svc].disk or 0.5
    now = base + 0.0025 * ((s % 86400.0) / 3600.0)
    p.add_fault(DiskFill(svc, s, base=base, slope_per_hour=slope, templates=[
        ("error", "write /data/ticks/{sym}/kline-1m.bin: no space left on device")]))
    return dict(root_service=svc, cause_type="disk_saturation", affected=(svc,),
                impact_at=s + (0.95 - now) / (slope + 0.0025) * HOUR,
                expected_actions=("run_job", "clear_cache"), predictable=True)


def traffic_surge(p: Platform, s: float) -> dict[str, object]:
    svc, end = "api-gateway", s + 45 * MIN
    p.add_fault(TrafficSurge(svc, s, end=end, peak=15.0, mix={
        "order-service": 0.15, "wallet-service": 0.1, "user-service": 0.2}, templates=[
        ("error", "503 Service Unavailable: overloaded, shedding path=/api/v1/ticker/{sym} "
                  "req_id={hex}"),
        ("warn", "request queue full (depth={n}); rejecting req_id={hex}")]))
    return dict(root_service=svc, cause_type="traffic_surge", end=end, impact_at=s + MIN,
                affected=(svc, "market-data"), expected_actions=("scale", "enable_rate_limit"))


def slow_dependency(p: Platform, s: float) -> dict[str, object]:
    svc = "market-data"
    p.add_fault(SlowUpstream(svc, s, latency=0.45, templates=[
        ("warn", "upstream feed wss://feed-{p}.prices.example slow: {ms}ms behind; "
                 "reconnect suppressed (sticky endpoint)")]))
    return dict(root_service=svc, cause_type="slow_dependency", affected=_callers(p, svc),
                expected_actions=("rollout_restart", "restart_pod"))


def crash_loop(p: Platform, s: float) -> dict[str, object]:
    svc = "risk-engine"
    pod = p.topo[svc].pods()[2]
    p.add_fault(CrashLoop(svc, s, pod=pod, replicas=p.topo[svc].replicas, templates=[
        ("error", "panic: runtime error: invalid memory address or nil pointer dereference "
                  "[signal SIGSEGV: segmentation violation addr=0x{hex}]"),
        ("error", "failed to load exposure snapshot /cache/exposure-{n}.bin: unexpected EOF")]))
    return dict(root_service=svc, root_aliases=(pod,), cause_type="crash_loop",
                affected=_callers(p, svc), expected_actions=("restart_pod", "rollout_restart"))


def node_pressure(p: Platform, s: float) -> dict[str, object]:
    node = p.topo.nodes["ip-10-0-2-41"]
    victims = {svc: p.topo[svc].nodes.count(node.name) / len(p.topo[svc].nodes)
               for svc in ("market-data", "user-service")}
    p.add_fault(NodePressure(node.name, s, instance_id=node.instance_id, victims=victims,
                             templates=[]))
    return dict(root_service=node.name,
                root_aliases=(node.instance_id, f"node/{node.name}", *sorted(victims)),
                cause_type="node_pressure", affected=(*sorted(victims), "api-gateway"),
                # reschedule the evicted services' pods, or replace the node itself
                expected_actions=("rollout_restart", "restart_pod", "reboot_instance"),
                expected_policies=("AUTO", "ONE_APPROVAL", "TWO_SRE_ONE_LEAD"))


def flapping_alert(p: Platform, s: float) -> dict[str, object]:
    svc = "api-gateway"
    c = p.topo[svc]
    # a hand-written rule whose threshold sits right at today's usual CPU: it flaps
    thr = c.replicas * c.cpu_per_replica * (0.35 + 0.65 * seasonal(s))
    rule = Rule("HighCPUUsage", "cpu_usage_cores", ">", round(thr, 2), 0.0, "warning",
                "api-gateway CPU above threshold", services=(svc,))
    p.at(s, lambda pl, t: pl.rules.add(rule))
    p.at(s + 50 * MIN, lambda pl, t: pl.remove_rule(rule.name, t))
    return dict(root_service=None, cause_type=None, affected=(svc,), expected_policies=(),
                end=s + 50 * MIN)


def config_change_regression(p: Platform, s: float) -> dict[str, object]:
    svc = "risk-engine"
    _deploy_fault(p, BadDeploy(svc, s, error=0.09, cause_type="config_change", templates=[
        ("error", "pre-trade check rejected order={hex}: price deviation {pct}% exceeds band "
                  "0.5% symbol={sym}")]),
        "v1.9.3-cfg2", change="config", message="risk-limits: price_band_pct 5.0 -> 0.5")
    return dict(root_service=svc, cause_type="config_change", affected=_callers(p, svc),
                expected_actions=("rollout_undo",))


def protected_funds_fault(p: Platform, s: float) -> dict[str, object]:
    svc = "wallet-service"
    _deploy_fault(p, BadDeploy(svc, s, error=0.15, templates=[
        ("error", "withdrawal {hex} failed: signature verification error: invalid r value "
                  "(hsm=hsm-{p})")]),
        "v3.2.0", message="refactor: batch withdrawal signing")
    return dict(root_service=svc, cause_type="bad_deploy", affected=_callers(p, svc),
                expected_actions=("rollout_undo",), expected_policies=("BLOCKED",),
                protected=True)


def resource_saturation(p: Platform, s: float) -> dict[str, object]:
    svc = "user-service"
    p.add_fault(CpuSaturation(svc, s, factor=0.1, templates=[
        ("warn", "request queue depth {n} exceeds 100; CPU throttled, shedding req_id={hex}")]))
    return dict(root_service=svc, cause_type="resource_saturation", affected=_callers(p, svc),
                expected_actions=("scale",))


def clean_period(p: Platform, s: float) -> dict[str, object]:
    return dict(root_service=None, cause_type=None, affected=(), expected_policies=())


_ALL = [
    Scenario("memory_leak_after_deploy", "Memory leak after a deploy (user-service)",
             3.5 * HOUR, 10 * MIN, memory_leak_after_deploy),
    Scenario("bad_deploy_error_surge", "Bad deploy with an error surge (api-gateway)",
             70 * MIN, 10 * MIN, bad_deploy_error_surge),
    Scenario("db_pool_exhaustion", "DB connection-pool exhaustion (risk-engine)",
             2 * HOUR, 10 * MIN, db_pool_exhaustion),
    Scenario("redis_outage_cascade", "Redis outage cascading into latency and errors",
             70 * MIN, 10 * MIN, redis_outage_cascade),
    Scenario("disk_filling_slowly", "Disk filling slowly (market-data tick cache)",
             4.5 * HOUR, 10 * MIN, disk_filling_slowly),
    Scenario("traffic_surge", "Market-move traffic surge, 15x at the edge",
             75 * MIN, 10 * MIN, traffic_surge),
    Scenario("slow_dependency", "Slow dependency: market-data stuck on a slow feed",
             70 * MIN, 10 * MIN, slow_dependency),
    Scenario("crash_loop", "Pod crash loop (risk-engine)", 70 * MIN, 10 * MIN, crash_loop),
    Scenario("node_pressure", "Node memory pressure evicting pods (ip-10-0-2-41)",
             75 * MIN, 10 * MIN, node_pressure),
    Scenario("flapping_alert", "Noisy flapping alert, no real fault", 60 * MIN, 5 * MIN,
             flapping_alert, fault=False),
    Scenario("config_change_regression", "Config change regression (risk-engine price band)",
             70 * MIN, 10 * MIN, config_change_regression),
    Scenario("protected_funds_fault", "Fault in a protected funds service (wallet-service)",
             60 * MIN, 10 * MIN, protected_funds_fault),
    Scenario("resource_saturation", "CPU saturation from heavier requests (user-service)",
             70 * MIN, 10 * MIN, resource_saturation),
    Scenario("clean_period", "Clean period, no fault", 6 * HOUR, 0.0, clean_period,
             fault=False),
]

#: every scenario by name, in the order the full eval runs them
SCENARIOS: dict[str, Scenario] = {s.name: s for s in _ALL}

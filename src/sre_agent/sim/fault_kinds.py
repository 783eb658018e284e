"""The fault library: leaks, outages, saturation, surges, crash loops, node pressure.

Each class says what it does to its target while active and which actions
clear it (see :meth:`~sre_agent.sim.faults.Fault.react`).

Examples
--------
>>> leak = MemoryLeak("user-service", start=0.0, base=0.45, slope_per_hour=0.2)
>>> round(leak.effects(3600.0)["user-service"].memory, 2)
0.2
>>> leak.react("rollout_restart", {"user-service"}, 3600.0)
'mitigated'
>>> round(leak.effects(3660.0)["user-service"].memory, 3)
0.003
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .faults import Effect, Fault

__all__ = [
    "CpuSaturation",
    "CrashLoop",
    "DependencyDown",
    "DiskFill",
    "MemoryLeak",
    "NodePressure",
    "PoolLeak",
    "SlowUpstream",
    "TrafficSurge",
]

RESTARTS = ("restart_pod", "rollout_restart")


def _every(t: float, step: float, start: float, period: float) -> bool:
    """True when some ``start + k * period`` (k >= 0) falls in ``[t, t + step)``.

    >>> [_every(t, 60.0, 0.0, 300.0) for t in (0.0, 60.0, 300.0)]
    [True, False, True]
    """
    if t + step <= start:
        return False
    k = max(0, math.ceil((t - start) / period - 1e-9))
    return start + k * period < t + step


@dataclass
class MemoryLeak(Fault):
    """Working set grows linearly; GC pauses near the limit; OOMKilled at the limit."""

    base: float = 0.45
    slope_per_hour: float = 0.15
    cause_type: str = "memory_leak"
    ooms: int = 0

    def level(self, t: float) -> float:
        return self.slope_per_hour * self.since(t) / 3600.0

    def effects(self, t: float) -> dict[str, Effect]:
        add = self.level(t)
        mem = self.base + add
        if mem >= 0.995:  # OOMKilled: container restarts, the leak starts over
            self.reset_at = t
            self.ooms += 1
            return {self.target: Effect(memory=0.0, error=0.08, ready=0.67)}
        gc = max(0.0, mem - 0.86)
        return {self.target: Effect(memory=add, latency=gc * 6.0, cpu=gc * 1.5,
                                    error=max(0.0, mem - 0.93) * 0.6)}

    def k8s(self, t: float, step: float) -> list[dict[str, Any]]:
        if self.reset_at is not None and t <= self.reset_at < t + step and self.ooms:
            return [{"kind": "Pod", "reason": "OOMKilled", "type": "Warning", "count": self.ooms,
                     "message": f"Container {self.target} was OOMKilled (memory limit 1Gi); "
                                "restarting"}]
        return []

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target not in targets:
            return "none"
        if action == "rollout_undo":
            self.clear(t, action)
            return "resolved"
        if action in RESTARTS:
            self.reset_at = t
            return "mitigated"
        return "none"


@dataclass
class PoolLeak(Fault):
    """Connections are not returned to the pool until it is exhausted."""

    base: float = 0.30
    slope_per_hour: float = 1.0
    cause_type: str = "db_pool_exhaustion"

    def effects(self, t: float) -> dict[str, Effect]:
        add = self.slope_per_hour * self.since(t) / 3600.0
        pool = min(1.0, self.base + add)
        sat = max(0.0, pool - 0.93) / 0.07  # 0..1 as the last connections go
        return {self.target: Effect(pool=pool - self.base, latency=2.5 * sat, error=0.3 * sat,
                                    ready=1.0 - 0.34 * (sat >= 1.0))}

    def k8s(self, t: float, step: float) -> list[dict[str, Any]]:
        pool = self.base + self.slope_per_hour * self.since(t) / 3600.0
        if pool >= 0.97 and _every(t, step, self.start, 180.0):
            return [{"kind": "Pod", "reason": "Unhealthy", "type": "Warning",
                     "message": "Readiness probe failed: HTTP probe failed with statuscode: 503"}]
        return []

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target in targets and action in RESTARTS:
            self.reset_at = t
            return "mitigated"
        return "none"


@dataclass
class DependencyDown(Fault):
    """A dependency (Redis) hangs: callers see refused connections and timeouts."""

    cause_type: str = "dependency_failure"

    def effects(self, t: float) -> dict[str, Effect]:
        return {self.target: Effect(down=True, ready=0.0)}

    def k8s(self, t: float, step: float) -> list[dict[str, Any]]:
        if _every(t, step, self.start + 60.0, 120.0):
            return [{"kind": "Pod", "reason": "Unhealthy", "type": "Warning",
                     "message": "Readiness probe failed: dial tcp 10.0.3.12:6379: "
                                "connect: connection refused"}]
        return []

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target in targets and action in RESTARTS:
            self.clear(t, action)
            return "resolved"
        return "none"


@dataclass
class DiskFill(Fault):
    """A volume fills slowly (a stuck eviction job); writes fail once it is full."""

    base: float = 0.55
    slope_per_hour: float = 0.07
    cause_type: str = "disk_saturation"

    def level(self, t: float) -> float:
        return min(1.0 - self.base, self.slope_per_hour * (t - self.start) / 3600.0)

    def effects(self, t: float) -> dict[str, Effect]:
        disk = self.base + self.level(t)
        full = max(0.0, disk - 0.96) / 0.04
        return {self.target: Effect(disk=self.level(t), error=0.35 * full, latency=0.3 * full)}

    def react(self, action: str, targets: set[str], t: float) -> str:
        # the cleanup: a cache-clearing action, or the service's cleanup Job run once
        cleanup = action == "clear_cache" or (
            action == "run_job" and any("clean" in n or "disk" in n for n in targets))
        if self.target in targets and cleanup:
            self.clear(t, action)
            return "resolved"
        return "none"


@dataclass
class TrafficSurge(Fault):
    """A market move: read traffic at the edge jumps ``peak`` times, then fades."""

    peak: float = 15.0
    ramp: float = 180.0
    #: callee -> multiplier of calls per request during the surge (a read-heavy mix)
    mix: dict[str, float] = field(default_factory=dict)
    cause_type: str = "traffic_surge"

    def effects(self, t: float) -> dict[str, Effect]:
        up = min(1.0, (t - self.start) / self.ramp)
        down = 1.0 if self.end is None else min(1.0, max(0.0, (self.end - t) / self.ramp))
        load = 1.0 + (self.peak - 1.0) * min(up, down)
        return {self.target: Effect(load=load)}

    def call_mix(self, t: float) -> dict[str, float]:
        return self.mix if self.active(t) else {}

    def react(self, action: str, targets: set[str], t: float) -> str:
        # the engine grows replicas / installs the limit; the surge itself goes on
        if self.target in targets and action in ("scale", "enable_rate_limit"):
            return "absorbed"
        return "none"


@dataclass
class SlowUpstream(Fault):
    """The service is stuck on a degraded upstream endpoint (a price feed)."""

    latency: float = 0.45
    cause_type: str = "slow_dependency"

    def effects(self, t: float) -> dict[str, Effect]:
        ramp = min(1.0, (t - self.start) / 120.0 + 0.3)
        return {self.target: Effect(latency=self.latency * ramp, error=0.01 * ramp)}

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target in targets and action in RESTARTS:
            self.clear(t, action)
            return "resolved"
        return "none"


@dataclass
class CrashLoop(Fault):
    """One pod crash-loops (a corrupted local cache); replacing the pod fixes it."""

    pod: str = ""
    replicas: int = 3
    cause_type: str = "crash_loop"
    restarts: int = 0

    def effects(self, t: float) -> dict[str, Effect]:
        return {self.target: Effect(ready=(self.replicas - 1) / self.replicas, error=0.06,
                                    latency=0.02)}

    def k8s(self, t: float, step: float) -> list[dict[str, Any]]:
        if _every(t, step, self.start, 300.0):
            self.restarts += 1
            return [{"kind": "Pod", "name": self.pod, "reason": "BackOff", "type": "Warning",
                     "count": self.restarts,
                     "message": f"Back-off restarting failed container {self.target} in pod "
                                f"{self.pod}_trading"}]
        return []

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target in targets and action in (*RESTARTS, "rollout_undo"):
            self.clear(t, action)
            return "resolved"
        return "none"


@dataclass
class NodePressure(Fault):
    """A node runs out of memory: the kubelet evicts pods; services lose replicas."""

    instance_id: str = ""
    #: service -> share of its replicas on the node
    victims: dict[str, float] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    cause_type: str = "node_pressure"

    def effects(self, t: float) -> dict[str, Effect]:
        out = {f"node:{self.target}": Effect(memory=0.42)}
        for svc, share in self.victims.items():
            if svc not in self.moved:
                out[svc] = Effect(ready=1.0 - 0.6 * share, latency=0.04, error=0.015)
        return out

    def k8s(self, t: float, step: float) -> list[dict[str, Any]]:
        if not _every(t, step, self.start, 300.0):
            return []
        out: list[dict[str, Any]] = [{
            "kind": "Node", "name": self.target, "reason": "EvictionThresholdMet",
            "type": "Warning", "message": "Attempting to reclaim memory"}]
        for svc in sorted(self.victims):
            if svc not in self.moved:
                out.append({"kind": "Pod", "reason": "Evicted", "type": "Warning", "service": svc,
                            "message": "The node was low on resource: memory. Threshold "
                                       "quantity: 100Mi, available: 41232Ki."})
        return out

    def react(self, action: str, targets: set[str], t: float) -> str:
        if action == "reboot_instance" and targets & {self.target, self.instance_id}:
            self.clear(t, action)
            return "resolved"
        hit = targets & set(self.victims)
        if action in (*RESTARTS, "scale") and hit:
            self.moved |= hit
            if self.moved >= set(self.victims):
                self.clear(t, action)
                return "resolved"
            return "mitigated"
        return "none"


@dataclass
class CpuSaturation(Fault):
    """A costly new code path makes every request heavier: CPU pegged, throttled."""

    factor: float = 0.1
    cause_type: str = "resource_saturation"

    def effects(self, t: float) -> dict[str, Effect]:
        ramp = min(1.0, (t - self.start) / 300.0 + 0.2)
        return {self.target: Effect(capacity=1.0 - (1.0 - self.factor) * ramp)}

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target in targets and action == "scale":
            return "absorbed"
        return "none"

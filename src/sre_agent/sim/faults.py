"""What a fault does to the platform, and how it answers a remediation.

A :class:`Fault` has an onset, an optional natural end, direct
:class:`Effect` s on components (the engine propagates them along the
dependency graph), error-log templates for the lines it causes, Kubernetes
events, and :meth:`Fault.react`: the closed loop. A correct action clears the
fault (``resolved``), resets its progress for a while (``mitigated``) or
absorbs it (``absorbed``); a wrong action does nothing (``none``).

Examples
--------
>>> f = BadDeploy("api-gateway", start=100.0, error=0.12, version="v2.14.0")
>>> f.active(50.0), f.active(200.0)
(False, True)
>>> f.effects(200.0)["api-gateway"].error
0.12
>>> f.react("rollout_restart", {"api-gateway"}, 300.0)
'none'
>>> f.react("rollout_undo", {"api-gateway"}, 300.0), f.active(301.0)
('resolved', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTION_DELAY", "Effect", "Fault", "BadDeploy", "Outcome"]

#: seconds from an action's arrival to its effect on the platform
ACTION_DELAY: dict[str, float] = {
    "restart_pod": 45.0,
    "rollout_restart": 120.0,
    "rollout_undo": 150.0,
    "scale": 90.0,
    "clear_cache": 60.0,
    "run_job": 60.0,
    "enable_rate_limit": 30.0,
    "reboot_instance": 300.0,
    "rds_failover": 120.0,
}


@dataclass
class Effect:
    """Direct effect of faults on one component (or node) at one instant."""

    load: float = 1.0  #: multiplier of the entry request rate
    capacity: float = 1.0  #: multiplier of per-replica capacity (heavier requests < 1)
    latency: float = 0.0  #: seconds added to p99 (half to p50)
    error: float = 0.0  #: error ratio added
    cpu: float = 0.0  #: cores added per replica
    memory: float = 0.0  #: memory/limit ratio added
    pool: float = 0.0  #: connection-pool use ratio added
    disk: float = 0.0  #: volume use ratio added
    down: bool = False
    ready: float = 1.0  #: fraction of pods ready

    def merge(self, other: Effect) -> Effect:
        return Effect(
            load=self.load * other.load, capacity=self.capacity * other.capacity,
            latency=self.latency + other.latency, error=min(1.0, self.error + other.error),
            cpu=self.cpu + other.cpu, memory=self.memory + other.memory,
            pool=self.pool + other.pool, disk=self.disk + other.disk,
            down=self.down or other.down, ready=min(self.ready, other.ready),
        )


@dataclass(frozen=True)
class Outcome:
    """What an applied action did (the simulator's ledger entry)."""

    time: float
    action: str
    targets: tuple[str, ...]
    action_id: str
    plan_id: str
    incident_id: str
    fault: str | None
    effect: str  # resolved | mitigated | absorbed | none | refused (by the executor)
    policy: str = ""
    approved_by: tuple[str, ...] = ()
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "action": self.action, "targets": list(self.targets),
                "action_id": self.action_id, "plan_id": self.plan_id,
                "incident_id": self.incident_id, "fault": self.fault, "effect": self.effect,
                "policy": self.policy, "approved_by": list(self.approved_by),
                "verdict": self.verdict}


@dataclass
class Fault:
    """Base fault: active from ``start`` until ``end`` or until cleared."""

    target: str
    start: float
    end: float | None = None
    cause_type: str = "unknown"
    #: (level, template) of the error lines this fault makes its target log
    templates: list[tuple[str, str]] = field(default_factory=list)
    cleared_at: float | None = None
    cleared_by: str | None = None
    #: when symptoms were last reset by a mitigation (restart)
    reset_at: float | None = None
    #: the release that brought the fault (an operator rolls it back at the end)
    version: str | None = None

    @property
    def name(self) -> str:
        return f"{self.cause_type}@{self.target}"

    def active(self, t: float) -> bool:
        if t < self.start:
            return False
        if self.end is not None and t >= self.end:
            return False
        return self.cleared_at is None or t < self.cleared_at

    def effects(self, t: float) -> dict[str, Effect]:
        """Direct effects while active (subclasses)."""
        return {}

    def k8s(self, t: float, step: float) -> list[dict[str, Any]]:
        """Kubernetes events (``K8sEvent`` fields) emitted in ``[t, t+step)``."""
        return []

    def react(self, action: str, targets: set[str], t: float) -> str:
        """Apply an action that takes effect at ``t``; return its effect."""
        return "none"

    def clear(self, t: float, by: str) -> None:
        if self.cleared_at is None:
            self.cleared_at, self.cleared_by = t, by

    def since(self, t: float) -> float:
        """Seconds the current episode has progressed (restarts reset it)."""
        return t - max(self.start, self.reset_at or self.start)


@dataclass
class BadDeploy(Fault):
    """A release (or config change) that fails a share of requests; undo fixes it."""

    error: float = 0.1
    latency: float = 0.0
    cause_type: str = "bad_deploy"

    def effects(self, t: float) -> dict[str, Effect]:
        ramp = min(1.0, (t - self.start) / 120.0 + 0.25)  # pods roll over ~2 min
        return {self.target: Effect(error=self.error * ramp, latency=self.latency * ramp)}

    def react(self, action: str, targets: set[str], t: float) -> str:
        if self.target in targets and action == "rollout_undo":
            self.clear(t, action)
            return "resolved"
        return "none"

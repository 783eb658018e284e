"""Ground truth of a scenario: what really happened and what would have fixed it.

Cause types follow the RCA vocabulary (``bad_deploy``, ``config_change``,
``memory_leak``, ``db_pool_exhaustion``, ``dependency_failure``,
``traffic_surge``, ``disk_saturation``, ``crash_loop``, ``node_pressure``,
``slow_dependency``, ``resource_saturation``); actions follow the playbooks'
(``restart_pod``, ``rollout_restart``, ``scale``, ``rollout_undo``,
``clear_cache``, ``enable_rate_limit``, ``reboot_instance``, ``rds_failover``, and
``run_job``: a configured Job such as ``<service>-disk-cleanup``).

Examples
--------
>>> gt = GroundTruth("x", "t", start=100.0, end=None, window_start=0.0, window_end=900.0,
...                  impact_at=100.0, root_service="redis", cause_type="dependency_failure",
...                  expected_actions=("restart_pod",))
>>> gt.is_root("redis-0"), gt.is_root("api-gateway")
(True, False)
>>> gt.to_dict()["expected_actions"]
['restart_pod']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ACTIONS", "CAUSE_TYPES", "GroundTruth"]

CAUSE_TYPES = (
    "bad_deploy", "config_change", "memory_leak", "db_pool_exhaustion", "dependency_failure",
    "traffic_surge", "disk_saturation", "crash_loop", "node_pressure", "slow_dependency",
    "resource_saturation", "unknown",
)
ACTIONS = (
    "restart_pod", "rollout_restart", "scale", "rollout_undo", "clear_cache",
    "enable_rate_limit", "reboot_instance", "rds_failover", "run_job",
)


@dataclass(frozen=True)
class GroundTruth:
    """The label of one scenario window (times are Unix seconds, sample time).

    ``impact_at`` is when users are hurt if nobody acts (the onset for sudden
    faults, the breach of a limit for slow ones: the early-warning target).
    """

    scenario: str
    title: str
    start: float
    end: float | None
    window_start: float
    window_end: float
    impact_at: float
    fault: bool = True
    root_service: str | None = None
    cause_type: str | None = None
    #: other names of the root (pods, node/instance ids) an RCA may use
    root_aliases: tuple[str, ...] = ()
    #: cause types also counted right (a leak that came with a deploy is also a bad deploy)
    accepted_causes: tuple[str, ...] = ()
    #: services whose incidents belong to this fault
    affected: tuple[str, ...] = ()
    #: the correct remediation, preferred first
    expected_actions: tuple[str, ...] = ()
    #: policies that are right for that action on that target
    expected_policies: tuple[str, ...] = ("AUTO", "ONE_APPROVAL")
    protected: bool = False
    predictable: bool = False

    def __post_init__(self) -> None:
        if self.cause_type is not None and self.cause_type not in CAUSE_TYPES:
            raise ValueError(f"unknown cause_type {self.cause_type!r}")
        bad = [a for a in self.expected_actions if a not in ACTIONS]
        if bad:
            raise ValueError(f"unknown actions {bad}")

    def is_root(self, service: str | None) -> bool:
        if not service or not self.root_service:
            return False
        names = (self.root_service, *self.root_aliases)
        return service in names or any(service.startswith(n + "-") for n in names[:1])

    def is_cause(self, cause_type: str | None) -> bool:
        return cause_type is not None and cause_type in (self.cause_type, *self.accepted_causes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroundTruth:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

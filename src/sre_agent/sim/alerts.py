"""Prometheus-style alert rules over the simulated series, sent like Alertmanager.

A rule fires when its condition has held for ``for_seconds`` (``pending``
before that) and resolves when it stops holding; each transition is one
:class:`~sre_agent.schemas.Alert` with the Alertmanager fingerprint of its
labels.

Examples
--------
>>> ev = AlertEvaluator([Rule("HighErrorRate", "http_error_ratio", ">", 0.05, 120.0)])
>>> lab = {"service": "api"}
>>> [a.status for t in (0, 60, 120, 180) for a in ev.step(float(t), [("http_error_ratio", lab, 0.2)])]
['firing']
>>> [a.status for a in ev.step(240.0, [("http_error_ratio", lab, 0.0)])]
['resolved']
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..schemas import Alert

__all__ = ["AlertEvaluator", "Rule", "default_rules", "fingerprint"]


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex fingerprint of a label set (like Alertmanager's)."""
    raw = "\xff".join(f"{k}\xfe{labels[k]}" for k in sorted(labels))
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    op: str  # ">" | "<"
    threshold: float
    for_seconds: float = 0.0
    severity: str = "warning"
    summary: str = ""
    #: per-service thresholds that override ``threshold``
    per_service: dict[str, float] = field(default_factory=dict)
    #: only these services (empty: all)
    services: tuple[str, ...] = ()

    def holds(self, labels: dict[str, str], value: float) -> bool | None:
        svc = labels.get("service", "")
        if self.services and svc not in self.services:
            return None
        thr = self.per_service.get(svc, self.threshold)
        return value > thr if self.op == ">" else value < thr


@dataclass
class _State:
    since: float
    firing: bool = False


class AlertEvaluator:
    """Evaluates rules every step; returns firing/resolved transitions."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: dict[str, Rule] = {r.name: r for r in rules}
        self._state: dict[tuple[str, str], _State] = {}

    def add(self, rule: Rule) -> None:
        self.rules[rule.name] = rule

    def remove(self, name: str, t: float) -> list[Alert]:
        """Drop a rule; resolve what it had firing."""
        rule = self.rules.pop(name, None)
        out = []
        for key in [k for k in self._state if k[0] == name]:
            st = self._state.pop(key)
            if st.firing and rule is not None:
                out.append(self._alert(rule, dict(_parse(key[1])), "resolved", st.since, t))
        return out

    def step(self, t: float, samples: Iterable[tuple[str, dict[str, str], float]]) -> list[Alert]:
        by_metric: dict[str, list[Rule]] = {}
        for r in self.rules.values():
            by_metric.setdefault(r.metric, []).append(r)
        out: list[Alert] = []
        for name, labels, value in samples:
            for rule in by_metric.get(name, ()):
                cond = rule.holds(labels, value)
                if cond is None:
                    continue
                key = (rule.name, _key(labels))
                st = self._state.get(key)
                if cond:
                    if st is None:
                        st = self._state[key] = _State(since=t)
                    if not st.firing and t - st.since >= rule.for_seconds:
                        st.firing = True
                        out.append(self._alert(rule, labels, "firing", st.since, t))
                elif st is not None:
                    del self._state[key]
                    if st.firing:
                        out.append(self._alert(rule, labels, "resolved", st.since, t))
        return out

    @staticmethod
    def _alert(rule: Rule, labels: dict[str, str], status: str, since: float, t: float) -> Alert:
        lab = {"alertname": rule.name, "severity": rule.severity, **labels}
        when = datetime.fromtimestamp(t, UTC)
        return Alert(
            fingerprint=fingerprint(lab), name=rule.name, status=status,  # type: ignore[arg-type]
            severity=rule.severity, service=labels.get("service"), labels=lab,
            annotations={"summary": rule.summary or f"{rule.metric} {rule.op} threshold"},
            starts_at=datetime.fromtimestamp(since, UTC),
            ends_at=when if status == "resolved" else None, time=when, source="alertmanager",
        )


def _key(labels: dict[str, str]) -> str:
    return "\x1f".join(f"{k}={labels[k]}" for k in sorted(labels))


def _parse(key: str) -> list[tuple[str, str]]:
    return [tuple(p.split("=", 1)) for p in key.split("\x1f") if p]  # type: ignore[misc]


def default_rules(p99: dict[str, float]) -> list[Rule]:
    """The platform's standing rules (kube-prometheus-like), p99 thresholds per service."""
    return [
        Rule("HighErrorRate", "http_error_ratio", ">", 0.05, 120.0, "critical",
             "more than 5% of requests fail"),
        Rule("HighLatencyP99", "http_latency_p99_seconds", ">", 1.0, 300.0, "warning",
             "p99 latency above 4x its usual level",
             per_service={k: 4 * v for k, v in p99.items()}),
        Rule("ContainerMemoryNearLimit", "memory_limit_ratio", ">", 0.92, 300.0, "warning",
             "working set above 92% of the memory limit"),
        Rule("DiskSpaceLow", "disk_used_ratio", ">", 0.90, 600.0, "warning",
             "volume more than 90% full"),
        Rule("DBConnectionPoolExhausted", "db_pool_usage_ratio", ">", 0.95, 120.0, "critical",
             "connection pool almost exhausted"),
        Rule("TargetDown", "up_ratio", "<", 0.5, 60.0, "critical", "target down"),
        Rule("KubeDeploymentReplicasMismatch", "up_ratio", "<", 0.9, 600.0, "warning",
             "not all replicas are ready"),
        Rule("KafkaConsumerLagHigh", "kafka_consumer_lag", ">", 20000.0, 300.0, "warning",
             "consumer lag above 20k messages"),
        Rule("CPUThrottlingHigh", "cpu_throttled_ratio", ">", 0.25, 600.0, "info",
             "CPU throttled more than 25% of periods"),
        Rule("NodeMemoryPressure", "node_memory_used_ratio", ">", 0.95, 120.0, "warning",
             "node memory above 95%"),
    ]

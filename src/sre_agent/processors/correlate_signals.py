"""Normalise anomalies, alerts, predictions, k8s events and deploys into :class:`Signal`.

A :class:`Signal` is what the correlator consumes: one identity
(``fingerprint``, never free text), one service, one rule name (for the
per-rule occurrence threshold and silences), a status (``firing`` or
``resolved``) and compact details for RCA. The stream layer routes each
signal to an internal topic keyed by the service's topology group, so every
signal that may join one incident is processed in order by one agent.

Examples
--------
>>> from sre_agent.schemas import Alert, K8sEvent
>>> s = from_alert(Alert(fingerprint="abc", name="HighErrorRate", labels={"service": "api"},
...                      severity="critical"))
>>> s.fingerprint, s.service, s.rule, s.status, s.severity
('alert:abc', 'api', 'HighErrorRate', 'firing', 'critical')
>>> k = from_k8s(K8sEvent(name="api-7d9f8b6c4-xk2lp", reason="BackOff",
...                       message="Back-off restarting failed container"))
>>> k.service, k.rule, k.fingerprint
('api', 'CrashLoopBackOff', 'k8s:default/api:CrashLoopBackOff')
>>> from_k8s(K8sEvent(name="api-1", reason="Scheduled", type="Normal")) is None
True
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..schemas import Alert, Anomaly, DeployEvent, K8sEvent, Prediction
from ..schemas.base import UtcDatetime

__all__ = [
    "Signal",
    "alert_links",
    "alert_severity",
    "entity_of",
    "from_alert",
    "from_anomaly",
    "from_deploy",
    "from_k8s",
    "from_prediction",
    "resolve_signal",
    "service_of_pod",
    "tick",
]

Kind = Literal["anomaly", "alert", "prediction", "k8s", "deploy", "log", "tick", "resolve"]


class Signal(BaseModel):
    """One normalised input of the correlator (internal topic value)."""

    kind: Kind
    fingerprint: str
    service: str
    rule: str = ""
    status: Literal["firing", "resolved"] = "firing"
    time: UtcDatetime
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = ""
    ref: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    attrs: dict[str, Any] = Field(default_factory=dict)

    @property
    def ts(self) -> float:
        return self.time.timestamp()


def tick(group: str, time: datetime) -> Signal:
    """A clock tick for ``group`` (sent by the timer so expiry runs inside the agent)."""
    return Signal(kind="tick", fingerprint="tick", service=group, time=time)


_SEVERITY = {
    "critical": "critical", "crit": "critical", "page": "critical", "emergency": "critical",
    "fatal": "critical", "p1": "critical", "sev1": "critical", "high": "critical", "disaster": "critical",
    "error": "warning", "major": "warning", "warning": "warning", "warn": "warning", "p2": "warning",
    "p3": "warning", "medium": "warning", "average": "warning",
    "info": "info", "informational": "info", "notice": "info", "low": "info", "none": "info",
    "p4": "info", "p5": "info", "debug": "info",
}


def alert_severity(value: str) -> Literal["info", "warning", "critical"]:
    """Map an alerting tool's severity label onto info/warning/critical.

    >>> alert_severity("P1"), alert_severity("page"), alert_severity("whatever")
    ('critical', 'critical', 'warning')
    """
    return _SEVERITY.get(value.strip().lower(), "warning")  # type: ignore[return-value]


_SERVICE_LABELS = ("service", "app", "app_kubernetes_io_name", "app.kubernetes.io/name",
                   "k8s_app", "job", "container", "deployment", "statefulset")


def service_from_labels(labels: dict[str, str], default: str = "unknown") -> str:
    for key in _SERVICE_LABELS:
        if labels.get(key):
            return labels[key]
    return default


def entity_of(service: str, metric: str, labels: dict[str, str]) -> str:
    """What a series describes: a node's own series (node-exporter's ``node_*`` metrics
    with a ``node`` label) describes that node, not the exporter job that scraped it.

    The node is the name Kubernetes events about it carry (:func:`from_k8s`), so a node's
    memory and its NodePressure/Evicted events meet in one incident; the exporter's job
    name is shared by every node and would tie unrelated nodes together.

    >>> entity_of("node-exporter", "node_memory_used_ratio", {"node": "ip-10-0-2-41"})
    'ip-10-0-2-41'
    >>> entity_of("api", "cpu_usage_cores", {"node": "ip-10-0-2-41"})
    'api'
    """
    node = labels.get("node")
    if node and metric.startswith("node_"):
        return node
    return service


def from_anomaly(a: Anomaly) -> Signal:
    kind = "log" if a.kind == "log" else "anomaly"
    what = a.template[:120] if a.kind == "log" and a.template else a.metric
    return Signal(
        kind=kind, fingerprint=f"{kind}:{a.series}",
        service=entity_of(a.service, a.metric, a.labels), rule=a.metric,
        status="resolved" if a.status == "resolved" else "firing",
        time=a.started_at if a.status == "open" and a.started_at else a.time,
        severity=a.severity, ref=a.anomaly_id, labels=dict(a.labels),
        summary=f"{what} {a.direction} ({a.observed:.4g} vs expected {a.expected:.4g})",
        attrs={"direction": a.direction, "observed": a.observed, "expected": a.expected,
               "score": a.score, "deviation": a.deviation, "series": a.series,
               **({"template": a.template} if a.template else {})},
    )


def from_alert(a: Alert) -> Signal:
    service = a.service or service_from_labels(a.labels)
    desc = a.annotations.get("summary") or a.annotations.get("description") or ""
    return Signal(
        kind="alert", fingerprint=f"alert:{a.fingerprint}", service=service, rule=a.name,
        status=a.status, time=a.starts_at if a.status == "firing" and a.starts_at else a.time,
        severity=alert_severity(a.severity), ref=a.fingerprint, labels=dict(a.labels),
        summary=f"alert {a.name}" + (f": {desc[:200]}" if desc else ""),
        attrs={"source": a.source, **alert_links(a)},
    )


def alert_links(a: Alert) -> dict[str, str]:
    """The alert's runbook and source links (http/https only), for the console.

    >>> alert_links(Alert(fingerprint="f", name="X", generator_url="http://prom/graph?g0.expr=up",
    ...                   annotations={"runbook_url": "https://wiki/x", "dashboard": "javascript:1"}))
    {'runbook_url': 'https://wiki/x', 'generator_url': 'http://prom/graph?g0.expr=up'}
    """
    out = {}
    for key, value in (("runbook_url", a.annotations.get("runbook_url") or a.annotations.get("runbook")),
                       ("dashboard_url", a.annotations.get("dashboard")),
                       ("generator_url", a.generator_url)):
        if value and value.startswith(("http://", "https://")) and len(value) <= 4096:
            out[key] = value
    return out


def resolve_signal(incident_id: str, group: str, actor: str, time: datetime) -> Signal:
    """A person resolved ``incident_id`` (kept by ``group``): resolve it in the correlator."""
    return Signal(kind="resolve", fingerprint=f"resolve:{incident_id}", service=group,
                  ref=incident_id, time=time, summary=actor, attrs={"actor": actor})


def from_prediction(p: Prediction) -> Signal:
    return Signal(
        kind="prediction", fingerprint=f"prediction:{p.series}",
        service=entity_of(p.service, p.metric, p.labels), rule=p.metric,
        time=p.time, severity=p.severity, ref=p.event_id, labels=dict(p.labels),
        summary=f"{p.metric} predicted to reach {p.limit:.4g} in {p.seconds_to_breach / 60:.0f} min",
        attrs={"direction": "up" if p.slope_per_hour >= 0 else "down", "current": p.current,
               "limit": p.limit, "seconds_to_breach": p.seconds_to_breach,
               "confidence": p.confidence, "series": p.series},
    )


_POD_SUFFIX = re.compile(r"-(?:[a-z0-9]{8,10}-[a-z0-9]{5}|[a-z0-9]{5}|\d+)$")

#: k8s event reasons that are symptoms, normalised; others of type Warning keep their reason
_K8S_REASONS = {
    "backoff": "CrashLoopBackOff", "crashloopbackoff": "CrashLoopBackOff",
    "oomkilled": "OOMKilled", "oomkilling": "OOMKilled",
    "failedscheduling": "FailedScheduling", "unhealthy": "ProbeFailed",
    "evicted": "Evicted", "nodenotready": "NodeNotReady", "nodehasdiskpressure": "DiskPressure",
    "nodehasmemorypressure": "MemoryPressure", "evictionthresholdmet": "NodePressure",
    "errimagepull": "ImagePullBackOff", "imagepullbackoff": "ImagePullBackOff",
    "failedmount": "FailedMount", "failedcreatepodsandbox": "FailedCreatePodSandBox",
}
_K8S_CRITICAL = {"CrashLoopBackOff", "OOMKilled", "NodeNotReady", "Evicted"}


def service_of_pod(name: str) -> str:
    """Strip ReplicaSet/StatefulSet suffixes from a pod name.

    >>> service_of_pod("api-7d9f8b6c4-xk2lp"), service_of_pod("db-0"), service_of_pod("web")
    ('api', 'db', 'web')
    """
    return _POD_SUFFIX.sub("", name) or name


def from_k8s(e: K8sEvent) -> Signal | None:
    """A signal for Warning events (and symptom reasons); None for routine Normal events."""
    reason = _K8S_REASONS.get(e.reason.lower(), e.reason)
    if reason == "ImagePullBackOff" or (e.reason == "Failed" and "image" in e.message.lower()):
        reason = "ImagePullBackOff"
    if e.type != "Warning" and e.reason.lower() not in _K8S_REASONS:
        return None
    service = e.service or (service_of_pod(e.name) if e.kind in ("Pod", "ReplicaSet") else e.name)
    return Signal(
        kind="k8s", fingerprint=f"k8s:{e.namespace}/{service}:{reason}", service=service,
        rule=reason, time=e.time, severity="critical" if reason in _K8S_CRITICAL else "warning",
        ref=e.event_id, labels={"namespace": e.namespace, "object": f"{e.kind}/{e.name}"},
        summary=f"{reason} on {e.kind.lower()} {e.namespace}/{e.name}: {e.message[:200]}".rstrip(": "),
        attrs={"reason": reason, "count": e.count, "object": f"{e.kind}/{e.name}"},
    )


def from_deploy(d: DeployEvent) -> Signal:
    return Signal(
        kind="deploy", fingerprint=f"deploy:{d.event_id}", service=d.service, rule=d.change_type,
        time=d.time, severity="info", ref=d.event_id, labels={"namespace": d.namespace},
        summary=f"{d.change_type} of {d.app} to {d.revision or '?'}"
                + (f" by {d.author}" if d.author else ""),
        attrs={"app": d.app, "revision": d.revision, "previous_revision": d.previous_revision,
               "change_type": d.change_type, "author": d.author, "images": list(d.images),
               "sync_status": d.sync_status, "health_status": d.health_status,
               "message": d.message[:300], "namespace": d.namespace},
    )

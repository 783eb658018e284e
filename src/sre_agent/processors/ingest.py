"""Parse inbound webhook payloads and Kubernetes objects into wire events (pure).

* ArgoCD notifications webhook -> :class:`DeployEvent` (a flat template, or the
  whole Application object via ``{{toJson .app}}``);
* Prometheus Alertmanager webhook (payload version 4) -> :class:`Alert` list;
* n9e (夜莺) callback (one event object or a list) -> :class:`Alert` list;
* core/v1 ``Event`` and ``Pod`` JSON (camelCase, as the API serves them) ->
  :class:`K8sEvent` (CrashLoopBackOff, OOMKilled, FailedScheduling, probes ...).

Every parser raises :class:`PayloadError` with a message fit for a 400 answer.

Examples
--------
>>> a = parse_alertmanager({"version": "4", "status": "firing", "alerts": [{
...     "status": "firing", "labels": {"alertname": "HighErrorRate", "service": "api",
...     "severity": "critical"}, "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
...     "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc123"}]})
>>> a[0].name, a[0].service, a[0].fingerprint, a[0].ends_at
('HighErrorRate', 'api', 'abc123', None)
>>> d = parse_argocd({"app": "payments", "revision": "9f8e7d", "images": ["pay:v2"],
...                   "author": "alice", "time": "2026-01-01T00:00:00Z"})
>>> d.service, d.revision, d.images, d.author
('payments', '9f8e7d', ['pay:v2'], 'alice')
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..schemas import Alert, DeployEvent, K8sEvent
from .correlate_signals import service_from_labels

__all__ = [
    "PayloadError",
    "k8s_event_from_event",
    "k8s_events_from_pod",
    "parse_alertmanager",
    "parse_argocd",
    "parse_n9e",
]


class PayloadError(ValueError):
    """A webhook payload that cannot become events; the message explains why."""


def _time(raw: Any, default: datetime | None = None) -> datetime | None:
    if raw in (None, "", 0):
        return default
    try:
        if isinstance(raw, (int, float)):
            return datetime.fromtimestamp(raw / 1000 if raw > 1e11 else raw, UTC)
        dt = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise PayloadError(f"bad timestamp {raw!r}") from None
    if dt.year < 1971:  # Alertmanager's zero time "0001-01-01T00:00:00Z" means unset
        return default
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _model(cls: type, **kw: Any) -> Any:
    try:
        return cls(**kw)
    except ValidationError as exc:
        errs = exc.errors(include_url=False, include_input=False)[:3]
        raise PayloadError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in errs)) from None


def _dig(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def parse_argocd(payload: Any, now: datetime | None = None) -> DeployEvent:
    """An ArgoCD notification (flat template or ``{"app": <Application>}``) -> deploy event."""
    if not isinstance(payload, dict):
        raise PayloadError("expected a JSON object")
    app = payload.get("app") or payload.get("application")
    flat = dict(payload)
    if isinstance(app, dict):  # the whole Application object
        labels = _dig(app, "metadata", "labels") or {}
        op = _dig(app, "status", "operationState") or {}
        history = _dig(app, "status", "history") or []
        initiated = _dig(op, "operation", "initiatedBy") or {}
        flat = {
            "app": _dig(app, "metadata", "name"),
            "service": payload.get("service") or labels.get("app.kubernetes.io/name")
            or labels.get("app"),
            "namespace": _dig(app, "spec", "destination", "namespace"),
            "revision": _dig(app, "status", "sync", "revision") or _dig(op, "syncResult", "revision"),
            "previous_revision": history[-2].get("revision") if len(history) >= 2
            and isinstance(history[-2], dict) else None,
            "sync_status": _dig(app, "status", "sync", "status"),
            "health_status": _dig(app, "status", "health", "status"),
            "images": _dig(app, "status", "summary", "images") or [],
            "author": initiated.get("username") or ("automated" if initiated.get("automated")
                                                    else None),
            "time": op.get("finishedAt") or op.get("startedAt"),
            "message": op.get("message") or "",
            **{k: payload[k] for k in ("change_type", "author") if payload.get(k)},
        }
    name = flat.get("app") or flat.get("app_name") or flat.get("name")
    if not name or not isinstance(name, str):
        raise PayloadError('missing "app" (the ArgoCD application name)')
    images = flat.get("images") or []
    if isinstance(images, str):
        images = [i.strip() for i in images.split(",") if i.strip()]
    change = str(flat.get("change_type") or "deploy").lower()
    if change not in ("deploy", "config", "rollback", "scale"):
        raise PayloadError(f"change_type {change!r}: use deploy, config, rollback or scale")
    when = _time(flat.get("time") or flat.get("finished_at") or flat.get("finishedAt"),
                 now or datetime.now(UTC))
    return _model(
        DeployEvent, app=name, service=flat.get("service") or name,
        namespace=flat.get("namespace") or "default", revision=str(flat.get("revision") or ""),
        previous_revision=flat.get("previous_revision"),
        sync_status=str(flat.get("sync_status") or flat.get("syncStatus") or "Synced"),
        health_status=flat.get("health_status") or flat.get("healthStatus"),
        images=[str(i) for i in images], author=flat.get("author") or flat.get("initiator"),
        change_type=change, message=str(flat.get("message") or "")[:2000], time=when)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _link(value: Any) -> str | None:
    """An http(s) URL kept as a link (Alertmanager's ``generatorURL``), else None.

    >>> _link("http://prometheus:9090/graph?g0.expr=up"), _link("javascript:alert(1)")
    ('http://prometheus:9090/graph?g0.expr=up', None)
    """
    if not isinstance(value, str) or len(value) > 4096:
        return None
    return value if value.startswith(("http://", "https://")) else None


def parse_alertmanager(payload: Any) -> list[Alert]:
    """Alertmanager webhook (``version: "4"``) -> one :class:`Alert` per alert."""
    if not isinstance(payload, dict):
        raise PayloadError("expected a JSON object")
    version = str(payload.get("version", "4"))
    if version != "4":
        raise PayloadError(f"unsupported Alertmanager webhook version {version!r} (want 4)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError('missing "alerts" list')
    out = []
    common = payload.get("commonLabels") or {}
    for i, a in enumerate(alerts):
        if not isinstance(a, dict):
            raise PayloadError(f"alerts[{i}]: expected an object")
        labels = {str(k): str(v) for k, v in {**common, **(a.get("labels") or {})}.items()}
        name = labels.get("alertname")
        if not name:
            raise PayloadError(f"alerts[{i}]: labels.alertname is missing")
        status = a.get("status") or payload.get("status") or "firing"
        if status not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{i}]: status {status!r} is not firing/resolved")
        starts = _time(a.get("startsAt"))
        ends = _time(a.get("endsAt"))
        fp = a.get("fingerprint") or _fingerprint(sorted(labels.items()))
        out.append(_model(
            Alert, fingerprint=str(fp), name=name, status=status,
            severity=labels.get("severity", "warning"),
            service=service_from_labels(labels, "") or None, labels=labels,
            annotations={str(k): str(v) for k, v in (a.get("annotations") or {}).items()},
            starts_at=starts, ends_at=ends, source="alertmanager",
            generator_url=_link(a.get("generatorURL")),
            time=(ends if status == "resolved" and ends else starts) or datetime.now(UTC)))
    return out


_N9E_SEVERITY = {1: "critical", 2: "warning", 3: "info"}


def parse_n9e(payload: Any) -> list[Alert]:
    """n9e (夜莺) callback: an ``AlertCurEvent`` object (or a list of them) -> alerts."""
    events = payload if isinstance(payload, list) else [payload]
    out = []
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            raise PayloadError(f"event[{i}]: expected an object")
        name = e.get("rule_name")
        if not name:
            raise PayloadError(f"event[{i}]: rule_name is missing")
        tags = e.get("tags_map") or {}
        if not tags and isinstance(e.get("tags"), list):
            tags = dict(t.split("=", 1) for t in e["tags"] if isinstance(t, str) and "=" in t)
        labels = {str(k): str(v) for k, v in tags.items()}
        if e.get("target_ident"):
            labels.setdefault("ident", str(e["target_ident"]))
        try:
            sev = _N9E_SEVERITY.get(int(e.get("severity", 2)), "warning")
        except (TypeError, ValueError):
            raise PayloadError(f"event[{i}]: severity {e.get('severity')!r} is not 1, 2 or 3") from None
        recovered = bool(e.get("is_recovered"))
        trigger = _time(e.get("trigger_time") or e.get("last_eval_time"), datetime.now(UTC))
        first = _time(e.get("first_trigger_time"), trigger)
        fp = e.get("hash") or _fingerprint(e.get("rule_id"), sorted(labels.items()))
        annotations = {str(k): str(v) for k, v in (e.get("annotations") or {}).items()}
        if e.get("rule_note"):
            annotations.setdefault("description", str(e["rule_note"]))
        if e.get("trigger_value") is not None:
            annotations.setdefault("value", str(e["trigger_value"]))
        svc = service_from_labels(labels, "")
        out.append(_model(
            Alert, fingerprint=str(fp), name=str(name), status="resolved" if recovered else "firing",
            severity=sev, service=svc or None, labels=labels, annotations=annotations,
            starts_at=first, ends_at=trigger if recovered else None, source="n9e", time=trigger))
    return out


def k8s_event_from_event(obj: dict[str, Any]) -> K8sEvent | None:
    """A core/v1 Event (camelCase JSON) -> K8sEvent; None for routine Normal events."""
    inv = obj.get("involvedObject") or obj.get("regarding") or {}
    reason = obj.get("reason") or ""
    etype = obj.get("type") or "Normal"
    if not reason or not inv.get("name") or (etype != "Warning" and reason not in (
            "OOMKilling", "Evicted", "NodeNotReady")):
        return None
    when = _time(obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("firstTimestamp")
                 or _dig(obj, "metadata", "creationTimestamp"), datetime.now(UTC))
    uid = _dig(obj, "metadata", "uid") or _fingerprint(inv.get("name"), reason, str(when))
    return K8sEvent(event_id=f"k8s-{uid}-{obj.get('count') or 1}", namespace=inv.get(
        "namespace") or _dig(obj, "metadata", "namespace") or "default",
        kind=inv.get("kind") or "Pod", name=inv["name"], reason=reason,
        type="Warning" if etype == "Warning" else "Normal",
        message=str(obj.get("message") or obj.get("note") or "")[:2000],
        count=max(1, int(obj.get("count") or 1)), time=when)


def k8s_events_from_pod(pod: dict[str, Any]) -> list[K8sEvent]:
    """Container states of a Pod: waiting CrashLoopBackOff/ImagePullBackOff, last OOMKilled."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    out = []
    for cs in _dig(pod, "status", "containerStatuses") or []:
        waiting = _dig(cs, "state", "waiting", "reason")
        last = _dig(cs, "lastState", "terminated") or {}
        restarts = int(cs.get("restartCount") or 0)
        found = []
        if waiting in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                       "CreateContainerConfigError"):
            found.append((waiting, _dig(cs, "state", "waiting", "message") or ""))
        if last.get("reason") == "OOMKilled":
            found.append(("OOMKilled", f"container {cs.get('name')} OOMKilled "
                                       f"(exit {last.get('exitCode')})"))
        for reason, msg in found:
            out.append(K8sEvent(
                event_id=f"pod-{meta.get('uid', meta.get('name'))}-{cs.get('name')}-{reason}-{restarts}",
                namespace=meta.get("namespace") or "default", kind="Pod", name=meta.get("name", "?"),
                service=service_from_labels(labels, "") or None, reason=reason, type="Warning",
                message=str(msg)[:2000], count=max(1, restarts),
                time=_time(last.get("finishedAt"), datetime.now(UTC)) if reason == "OOMKilled"
                else datetime.now(UTC)))
    return out

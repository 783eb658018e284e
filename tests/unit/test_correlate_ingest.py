"""Webhook payloads (ArgoCD, Alertmanager v4, n9e) and k8s objects -> wire events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sre_agent.processors.correlate_signals import from_alert, from_k8s
from sre_agent.processors.ingest import (
    PayloadError,
    k8s_event_from_event,
    k8s_events_from_pod,
    parse_alertmanager,
    parse_argocd,
    parse_n9e,
)

AM = {
    "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
    "status": "firing", "receiver": "sre-agent", "groupLabels": {"alertname": "HighLatency"},
    "commonLabels": {"alertname": "HighLatency", "cluster": "prod"},
    "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "HighLatency", "service": "checkout",
                                        "severity": "critical"},
         "annotations": {"summary": "p99 > 500ms"}, "startsAt": "2026-02-01T10:00:00.123Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph",
         "fingerprint": "c0ffee"},
        {"status": "resolved", "labels": {"alertname": "HighLatency", "job": "cart"},
         "annotations": {}, "startsAt": "2026-02-01T09:00:00Z", "endsAt": "2026-02-01T09:30:00Z"},
    ]}


def test_alertmanager_v4() -> None:
    a, b = parse_alertmanager(AM)
    assert (a.fingerprint, a.name, a.status, a.service, a.severity) == (
        "c0ffee", "HighLatency", "firing", "checkout", "critical")
    assert a.labels["cluster"] == "prod" and a.annotations["summary"] == "p99 > 500ms"
    assert a.starts_at == datetime(2026, 2, 1, 10, 0, 0, 123000, UTC) and a.ends_at is None
    assert b.status == "resolved" and b.service == "cart" and b.fingerprint  # computed
    assert b.time == datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
    assert parse_alertmanager(AM)[1].fingerprint == b.fingerprint  # stable
    assert from_alert(a).fingerprint == "alert:c0ffee"


@pytest.mark.parametrize("payload, msg", [
    ([], "expected a JSON object"),
    ({"version": "3", "alerts": []}, "version"),
    ({"version": "4"}, '"alerts"'),
    ({"version": "4", "alerts": [{"labels": {}}]}, "alertname"),
    ({"version": "4", "alerts": [{"status": "pending", "labels": {"alertname": "x"}}]}, "status"),
    ({"version": "4", "alerts": [{"labels": {"alertname": "x"}, "startsAt": "soon"}]}, "timestamp"),
])
def test_alertmanager_errors(payload: object, msg: str) -> None:
    with pytest.raises(PayloadError, match=msg):
        parse_alertmanager(payload)


N9E = {"id": 42, "cluster": "default", "hash": "9b1f0e", "rule_id": 7,
       "rule_name": "mysql connections high", "rule_note": "connections > 90%", "severity": 1,
       "prom_ql": "mysql_global_status_threads_connected > 900",
       "target_ident": "db-01", "tags": ["service=orders-db", "env=prod"],
       "is_recovered": False, "trigger_time": 1767261600, "first_trigger_time": 1767261540,
       "trigger_value": "931"}


def test_n9e_callback_single_and_list() -> None:
    (a,) = parse_n9e(N9E)
    assert (a.fingerprint, a.name, a.severity, a.service, a.status, a.source) == (
        "9b1f0e", "mysql connections high", "critical", "orders-db", "firing", "n9e")
    assert a.labels["ident"] == "db-01" and a.annotations["value"] == "931"
    assert a.starts_at == datetime.fromtimestamp(1767261540, UTC)
    rec = parse_n9e([{**N9E, "is_recovered": True, "severity": 3, "tags_map": {"app": "x"}}])[0]
    assert rec.status == "resolved" and rec.severity == "info" and rec.service == "x"
    assert rec.ends_at is not None


@pytest.mark.parametrize("payload, msg", [
    ("text", "expected an object"), ({"severity": 1}, "rule_name"),
    ({**N9E, "severity": "high"}, "severity"),
])
def test_n9e_errors(payload: object, msg: str) -> None:
    with pytest.raises(PayloadError, match=msg):
        parse_n9e(payload)


def test_argocd_flat_template() -> None:
    d = parse_argocd({"app": "checkout", "revision": "a1b2c3", "images": "checkout:2.1, sidecar:1",
                      "sync_status": "Synced", "health_status": "Healthy", "initiator": "bob",
                      "time": "2026-02-01T10:00:00Z", "namespace": "shop"})
    assert (d.app, d.service, d.namespace, d.revision, d.author) == (
        "checkout", "checkout", "shop", "a1b2c3", "bob")
    assert d.images == ["checkout:2.1", "sidecar:1"] and d.change_type == "deploy"
    assert d.key() == "checkout"


def test_argocd_application_object() -> None:
    app = {"metadata": {"name": "orders", "labels": {"app": "orders-api"}},
           "spec": {"destination": {"namespace": "trading"}},
           "status": {"sync": {"status": "Synced", "revision": "r9"},
                      "health": {"status": "Progressing"},
                      "summary": {"images": ["orders:9"]},
                      "history": [{"revision": "r8"}, {"revision": "r9"}],
                      "operationState": {"finishedAt": "2026-02-01T10:05:00Z",
                                         "operation": {"initiatedBy": {"automated": True}}}}}
    d = parse_argocd({"app": app, "change_type": "config"})
    assert (d.app, d.service, d.namespace, d.revision, d.previous_revision) == (
        "orders", "orders-api", "trading", "r9", "r8")
    assert d.author == "automated" and d.change_type == "config" and d.images == ["orders:9"]


@pytest.mark.parametrize("payload, msg", [
    ({"revision": "x"}, '"app"'), ({"app": "a", "change_type": "yolo"}, "change_type"),
    ({"app": "a", "time": "later"}, "timestamp"), ("x", "expected a JSON object"),
])
def test_argocd_errors(payload: object, msg: str) -> None:
    with pytest.raises(PayloadError, match=msg):
        parse_argocd(payload)


def test_k8s_event_objects() -> None:
    ev = {"metadata": {"name": "api-x.17", "namespace": "shop", "uid": "u1"},
          "involvedObject": {"kind": "Pod", "name": "api-7d9f8b6c4-xk2lp", "namespace": "shop"},
          "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
          "count": 5, "lastTimestamp": "2026-02-01T10:00:00Z"}
    k = k8s_event_from_event(ev)
    assert k is not None and (k.reason, k.count, k.namespace) == ("BackOff", 5, "shop")
    sig = from_k8s(k)
    assert sig is not None and (sig.service, sig.rule) == ("api", "CrashLoopBackOff")
    normal = {**ev, "type": "Normal", "reason": "Pulled"}
    assert k8s_event_from_event(normal) is None
    sched = {**ev, "reason": "FailedScheduling", "message": "0/3 nodes are available"}
    assert from_k8s(k8s_event_from_event(sched)).rule == "FailedScheduling"  # type: ignore[arg-type]


def test_k8s_pod_states() -> None:
    pod = {"metadata": {"name": "pay-5c8d7f9b6-abcde", "namespace": "fin", "uid": "p1",
                        "labels": {"app": "payments"}},
           "status": {"containerStatuses": [
               {"name": "app", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                             "finishedAt": "2026-02-01T10:00:00Z"}}},
               {"name": "sidecar", "restartCount": 0, "state": {"running": {}}}]}}
    evs = k8s_events_from_pod(pod)
    assert sorted(e.reason for e in evs) == ["CrashLoopBackOff", "OOMKilled"]
    assert all(e.service == "payments" and e.count == 4 for e in evs)
    assert len({e.event_id for e in evs}) == 2
    assert k8s_events_from_pod({"metadata": {"name": "x"}, "status": {}}) == []

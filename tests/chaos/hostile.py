"""Hostile values and one valid event per topic, shared by the fuzz tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

__all__ = ["T0", "VALID", "dumps", "hostile_numbers", "hostile_strings", "hostile_times",
           "json_values", "label_explosion"]

T0 = 1_763_000_000.0
TS = "2025-11-13T02:13:20Z"
TARGET = {"kind": "deployment", "name": "api", "namespace": "prod", "service": "api"}
STEP = {"action": "rollout_restart", "target": TARGET, "params": {"replicas": 2}, "risk": 0.3}

#: one valid event per topic, the seeds of the mutations
VALID: dict[str, dict[str, Any]] = {
    "metrics": {"source": "prom", "shard": 3, "series": [
        {"name": "latency_ms", "labels": {"service": "api", "pod": "api-1"},
         "points": [[T0, 12.5], [T0 + 15, 13.0]]}]},
    "logs": {"service": "api", "level": "error", "message": "timeout talking to db",
             "labels": {"pod": "api-1"}},
    "k8s-events": {"namespace": "prod", "kind": "Pod", "name": "api-1", "service": "api",
                   "reason": "OOMKilled", "type": "Warning", "message": "oom", "count": 2},
    "deploy-events": {"app": "api", "service": "api", "namespace": "prod", "revision": "abc",
                      "previous_revision": "abb", "images": ["api:1.2"], "author": "bob"},
    "alerts": {"fingerprint": "f1", "name": "HighLatency", "status": "firing",
               "labels": {"service": "api"}, "annotations": {"summary": "slow"},
               "starts_at": TS},
    "anomalies": {"anomaly_id": "a1", "series": 'latency_ms{service="api"}',
                  "metric": "latency_ms", "service": "api", "labels": {"service": "api"},
                  "observed": 900.0, "expected": 50.0, "lower": 40.0, "upper": 60.0,
                  "deviation": 8.0, "score": 0.99, "started_at": TS},
    "predictions": {"series": "disk", "metric": "disk_used", "current": 0.8, "limit": 0.95,
                    "breach_at": TS, "seconds_to_breach": 3600, "confidence": 0.7},
    "incidents": {"incident_id": "i1", "title": "api slow", "services": ["api"],
                  "fingerprint": "fp", "opened_at": TS, "signals": [
                      {"kind": "anomaly", "ref": "a1", "service": "api", "time": TS}],
                  "candidate_changes": [{"kind": "deploy", "revision": "abc"}]},
    "rca-results": {"incident_id": "i1", "hypotheses": [
        {"cause_type": "bad_deploy", "service": "api", "confidence": 0.8, "summary": "deploy",
         "evidence": [{"kind": "deploy", "summary": "abc", "weight": 0.5}]}],
        "similar": [{"id": "s1", "title": "old", "similarity": 0.5}]},
    "action-plans": {"plan_id": "p1", "incident_id": "i1", "steps": [STEP], "risk_score": 0.5,
                     "risk_tier": "MEDIUM", "policy": "ONE_APPROVAL", "expires_at": TS},
    "approvals": {"plan_id": "p1", "decision": "approve", "user": "alice", "role": "sre"},
    "sre-actions": {"action_id": "x1", "idempotency_key": "p1:0", "plan_id": "p1",
                    "incident_id": "i1", "step": STEP, "policy": "AUTO"},
    "action-results": {"action_id": "x1", "plan_id": "p1", "incident_id": "i1",
                       "status": "dry_run", "snapshot": {"replicas": 2}},
    "feedback": {"incident_id": "i1", "kind": "rca", "rating": "good", "user": "alice"},
    "audit": {"actor": "executor", "action": "action.executed", "subject": "x1",
              "details": {"dry_run": True}, "idempotency_key": "p1:0"},
    "incident-triage": {"incident_id": "i1", "action": "snooze", "actor": "api:otto",
                        "minutes": 30, "comment": "looking"},
    "silences": {"silence_id": "s1", "matchers": {"service": "api"}, "starts_at": TS,
                 "ends_at": "2025-11-13T04:13:20Z", "author": "api:otto", "comment": "deploy"},
    "rca-windows": {"source": "w/0", "service": ["api"], "metric": ['latency_ms{pod="api-1"}'],
                    "t": [T0 + 15], "total": [25.5], "count": [2]},
}

# ------------------------------------------------------------------ hostile values
_OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
hostile_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=_OFFSETS | st.none()).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
                     "+99999-01-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-13-01",
                     "1970-01-01T00:00:00Z", "3000-01-01T00:00:00Z", "now", "",
                     "2025-11-13T02:13:20.123456789Z", "2025-11-13 02:13:20"]),
    st.sampled_from([0, -1, 1e11, 9.99e10, 253402300799, 2**63, -2**63, 1e20, 1e308]),
)
hostile_strings = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=200),
    st.sampled_from(["\u0000", "\ufeff", "\u202e", "🔥" * 50, "a" * 70_000, "\\", '"',
                     "$(rm -rf /)", "; kubectl delete ns prod", "{{7*7}}", "../../etc/passwd",
                     "<script>", "x" * 129, "x" * 254]),
)
hostile_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80), st.integers(max_value=-2**62, min_value=-2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324]),
)
json_leaf = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_strings, hostile_times)
json_values = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(hostile_strings, kids, max_size=4),
    max_leaves=20,
)


def label_explosion(n: int) -> dict[str, str]:
    return {f"l{i}": f"v{i}" for i in range(n)}


def dumps(value: Any, variant: int) -> bytes:
    """JSON text in one of several dialects (NaN tokens, raw surrogates, ASCII escapes)."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=variant % 2 == 0)
    return text.encode("utf-8", "surrogatepass")



"""Helpers for the API/console tests: tokens, events of a whole incident, HTTP calls.

Not a conftest: imported explicitly by the tests that need it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from slack_sdk.signature import SignatureVerifier

from sre_agent.schemas import (
    ActionPlan,
    ActionResult,
    ActionStep,
    Anomaly,
    Approval,
    AuditRecord,
    EvidenceItem,
    Hypothesis,
    Incident,
    RcaResult,
    SignalRef,
    Target,
)

TOKENS = {
    "tok-viewer": "viewer:vera",
    "tok-operator": "operator:otto",
    "tok-approver": "approver:alice",
    "tok-admin": "admin:root",
}
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_ROLES = {"U-ONCALL": "oncall", "U-VIEWER": "viewer"}


def api_env(**extra: str) -> dict[str, str]:
    env = {
        "SRE_AGENT_API__TOKENS": orjson.dumps(TOKENS).decode(),
        "SRE_AGENT_SLACK__SIGNING_SECRET": SLACK_SECRET,
        "SRE_AGENT_SLACK__USER_ROLES": orjson.dumps(SLACK_ROLES).decode(),
    }
    env.update(extra)
    return env


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(
    base: str,
    path: str,
    method: str = "GET",
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, str]:
    """(status, parsed JSON or None, raw text) of one request."""
    h = dict(headers or {})
    if token:
        h.update(auth(token))
    req = urllib.request.Request(base + path, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    data = orjson.loads(raw) if "json" in ctype and raw else None
    return status, data, raw.decode("utf-8", "replace")


def slack_post(
    base: str,
    text: str,
    user_id: str = "U-ONCALL",
    user_name: str = "olga",
    secret: str = SLACK_SECRET,
    ts: int | None = None,
) -> tuple[int, Any, str]:
    body = urllib.parse.urlencode(
        {
            "command": "/sre",
            "text": text,
            "user_id": user_id,
            "user_name": user_name,
            "channel_id": "C1",
            "team_id": "T1",
        }
    ).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    sig = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return call(
        base,
        "/slack/commands",
        "POST",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sig,
        },
    )


def incident_events(
    iid: str,
    service: str = "api",
    plan_id: str | None = None,
    now: datetime | None = None,
    severity: str = "critical",
    decided: bool = True,
) -> list[Any]:
    """Incident, anomaly, RCA, plan, an audit record; if ``decided``, a vote and a result."""
    t = now or datetime.now(UTC)
    aid = f"an-{iid}"
    plan_id = plan_id or f"plan-{iid}"
    series = f'latency_ms{{service="{service}"}}'
    anomaly = Anomaly(
        anomaly_id=aid,
        series=series,
        metric="latency_ms",
        service=service,
        labels={"service": service},
        observed=900.0,
        expected=50.0,
        lower=40.0,
        upper=60.0,
        deviation=80.0,
        score=0.99,
        severity="critical",
        time=t - timedelta(seconds=30),
    )
    inc = Incident(
        incident_id=iid,
        title=f"{service} latency spike",
        severity=severity,  # type: ignore[arg-type]
        services=[service],
        root_service=service,
        fingerprint=f"fp-{iid}",
        signals=[
            SignalRef(
                kind="anomaly",
                ref=aid,
                service=service,
                summary="latency_ms 900 (expected 50)",
                time=anomaly.time,
            )
        ],
        signal_count=1,
        opened_at=t - timedelta(seconds=20),
        time=t - timedelta(seconds=20),
    )
    rca = RcaResult(
        incident_id=iid,
        severity="critical",
        services=[service],
        time=t - timedelta(seconds=10),
        hypotheses=[
            Hypothesis(
                cause_type="bad_deploy",
                service=service,
                confidence=0.82,
                summary=f"deploy of {service} v2.4.0 right before the spike",
                evidence=[EvidenceItem(kind="deploy", summary="v2.4.0 rolled out 2 min before")],
                recommended_actions=["rollout_undo"],
            )
        ],
    )
    step = ActionStep(
        action="rollout_undo", target=Target(kind="deployment", name=service, namespace="prod")
    )
    plan = ActionPlan(
        plan_id=plan_id,
        incident_id=iid,
        summary=f"roll back {service}",
        steps=[step],
        risk_score=0.5,
        risk_tier="MEDIUM",
        policy="ONE_APPROVAL",
        time=t - timedelta(seconds=5),
    )
    vote = Approval(
        plan_id=plan_id, decision="approve", user="bob", role="sre", time=t - timedelta(seconds=3)
    )
    result = ActionResult(
        action_id=f"act-{iid}",
        plan_id=plan_id,
        incident_id=iid,
        status="dry_run",
        detail="would undo rollout",
        time=t - timedelta(seconds=1),
    )
    audit = AuditRecord(
        actor="risk", action="plan.created", subject=plan_id, time=t - timedelta(seconds=5)
    )
    return [anomaly, inc, rca, plan, audit] + ([vote, result] if decided else [])

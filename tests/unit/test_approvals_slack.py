"""Slack request signing (slack-sdk SignatureVerifier) and the approval message."""

from __future__ import annotations

import time
from urllib.parse import quote

import orjson
import pytest
from slack_sdk.signature import SignatureVerifier

from sre_agent.schemas import ActionPlan, ActionStep, Target
from sre_agent.sinks.slack import (
    APPROVE_ID,
    REJECT_ID,
    InteractionError,
    check_signature,
    parse_interaction,
    plan_blocks,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def signed(body: bytes, ts: int, secret: str = SECRET) -> dict[str, str]:
    sig = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": str(sig)}


def test_signature_checks() -> None:
    v = SignatureVerifier(SECRET)
    body = b"payload=%7B%7D"
    now = int(time.time())
    assert check_signature(v, body, signed(body, now)) is None
    assert check_signature(v, body, signed(body, now, "another-secret")) == "signature mismatch"
    assert check_signature(v, body + b"x", signed(body, now)) == "signature mismatch"
    assert check_signature(v, body, signed(body, now - 600)).startswith("stale timestamp")
    assert check_signature(v, body, {}) == "missing signature headers"
    assert check_signature(v, body, {"X-Slack-Request-Timestamp": "soon",
                                     "X-Slack-Signature": "v0=00"}) == "bad timestamp"


def form(payload: object) -> bytes:
    return b"payload=" + quote(orjson.dumps(payload).decode()).encode()


def test_parse_interaction() -> None:
    p = {"type": "block_actions", "user": {"id": "U42", "username": "ann"},
         "actions": [{"action_id": REJECT_ID, "value": "plan-1"}]}
    assert parse_interaction(form(p)) == {"user_id": "U42", "user_name": "ann",
                                          "decision": "reject", "plan_id": "plan-1"}
    for bad in ({"type": "view_submission"}, {"type": "block_actions", "actions": []},
                {"type": "block_actions", "actions": [{"action_id": "other", "value": "x"}]}):
        with pytest.raises(InteractionError):
            parse_interaction(form(bad))
    with pytest.raises(InteractionError):
        parse_interaction(b"payload=%7Bnot-json")


def test_blocks_carry_everything_an_approver_needs() -> None:
    plan = ActionPlan(
        plan_id="plan-9", incident_id="inc-9", risk_score=0.46, risk_tier="MEDIUM",
        policy="ONE_APPROVAL", cause_type="bad_deploy", service="checkout", confidence=0.85,
        playbook="bad-deploy-rollback", summary="v2.4 raised 5xx",
        evidence=["error ratio 12% since deploy v2.4", "deploy 3 min before"],
        similar=[{"title": "checkout 5xx after deploy", "similarity": 0.81,
                  "resolution": "rollout undo"}],
        steps=[ActionStep(action="rollout_undo", risk=0.45, verify={"check": "anomaly_cleared",
                                                                     "metric": "http_error_ratio"},
                          target=Target(kind="deployment", name="checkout", namespace="shop"))])
    text = orjson.dumps(plan_blocks(plan)).decode()
    for needle in ("bad_deploy on checkout (confidence 85%)", "0.46 MEDIUM", "ONE_APPROVAL",
                   "error ratio 12%", "rollout_undo", "deployment/shop/checkout",
                   "checkout 5xx after deploy", "81% similar", APPROVE_ID, REJECT_ID):
        assert needle in text, needle
    done = orjson.dumps(plan_blocks(plan, status="approved")).decode()
    assert APPROVE_ID not in done and "Plan APPROVED" in done

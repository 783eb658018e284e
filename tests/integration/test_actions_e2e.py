"""End to end on the real broker and PostgreSQL, in the Faust worker:

rca-result -> plan -> Slack message (local Web API stand-in, real slack-sdk client)
-> signed interaction callback -> approvals -> sre-actions -> rollout undo against
kmock (real kubernetes-asyncio client) -> verified result -> full audit chain in
PostgreSQL, verified. Also: a redelivered action is not executed again, a
protected target is never executed, forged/stale Slack signatures are rejected
and audited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import kmock
import orjson
import pytest

from sre_agent.schemas import (
    ActionPlan,
    ActionStep,
    Approval,
    Anomaly,
    EvidenceItem,
    Hypothesis,
    Incident,
    RcaResult,
    SimilarCase,
    SreAction,
    Target,
    utcnow,
)
from sre_agent.processors.execution import EFFECT_DELAY
from sre_agent.sinks.slack import APPROVE_ID
from tests.actions_support import (
    audit_rows,
    deployment,
    fresh_database,
    http,
    replicaset,
    verify_cli,
)
from tests.signing_support import authorised_action
from tests.standins.slack_server import SlackStandin, button_value, signed_interaction

pytestmark = pytest.mark.integration

SECRET = "e2e-signing-secret-0123456789"
DEPLOY = kmock.resource("apps", "v1", "deployments")
RS = kmock.resource("apps", "v1", "replicasets")


def incident(iid: str, service: str, status: str = "open") -> Incident:
    return Incident(incident_id=iid, status=status, title=f"{service} errors", severity="critical",
                    services=[service], fingerprint=f"fp-{iid}", opened_at=utcnow())


def rca(iid: str, cause: str, service: str, conf: float = 0.85) -> RcaResult:
    return RcaResult(
        incident_id=iid, severity="critical", services=[service, "web-frontend"],
        hypotheses=[Hypothesis(
            cause_type=cause, service=service, confidence=conf,
            summary=f"{service} v2 started failing right after its deploy",
            evidence=[EvidenceItem(kind="deploy", summary=f"deploy of {service}:v2 3 min before",
                                   weight=0.9),
                      EvidenceItem(kind="metric", summary="http_error_ratio 14% (baseline 0.2%)",
                                   weight=0.8)])],
        similar=[SimilarCase(id="INC-311", title="checkout 5xx after image bump",
                             similarity=0.83, resolution="rollout undo")])


def anomaly(service: str, status: str) -> Anomaly:
    return Anomaly(anomaly_id=f"an-{service}", status=status, series=f"http_error_ratio{{{service}}}",
                   metric="http_error_ratio", service=service, observed=0.14, expected=0.002,
                   lower=0.0, upper=0.01, deviation=12.0, score=0.95, severity="critical")


def requests_to(km: Any, method: str, path: str) -> int:
    return sum(1 for r in list(km) if str(r.method).upper().endswith(method)
               and r.url.path == path)


async def test_slack_approval_to_rollout_undo(worker_factory, kafka_io, wait_for, pg_dsn) -> None:
    dsn = await fresh_database(pg_dsn)
    slack = await SlackStandin().start()
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        dep = deployment("checkout", "shop", "uid-checkout", revision=2, image="checkout:v2")
        km.objects[DEPLOY, "shop", "checkout"] = dep
        km.objects[RS, "shop", "checkout-aaa"] = replicaset(dep, 1, "checkout:v1", "aaa")
        km.objects[RS, "shop", "checkout-bbb"] = replicaset(dep, 2, "checkout:v2", "bbb")
        km.objects[DEPLOY, "shop", "wallet-service"] = deployment(
            "wallet-service", "shop", "uid-wallet", 5, "wallet:v5")
        w = worker_factory(extra_env={
            "SRE_AGENT_POSTGRES__DSN": dsn,
            "SRE_AGENT_SLACK__BOT_TOKEN": slack.token,
            "SRE_AGENT_SLACK__SIGNING_SECRET": SECRET,
            "SRE_AGENT_SLACK__BASE_URL": slack.base_url,
            "SRE_AGENT_SLACK__USER_ROLES": '{"U0ONCALL": "oncall", "U0VIEWER": "viewer"}',
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__DEFAULT_NAMESPACE": "shop",
            "SRE_AGENT_ACTIONS__VERIFY_POLL_SECONDS": "0.2",
            "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice", "tok-vic": "viewer:vic"}',
        }).start()
        try:
            await scenario(w, km, slack, kafka_io, wait_for, dsn)
        except BaseException:
            print(w.tail(20000))
            raise
        finally:
            w.stop()
            await slack.stop()


async def scenario(w: Any, km: Any, slack: SlackStandin, kafka_io: Any, wait_for: Any,
                   dsn: str) -> None:
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    dep_path = "/apis/apps/v1/namespaces/shop/deployments/checkout"
    await kafka_io.send(pfx + "incidents", incident("inc-e2e", "checkout"))
    await kafka_io.send(pfx + "anomalies", anomaly("checkout", "open"))
    await kafka_io.send(pfx + "rca-results", rca("inc-e2e", "bad_deploy", "checkout"))

    # -- the plan, posted to Slack by the real slack-sdk client
    await wait_for(lambda: slack.plan_posts(), timeout=60)
    msg = slack.plan_posts()[0]
    plan_id = button_value(msg, APPROVE_ID)
    assert plan_id and msg["channel"] == "#sre-approvals"
    text = orjson.dumps(msg["blocks"]).decode()
    for needle in ("bad_deploy on checkout", "MEDIUM", "ONE_APPROVAL", "http_error_ratio 14%",
                   "rollout_undo", "deployment/shop/checkout", "checkout 5xx after image bump"):
        assert needle in text, needle
    plans = await kafka_io.read(pfx + "action-plans", until=lambda ms: len(ms) >= 1, timeout=10)
    plan = plans[0]
    assert plan["plan_id"] == plan_id and plan["risk_tier"] == "MEDIUM"
    assert 0.4 <= plan["risk_score"] < 0.6 and plan["status"] == "pending"
    step = plan["steps"][0]
    assert step["target"]["uid"] == "uid-checkout" and step["expect"] == {"revision": "2"}

    # -- the pending list, behind a bearer token
    status, body = await http("GET", w.url + "/api/approvals/pending")
    assert status == 401 and "error" in body
    status, body = await http("GET", w.url + "/api/approvals/pending",
                              headers={"Authorization": "Bearer tok-vic"})
    assert status == 200 and [i["plan_id"] for i in body["items"]] == [plan_id]
    assert body["items"][0]["quorum"] == "0/1 approvals"

    # -- forged and stale signatures are rejected (401) and audited; nothing is approved
    url = w.url + "/slack/interactions"
    forged, headers = signed_interaction("not-the-secret", "U0ONCALL", APPROVE_ID, plan_id)
    assert (await http("POST", url, forged, headers))[0] == 401
    stale, headers = signed_interaction(SECRET, "U0ONCALL", APPROVE_ID, plan_id,
                                        ts=int(utcnow().timestamp()) - 3600)
    status, body = await http("POST", url, stale, headers)
    assert status == 401 and "stale" in body["error"]
    # -- a signed press by someone who is not an approver is refused (and audited)
    body_v, headers = signed_interaction(SECRET, "U0VIEWER", APPROVE_ID, plan_id, "vic")
    status, body = await http("POST", url, body_v, headers)
    assert status == 200 and "not an approver" in body["text"]
    assert requests_to(km, "PATCH", dep_path) == 0

    # -- the on-call approves in Slack: signed callback -> approvals -> sre-actions -> undo
    good, headers = signed_interaction(SECRET, "U0ONCALL", APPROVE_ID, plan_id, "olga")
    status, body = await http("POST", url, good, headers)
    assert status == 200 and "Recorded" in body["text"], body

    def image() -> str:
        return km.objects[DEPLOY, "shop", "checkout"]["spec"]["template"]["spec"]["containers"][0]["image"]

    await wait_for(lambda: image() == "checkout:v1", timeout=60)
    labels = km.objects[DEPLOY, "shop", "checkout"]["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "checkout"}  # pod-template-hash of the old ReplicaSet dropped
    # post-action verification: the error-ratio anomaly clears -> verified success
    # (in event time after the rollback could take effect: a real detector resolves a
    # series only after several recovered scrapes; one resolved at once is not credited to
    # the action, see execution.not_caused)
    resolved = anomaly("checkout", "resolved")
    resolved.time = utcnow() + timedelta(seconds=EFFECT_DELAY["rollout_undo"] + 30)
    await kafka_io.send(pfx + "anomalies", resolved)
    results = await kafka_io.read(pfx + "action-results", until=lambda ms: len(ms) >= 1, timeout=60)
    res = results[0]
    assert (res["status"], res["verified"], res["dry_run"]) == ("succeeded", True, False), res
    assert "from revision 2 to 1" in res["detail"]
    assert res["snapshot"]["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v2"
    actions = await kafka_io.read(pfx + "sre-actions", until=lambda ms: len(ms) >= 1, timeout=10)
    assert actions[0]["approved_by"] == ["U0ONCALL"] and actions[0]["policy"] == "ONE_APPROVAL"
    await wait_for(lambda: any(b.get("ts") == msg_ts(slack) for b in slack.updates()), timeout=30)

    # -- the same action redelivered is not executed again
    assert requests_to(km, "PATCH", dep_path) == 1
    redelivered = SreAction.model_validate(actions[0])
    await kafka_io.send(pfx + "sre-actions", redelivered)
    await wait_for(lambda: has(dsn, "action.duplicate", redelivered.action_id), timeout=60)
    assert requests_to(km, "PATCH", dep_path) == 1

    # -- a protected target is never executed: the plan is BLOCKED, votes refused,
    #    and an action forged straight onto sre-actions is refused by the executor
    await kafka_io.send(pfx + "incidents", incident("inc-wallet", "wallet-service"))
    await kafka_io.send(pfx + "rca-results", rca("inc-wallet", "memory_leak", "wallet-service"))
    await wait_for(lambda: len(slack.plan_posts()) >= 2, timeout=60)
    blocked_msg = slack.plan_posts()[1]
    assert button_value(blocked_msg, APPROVE_ID) is None  # no buttons: diagnosis only
    assert "BLOCKED" in orjson.dumps(blocked_msg["blocks"]).decode()
    plans = await kafka_io.read(pfx + "action-plans", until=lambda ms: len(ms) >= 2, timeout=10)
    blocked = next(p for p in plans if p["service"] == "wallet-service")
    assert blocked["policy"] == "BLOCKED" and blocked["protected"] and blocked["status"] == "blocked"
    status, body = await http("POST", f"{w.url}/api/approvals/{blocked['plan_id']}/approve",
                              b"{}", {"Authorization": "Bearer tok-alice"})
    assert status == 409 and body["status"] == "blocked"
    forged_action = SreAction(
        action_id="forged-1", idempotency_key="forged-key-1", plan_id="forged", incident_id="inc-wallet",
        policy="ONE_APPROVAL", dry_run=False, approved_by=["mallory"],
        step=ActionStep(action="rollout_restart", target=Target(
            kind="deployment", name="wallet-service", namespace="shop", service="wallet-service")))
    await kafka_io.send(pfx + "sre-actions", forged_action)
    #    even fully signed evidence cannot get a protected target executed: the executor
    #    recomputes the policy of the attached plan (BLOCKED) whatever it claims
    claimed = ActionPlan.model_validate(blocked).model_copy(update={
        "plan_id": "plan-claims-one-approval", "policy": "ONE_APPROVAL", "status": "pending",
        "protected": False, "risk_score": 0.45, "risk_tier": "MEDIUM"})
    olga = Approval(plan_id=claimed.plan_id, decision="approve", user="U0ONCALL", source="slack")
    await kafka_io.send_signed(pfx + "sre-actions", authorised_action(claimed, [olga]))
    results = await kafka_io.read(pfx + "action-results", until=lambda ms: len(ms) >= 3, timeout=60)
    by_id = {r["action_id"]: r for r in results}  # keyed by plan: no order across partitions
    assert len(results) == 3 and by_id["forged-1"]["status"] == "blocked", results
    assert "action signature: unsigned" in by_id["forged-1"]["detail"]
    protected = by_id["plan-claims-one-approval-s0"]
    assert protected["status"] == "blocked" and "blocklist" in protected["detail"], protected
    assert requests_to(km, "PATCH", "/apis/apps/v1/namespaces/shop/deployments/wallet-service") == 0

    # -- the whole story is in the hash-chained audit log, and the chain verifies
    wanted = {"plan.created", "policy.decided", "slack.posted", "approval.requested",
              "slack.signature_rejected", "vote.unauthorized", "vote.cast", "plan.approved",
              "action.requested", "action.snapshot", "action.executed", "action.verified",
              "action.result", "plan.completed", "action.duplicate", "plan.blocked",
              "action.blocked", "action.unverified", "ticket.created"}

    async def complete() -> set[str]:
        return wanted - {r["action"] for r in await audit_rows(dsn)}

    async def done() -> bool:
        return not await complete()

    try:
        await wait_for(done, timeout=60)
    except AssertionError:
        raise AssertionError(f"audit actions missing: {await complete()}") from None
    rows = await audit_rows(dsn)
    rejected = [r for r in rows if r["action"] == "slack.signature_rejected"]
    assert sorted(r["details"]["reason"].split(" ")[0] for r in rejected) == ["signature", "stale"]
    executed = next(r for r in rows if r["action"] == "action.executed")
    assert executed["details"]["approved_by"] == ["U0ONCALL"] and executed["idempotency_key"]
    out = verify_cli(dsn)
    assert out.returncode == 0 and out.stdout.startswith("ok "), out
    assert int(out.stdout.split()[1]) >= len(rows)
    health = w.status()["health"]["audit"]
    assert health["ok"] and health["written"] >= len(wanted)


def msg_ts(slack: SlackStandin) -> str:
    """ts of the first message posted (the approval request)."""
    return next(iter(slack.messages))


async def has(dsn: str, action: str, subject: str) -> bool:
    return any(r["action"] == action and r["subject"] == subject for r in await audit_rows(dsn))

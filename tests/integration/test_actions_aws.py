"""AWS actions (aiobotocore) against moto's server mode, in the worker on the real broker:

* an RDS failover is HIGH risk: it needs two SREs and a lead (API votes), one vote
  per person, and then really fails the moto cluster over;
* an EC2 reboot (MEDIUM, one approval) is executed, snapshot first;
* at most 3 actions per resource per hour: the 4th is refused (rate_limited).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from sre_agent.devstack import free_port
from sre_agent.schemas import (
    ActionPlan,
    ActionStep,
    Approval,
    EvidenceItem,
    Hypothesis,
    Incident,
    RcaResult,
    Target,
    utcnow,
)
from tests.actions_support import audit_rows, fresh_database, http, verify_cli
from tests.signing_support import authorised_action

pytestmark = pytest.mark.integration

CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing",
         "aws_secret_access_key": "testing"}


@pytest.fixture
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def seed(url: str) -> str:
    """An EC2 instance and a two-member Aurora cluster in moto; return the instance id."""
    ec2 = boto3.client("ec2", endpoint_url=url, **CREDS)
    rds = boto3.client("rds", endpoint_url=url, **CREDS)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                            InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    rds.create_db_cluster(DBClusterIdentifier="accounts-aurora", Engine="aurora-postgresql",
                          MasterUsername="admin_user", MasterUserPassword="password-123")
    for i in (1, 2):
        rds.create_db_instance(DBInstanceIdentifier=f"accounts-{i}", DBClusterIdentifier="accounts-aurora",
                               Engine="aurora-postgresql", DBInstanceClass="db.r5.large")
    return str(iid)


def writer(url: str) -> str:
    rds = boto3.client("rds", endpoint_url=url, **CREDS)
    members = rds.describe_db_clusters(DBClusterIdentifier="accounts-aurora")["DBClusters"][0]
    return next(m["DBInstanceIdentifier"] for m in members["DBClusterMembers"] if m["IsClusterWriter"])


def rca(iid: str, cause: str, service: str, ref: str) -> RcaResult:
    return RcaResult(incident_id=iid, severity="critical", services=[service, "api"], hypotheses=[
        Hypothesis(cause_type=cause, service=service, confidence=0.9, summary=cause,
                   evidence=[EvidenceItem(kind="metric", summary="status checks failing",
                                          weight=1.0, ref=ref)])])


async def vote(w: Any, plan_id: str, token: str) -> tuple[int, Any]:
    return await http("POST", f"{w.url}/api/approvals/{plan_id}/approve", b"",
                      {"Authorization": f"Bearer {token}"})


async def test_aws_actions_quorum_and_rate_limit(worker_factory, kafka_io, wait_for, pg_dsn,
                                                 moto_url: str) -> None:
    instance = seed(moto_url)
    assert writer(moto_url) == "accounts-1"
    dsn = await fresh_database(pg_dsn)
    w = worker_factory(extra_env={
        "SRE_AGENT_POSTGRES__DSN": dsn,
        "SRE_AGENT_AWS__ENABLED": "true",
        "SRE_AGENT_AWS__ENDPOINT_URL": moto_url,
        "SRE_AGENT_AWS__ACCESS_KEY_ID": "testing",
        "SRE_AGENT_AWS__SECRET_ACCESS_KEY": "testing",
        "SRE_AGENT_ACTIONS__DRY_RUN": "false",
        "SRE_AGENT_ACTIONS__APPROVERS": '{"sam": "sre", "sue": "sre", "lee": "lead"}',
        "SRE_AGENT_API__TOKENS": '{"t-sam": "approver:sam", "t-sue": "approver:sue", '
                                 '"t-lee": "approver:lee", "t-vic": "viewer:vic"}',
    }).start()
    try:
        await scenario(w, kafka_io, wait_for, dsn, moto_url, instance)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()


async def scenario(w: Any, kafka_io: Any, wait_for: Any, dsn: str, moto_url: str,
                   instance: str) -> None:
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    for iid, svc in (("inc-db", "accounts"), ("inc-ec2", "batch-runner")):
        await kafka_io.send(pfx + "incidents", Incident(
            incident_id=iid, title=f"{svc} down", services=[svc], fingerprint=iid, opened_at=utcnow()))
    await kafka_io.send(pfx + "rca-results", rca("inc-db", "db_primary_failure", "accounts",
                                                 "rds/accounts-aurora"))
    await kafka_io.send(pfx + "rca-results", rca("inc-ec2", "instance_unhealthy", "batch-runner",
                                                 f"ec2/{instance}"))
    plans = await kafka_io.read(pfx + "action-plans", until=lambda ms: len(ms) >= 2, timeout=60)
    by_inc = {p["incident_id"]: p for p in plans}
    db, ec2 = by_inc["inc-db"], by_inc["inc-ec2"]
    assert (db["risk_tier"], db["policy"]) == ("HIGH", "TWO_SRE_ONE_LEAD"), db
    assert (ec2["risk_tier"], ec2["policy"]) == ("MEDIUM", "ONE_APPROVAL"), ec2
    assert ec2["steps"][0]["target"]["uid"] == instance

    async def quorum() -> str:
        status, body = await http("GET", w.url + "/api/approvals/pending",
                                  headers={"Authorization": "Bearer t-vic"})
        items = {i["plan_id"]: i for i in (body or {}).get("items", [])} if status == 200 else {}
        return str(items.get(db["plan_id"], {}).get("quorum", ""))

    await wait_for(quorum, timeout=30)
    # two SREs, one of them twice: one person, one vote; no lead yet -> still pending
    for token in ("t-sam", "t-sam", "t-sue"):
        status, _ = await vote(w, db["plan_id"], token)
        assert status == 202

    async def two_of_three() -> bool:
        return await quorum() == "2/3 approvals, lead missing"

    await wait_for(two_of_three, timeout=30)
    assert writer(moto_url) == "accounts-1"
    status, body = await vote(w, db["plan_id"], "t-lee")
    assert status == 202 and body["role"] == "lead"
    await wait_for(lambda: writer(moto_url) == "accounts-2", timeout=60)

    status, _ = await vote(w, ec2["plan_id"], "t-sue")
    assert status == 202
    results = await kafka_io.read(pfx + "action-results", until=lambda ms: len(ms) >= 2, timeout=60)
    res = {r["incident_id"]: r for r in results}
    assert res["inc-db"]["status"] == "succeeded" and "writer now accounts-2" in res["inc-db"]["detail"]
    assert res["inc-ec2"]["status"] == "succeeded" and instance in res["inc-ec2"]["detail"]
    assert res["inc-ec2"]["snapshot"]["object"]["InstanceId"] == instance
    actions = await kafka_io.read(pfx + "sre-actions", until=lambda ms: len(ms) >= 2, timeout=10)
    db_action = next(a for a in actions if a["plan_id"] == db["plan_id"])
    assert sorted(db_action["approved_by"]) == ["lee", "sam", "sue"]

    # three more reboots of the same instance within the hour (each a signed, approved
    # plan of its own): two run, the 4th is refused
    for i in range(3):
        manual = ActionPlan(plan_id=f"manual-{i}", incident_id="inc-ec2", risk_score=0.5,
                            risk_tier="MEDIUM", policy="ONE_APPROVAL", steps=[ActionStep(
                                action="reboot_instance", risk=0.3,
                                target=Target(kind="ec2", name=instance, namespace="aws"))])
        sue = Approval(plan_id=manual.plan_id, decision="approve", user="sue", source="api")
        await kafka_io.send_signed(pfx + "sre-actions", authorised_action(
            manual, [sue], action_id=f"reboot-{i}", idempotency_key=f"reboot-key-{i}"))
    results = await kafka_io.read(pfx + "action-results", until=lambda ms: len(ms) >= 5, timeout=60)
    status_of = {r["action_id"]: r["status"] for r in results}
    assert [status_of[f"reboot-{i}"] for i in range(3)] == ["succeeded", "succeeded", "rate_limited"]

    async def chain_has_votes() -> bool:
        rows = await audit_rows(dsn)
        refused = [r for r in rows if r["action"] == "vote.refused" and r["subject"] == db["plan_id"]]
        return bool(refused) and any(r["action"] == "action.rate_limited" for r in rows)

    await wait_for(chain_has_votes, timeout=60)
    rows = await audit_rows(dsn)
    refused = next(r for r in rows if r["action"] == "vote.refused" and r["subject"] == db["plan_id"])
    assert refused["details"]["reason"] == "sam already voted"
    out = verify_cli(dsn)
    assert out.returncode == 0 and out.stdout.startswith("ok "), out

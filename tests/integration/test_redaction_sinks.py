"""Issue 15, finding 2: secrets are redacted at the source, before template mining and
before any topic, and no sink ever sees one.

Secrets of every kind (a password, an AWS access key id and secret key, a database
URL's password, a JWT, a PEM private key) arrive through error log lines (written
to ``logs`` by an outside shipper, with secret labels), an Alertmanager alert's
labels and annotations, and an ArgoCD deploy event. Template mining used to split
``user:pw@`` and drop ``=`` so the redaction no longer matched downstream. Checked:
every topic the agent writes (DLQs included), the API with a viewer token, the LLM
prompt, the tickets and the audit log in PostgreSQL, Slack, and the worker's log.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from sre_agent.schemas import LogRecord
from tests.actions_support import fresh_database, http
from tests.standins.anthropic_server import AnthropicStandin
from tests.standins.slack_server import SlackStandin

pytestmark = pytest.mark.integration

SECRETS = {
    "password": "Hunter2-Qz7w!",
    "aws_key": "AKIAQZ7WEXAMPLE7KEY9",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYQZ7WEXAMPL",
    "db_password": "Qz7wDbPassw0rd",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJxejd3In0.Qz7wSignatureValue",
    "pem": "MIIEQz7wPRIVATEKEYBODY0123456789abcdefghijk",
}
S = SECRETS
PEM = f"-----BEGIN PRIVATE KEY-----\n{S['pem']}\n-----END PRIVATE KEY-----"
LINES = [
    f"ERROR login failed for user admin password={S['password']} from job sync",
    f"ERROR cannot reach postgres://orders:{S['db_password']}@orders-db:5432/orders",
    f"ERROR s3 upload denied key {S['aws_key']} secret {S['aws_secret']}",
    f"ERROR upstream rejected token {S['jwt']}",
    f"ERROR tls setup loaded {PEM}",
]
TOKEN = "hook-Qz7w-token"


def leaks(text: str) -> list[str]:
    return sorted(k for k, v in SECRETS.items() if v in text)


async def read_all(bootstrap: str, topics: list[str]) -> dict[str, str]:
    cons = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                            auto_offset_reset="earliest")
    await cons.start()
    out: dict[str, list[bytes]] = {t: [] for t in topics}
    try:
        for _ in range(6):
            batches = await cons.getmany(timeout_ms=500)
            for tp, recs in batches.items():
                out[tp.topic].extend(r.value or b"" for r in recs)
    finally:
        await cons.stop()
    return {t: b"\n".join(v).decode("utf-8", "replace") for t, v in out.items()}


async def test_no_secret_reaches_any_sink(worker_factory, kafka_io, wait_for, pg_dsn) -> None:
    dsn = await fresh_database(pg_dsn)
    llm = await AnthropicStandin(tool_input={"hypotheses": [
        {"cause_type": "bad_deploy", "service": "orders", "confidence": 0.8,
         "summary": "bad config", "evidence": ["errors after deploy"],
         "recommended_actions": ["roll back"]}]}).start()
    slack = await SlackStandin().start()
    w = worker_factory(extra_env={
        "SRE_AGENT_POSTGRES__DSN": dsn,
        "SRE_AGENT_API__WEBHOOK_TOKEN": TOKEN,
        "SRE_AGENT_API__TOKENS": '{"tok-vic": "viewer:vic"}',
        "SRE_AGENT_ANTHROPIC__API_KEY": llm.api_key,
        "SRE_AGENT_ANTHROPIC__BASE_URL": llm.url,
        "SRE_AGENT_SLACK__BOT_TOKEN": slack.token,
        "SRE_AGENT_SLACK__BASE_URL": slack.base_url,
        "SRE_AGENT_LOG_PATTERNS__WARMUP_LINES": "0",
        "SRE_AGENT_LOG_PATTERNS__WARMUP_SECONDS": "0",
        "SRE_AGENT_LOG_PATTERNS__WINDOW_SECONDS": "2",
    })
    try:
        w.start()
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        hook = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        # an alert with secrets in labels and annotations
        alert = {"version": "4", "status": "firing", "alerts": [{
            "status": "firing", "labels": {"alertname": "OrdersErrors", "service": "orders",
                                           "severity": "critical",
                                           "dsn": f"postgres://orders:{S['db_password']}@db/x"},
            "annotations": {"summary": f"errors with password={S['password']}",
                            "description": f"key {S['aws_key']} secret {S['aws_secret']} {PEM}",
                            "runbook": f"curl -H 'Authorization: Bearer {S['jwt']}'"},
            "startsAt": "2025-11-13T12:00:00Z", "fingerprint": "fp-orders"}]}
        status, body = await http("POST", w.url + "/webhooks/alertmanager",
                                  orjson.dumps(alert), hook)
        assert status == 202, body
        deploy = {"app": "orders", "revision": "abc123", "images": ["orders:2.0"],
                  "author": "ci", "message": f"set DB_URL=postgres://orders:{S['db_password']}"
                                             f"@db/x and AWS_SECRET_ACCESS_KEY={S['aws_secret']}"}
        status, body = await http("POST", w.url + "/webhooks/argocd", orjson.dumps(deploy), hook)
        assert status == 202, body
        # error log lines from an outside shipper, straight onto the logs topic
        for i in range(40):
            line = LINES[i % len(LINES)]
            await kafka_io.send(pfx + "logs", LogRecord(
                service="orders", level="error", message=line,
                labels={"pod": "orders-1", "db_url": f"postgres://orders:{S['db_password']}@db"}))

        incidents = await kafka_io.read(pfx + "incidents", until=lambda ms: len(ms) >= 1,
                                        timeout=90)
        assert incidents, w.tail()
        await kafka_io.read(pfx + "anomalies", timeout=60, until=lambda ms: any(
            m.get("metric", "").startswith("log") or "log" in str(m.get("source", ""))
            for m in ms))
        await kafka_io.read(pfx + "rca-results", until=lambda ms: len(ms) >= 1, timeout=90)

        found: dict[str, list[str]] = {}
        topics = [pfx + t for t in ("alerts", "deploy-events", "anomalies", "predictions",
                                    "incidents", "rca-results", "action-plans", "approvals",
                                    "sre-actions", "action-results", "feedback", "audit")]
        topics += [t + ".dlq" for t in topics] + [pfx + "logs.dlq"]
        for topic, text in (await read_all(kafka_io.bootstrap, topics)).items():
            found[topic] = leaks(text)
        viewer = {"Authorization": "Bearer tok-vic"}
        for path in ("/api/incidents", "/api/anomalies", "/api/status"):
            status, body = await http("GET", w.url + path, headers=viewer)
            found[path] = leaks(orjson.dumps(body).decode())
        for inc in incidents:
            status, body = await http("GET", f"{w.url}/api/incidents/{inc['incident_id']}",
                                      headers=viewer)
            found[f"/api/incidents/{inc['incident_id']}"] = leaks(orjson.dumps(body).decode())
        found["llm_requests"] = leaks(orjson.dumps(llm.requests).decode())
        found["slack"] = leaks(orjson.dumps(slack.posted()).decode())
        con = await asyncpg.connect(dsn)
        try:
            for table in ("audit_log", "incident_tickets", "action_claims"):
                if await con.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                    rows = await con.fetch(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
                    found[table] = leaks(str([dict(r) for r in rows]))
        finally:
            await con.close()
        found["worker_log"] = leaks(w.tail(10**8))
        assert {k: v for k, v in found.items() if v} == {}, found
        assert found.get("incident_tickets") == [] and found.get("audit_log") == []
        assert "llm_requests" in found and llm.requests, "the RCA did not call the LLM"
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()
        await llm.stop()
        await slack.stop()

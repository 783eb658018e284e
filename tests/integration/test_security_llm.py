"""End to end: an incident full of secrets goes through a real worker's RCA stage,
which calls the Messages API stand-in with the real ``anthropic`` client.

Not one of the keys, passwords, tokens, IPs or e-mails may be in any request
body the stand-in received, nor in the worker's log; the RCA result and its
audit records carry the redacted text only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from sre_agent.schemas import Incident, SignalRef
from tests.standins.anthropic_server import AnthropicStandin

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(microsecond=0)

SECRETS = {
    "aws_key": "AKIAZ7QX3EXAMPLE9KEY",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
    "anthropic": "sk-ant-api03-Zq8xTESTKEYabcdefghijklmnop",
    "slack": "xoxb-2048-4096-Zq8xTESTtokenValue",
    "github": "ghp_Zq8xTESTtokenValue0123456789abcdef",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.Zq8xSignatureValue",
    "bearer": "Zq8xBearerValue0123456789",
    "password": "Hunter2-Zq8x!",
    "db_password": "Zq8xDbPassw0rd",
    "private_key": "MIIEZq8xPRIVATEKEYBODY0123456789abcdefghijkl",
    "ipv4": "10.42.17.201",
    "ipv6": "2001:db8:85a3:42:1000:8a2e:370:7334",
    "email": "jane.doe.zq8x@corp.example.com",
}
S = SECRETS
TEXT = (
    f"payment-api failed to connect to postgres://app:{S['db_password']}@{S['ipv4']}:5432/orders "
    f"as {S['email']} with password={S['password']}; retrying via [{S['ipv6']}]:5432. "
    f"AWS key {S['aws_key']} aws_secret_access_key={S['aws_secret']} "
    f"Authorization: Bearer {S['bearer']} token {S['jwt']} slack {S['slack']} "
    f"gh {S['github']} llm {S['anthropic']}\n"
    f"-----BEGIN RSA PRIVATE KEY-----\n{S['private_key']}\n-----END RSA PRIVATE KEY-----"
)


def incident() -> Incident:
    return Incident(
        incident_id="inc-secrets", title=f"payment-api errors from {S['ipv4']} ({S['email']})",
        fingerprint="fp-secrets", opened_at=T, time=T, services=["payment-api", "orders-db"],
        root_service="orders-db",
        signals=[
            SignalRef(kind="log", ref="l1", service="payment-api", time=T, metric="log_errors",
                      summary=TEXT, severity="critical",
                      attrs={"direction": "up", "template": TEXT[:200], "count": 40}),
            SignalRef(kind="k8s", ref="k1", service="orders-db", time=T, metric="BackOff",
                      summary=f"container args --password {S['password']} "
                              f"--token={S['bearer']}", attrs={"reason": "BackOff"}),
            SignalRef(kind="anomaly", ref="a1", service="orders-db", time=T,
                      metric="db_connections_active", summary=f"from {S['ipv4']}",
                      attrs={"direction": "up", "observed": 100.0, "expected": 20.0}),
        ],
        candidate_changes=[{"service": "payment-api", "change_type": "config",
                            "revision": f"DB_PASSWORD={S['db_password']}", "author": S["email"],
                            "time": T.isoformat(), "images": [f"{S['ipv4']}:5000/pay:1.2"]}])


async def test_no_secret_reaches_the_messages_api_or_the_log(worker_factory: Any, kafka_io: Any,
                                                             wait_for: Any) -> None:
    standin = await AnthropicStandin(tool_input={"hypotheses": [
        {"cause_type": "db_pool_exhaustion", "service": "orders-db", "confidence": 0.8,
         "summary": "pool exhausted", "evidence": ["connections at max"],
         "recommended_actions": ["raise pool size"]}]}).start()
    try:
        w = worker_factory(extra_env={"SRE_AGENT_ANTHROPIC__API_KEY": standin.api_key,
                                      "SRE_AGENT_ANTHROPIC__BASE_URL": standin.url,
                                      "SRE_AGENT_ANTHROPIC__TIMEOUT": "10"}).start()
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        await kafka_io.send(pfx + "incidents", incident())
        results = await kafka_io.read(pfx + "rca-results", timeout=90, until=lambda ms: any(
            m["incident_id"] == "inc-secrets" for m in ms))
        assert results and standin.requests, (results, w.tail())
        assert results[-1]["method"] == "rules+llm", results[-1]
        leaks = {
            # the request bodies the Messages API received
            "llm_request": orjson.dumps(standin.requests).decode(),
            "worker_log": w.tail(10**8),
            # what the agent publishes downstream from the RCA (Slack, tickets, knowledge base)
            "rca_results": orjson.dumps(results).decode(),
        }
        found = {where: sorted(k for k, v in SECRETS.items() if v in text)
                 for where, text in leaks.items()}
        # regression: "--password VALUE" once reached the prompt, and the published
        # rca-results carried secrets in evidence summaries (rca_agent now redacts them)
        assert found == {"llm_request": [], "worker_log": [], "rca_results": []}, found
    finally:
        await standin.stop()

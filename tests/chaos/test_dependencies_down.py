"""Slack, Anthropic and Kubernetes unreachable or hanging: nothing crashes, RCA falls
back to the rules, the plan waits for approval, the circuit breakers open (the next
RCA does not wait on the LLM) and ``/status`` says what is wrong.

Slack and the Messages API point at a server that accepts connections and never
answers (the slow case, bounded by the clients' timeouts); Kubernetes at a closed
port (the unreachable case). An incident and its RCA go through a real worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sre_agent.devstack import free_port
from sre_agent.schemas import EvidenceItem, Hypothesis, Incident, RcaResult, SignalRef, utcnow
from tests.actions_support import http

pytestmark = pytest.mark.integration

#: the worst a dependency may delay the pipeline (client timeout + margin)
BOUND = 25.0


class Blackhole:
    """Accepts TCP connections, reads, never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Blackhole:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def test_slow_and_unreachable_dependencies_degrade_without_crashing(
        worker_factory: Any, kafka_io: Any, wait_for: Any) -> None:
    async with Blackhole() as hole:
        w = worker_factory(extra_env={
            "SRE_AGENT_ANTHROPIC__API_KEY": "sk-ant-test-unused",
            "SRE_AGENT_ANTHROPIC__BASE_URL": f"http://127.0.0.1:{hole.port}",
            "SRE_AGENT_ANTHROPIC__TIMEOUT": "3",
            "SRE_AGENT_ANTHROPIC__MAX_RETRIES": "1",  # one retry with backoff, then rules
            "SRE_AGENT_ANTHROPIC__BREAKER_FAILURES": "1",  # open after the first failure
            "SRE_AGENT_SLACK__MAX_RETRIES": "1",
            "SRE_AGENT_SLACK__BREAKER_FAILURES": "1",
            "SRE_AGENT_SLACK__BOT_TOKEN": "xoxb-test-unused",
            "SRE_AGENT_SLACK__SIGNING_SECRET": "unused-secret",
            "SRE_AGENT_SLACK__BASE_URL": f"http://127.0.0.1:{hole.port}/api/",
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": f"http://127.0.0.1:{free_port()}",  # nothing listens
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__DEFAULT_NAMESPACE": "shop",
            "SRE_AGENT_API__TOKENS": '{"tok-v": "viewer:vic"}',
        })
        try:
            w.start()
            pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
            t0 = time.monotonic()
            now = utcnow()
            await kafka_io.send(pfx + "incidents", Incident(
                incident_id="inc-deps", title="checkout errors", severity="critical",
                services=["checkout"], fingerprint="fp-deps", opened_at=now, signals=[
                    SignalRef(kind="anomaly", ref="a1", service="checkout", time=now,
                              metric="http_error_ratio", attrs={"direction": "up"})]))
            # RCA falls back to the rules when the LLM hangs (3 s client timeout)
            rca = await kafka_io.read(pfx + "rca-results", timeout=BOUND + 30,
                                      until=lambda ms: any(m["incident_id"] == "inc-deps"
                                                           for m in ms))
            rca_s = time.monotonic() - t0
            assert rca and rca[-1]["method"] == "rules", rca
            # a plan from a bad-deploy diagnosis waits for approval although Slack hangs
            t1 = time.monotonic()
            await kafka_io.send(pfx + "rca-results", RcaResult(
                incident_id="inc-deps", severity="critical", services=["checkout"],
                hypotheses=[Hypothesis(cause_type="bad_deploy", service="checkout",
                                       confidence=0.85, summary="after deploy",
                                       evidence=[EvidenceItem(kind="deploy", summary="v2",
                                                              weight=0.9)])]))

            async def pending() -> Any:
                status, body = await http("GET", w.url + "/api/approvals/pending",
                                          headers={"Authorization": "Bearer tok-v"})
                return status == 200 and body["items"]

            items = await wait_for(pending, timeout=BOUND + 30)
            plan_s = time.monotonic() - t1
            assert items[0]["plan_id"]
            # the breaker is open now: the next incident's RCA does not wait on the LLM
            t2 = time.monotonic()
            await kafka_io.send(pfx + "incidents", Incident(
                incident_id="inc-deps-2", title="payments errors", severity="critical",
                services=["payments"], fingerprint="fp-deps-2", opened_at=utcnow()))
            rca2 = await kafka_io.read(pfx + "rca-results", timeout=BOUND,
                                       until=lambda ms: any(m["incident_id"] == "inc-deps-2"
                                                            for m in ms))
            open_s = time.monotonic() - t2
            assert rca2 and [m for m in rca2 if m["incident_id"] == "inc-deps-2"][-1][
                "method"] == "rules"
            audits = await kafka_io.read(pfx + "audit", timeout=30, until=lambda ms: any(
                m["action"] == "llm.fallback" and m["subject"] == "inc-deps-2" for m in ms))
            why = [m["details"]["error"] for m in audits
                   if m["action"] == "llm.fallback" and m["subject"] == "inc-deps-2"]
            assert why and why[0].startswith("circuit_open"), why
            st = w.status()
            assert st["health"]["anthropic"]["circuit"] == "open", st["health"]
            # the Slack post is bounded by its timeout and one retry, then the breaker opens
            await wait_for(lambda: w.status()["health"]["slack"]["circuit"] == "open",
                           timeout=BOUND)
            st = w.status()
            assert st["status"] == "degraded"
            assert w.proc is not None and w.proc.poll() is None, w.tail()
            print(f"\n[chaos] dependencies down: rules-only RCA after {rca_s:.1f} s, plan pending "
                  f"after {plan_s:.1f} s, next RCA with the breaker open after {open_s:.1f} s; "
                  f"health {sorted(st['health'])}; blackhole connections {hole.connections}")
            assert rca_s < BOUND and plan_s < BOUND, (rca_s, plan_s)
            assert open_s < 5.0, open_s
        except BaseException:
            print(w.tail(8000))
            raise
        finally:
            w.stop()

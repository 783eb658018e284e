"""The anthropic client against a local Messages API stand-in: structured output,
redaction, token budget, and a clean fallback on error, timeout and bad answers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import SecretStr

from sre_agent.config import AnthropicSettings
from sre_agent.processors.rca import RootCauseAnalyzer, merge_llm
from sre_agent.processors.topology import ServiceGraph
from sre_agent.schemas import Incident, SignalRef
from sre_agent.sinks.llm import LlmAnalyst
from tests.standins.anthropic_server import AnthropicStandin

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EDGES = [("web", "api"), ("api", "db")]


@pytest.fixture
async def standin():  # type: ignore[no-untyped-def]
    s = await AnthropicStandin().start()
    yield s
    await s.stop()


def analyst(standin: AnthropicStandin, timeout: float = 5.0, **kw: object) -> LlmAnalyst:
    return LlmAnalyst(AnthropicSettings(api_key=SecretStr(standin.api_key), base_url=standin.url,
                                        timeout=timeout, max_tokens_per_incident=8000,
                                        **kw))  # type: ignore[arg-type]


def incident() -> Incident:
    return Incident(
        incident_id="inc-1", title="api: error_rate up", fingerprint="f", opened_at=T,
        services=["api", "db"], root_service="db",
        signals=[SignalRef(kind="log", ref="l1", service="api", time=T, metric="log_errors",
                           summary="connect to 10.2.3.4:5432 failed for svc@corp.example.com "
                                   "password=hunter2 token AKIAIOSFODNN7EXAMPLE",
                           attrs={"direction": "up", "template": "connect to <*> failed"}),
                 SignalRef(kind="anomaly", ref="a1", service="db", time=T,
                           metric="db_connections_active", attrs={"direction": "up",
                                                                  "score": 0.97})],
        candidate_changes=[{"service": "api", "change_type": "deploy", "revision": "v9",
                            "author": "ops@corp.example.com", "time": T.isoformat(),
                            "event_id": "d"}])


def rules(inc: Incident):  # type: ignore[no-untyped-def]
    return RootCauseAnalyzer(ServiceGraph(EDGES)).analyze(inc)


ANSWER = {"hypotheses": [
    {"cause_type": "db_pool_exhaustion", "service": "db", "confidence": 0.9,
     "summary": "db connections at max, api cannot connect",
     "evidence": ["db_connections_active up", "api connect failures"],
     "recommended_actions": ["Kill idle-in-transaction sessions on db"]},
    {"cause_type": "bad_deploy", "service": "api", "confidence": 0.3, "summary": "v9 deploy"},
]}


async def test_structured_answer_is_parsed_and_tokens_counted(standin) -> None:
    standin.tool_input = ANSWER
    inc = incident()
    out = await analyst(standin).analyze(inc, rules(inc), EDGES, budget_left=8000)
    assert out.error is None, out.error
    assert [(h.cause_type, h.service) for h in out.hypotheses] == [
        ("db_pool_exhaustion", "db"), ("bad_deploy", "api")]
    assert out.tokens > 0
    req = standin.requests[-1]
    assert req["tool_choice"] == {"type": "tool", "name": "report_root_causes"}
    assert req["tools"][0]["input_schema"]["properties"]["hypotheses"]["items"]["properties"][
        "cause_type"]["enum"][0] == "bad_deploy"
    assert req["max_tokens"] <= 1024
    merged = merge_llm(rules(inc), out.hypotheses, out.tokens, inc.services)
    assert merged.method == "rules+llm" and merged.llm_tokens == out.tokens
    assert merged.hypotheses[0].cause_type == "db_pool_exhaustion"


async def test_secrets_ips_tokens_emails_are_redacted_before_sending(standin) -> None:
    standin.tool_input = ANSWER
    inc = incident()
    await analyst(standin).analyze(inc, rules(inc), EDGES, budget_left=8000)
    sent = orjson.dumps(standin.requests[-1]).decode()
    for secret in ("10.2.3.4", "svc@corp.example.com", "hunter2", "AKIAIOSFODNN7EXAMPLE",
                   "ops@corp.example.com"):
        assert secret not in sent
    assert "<redacted:ip>" in sent and "<redacted:email>" in sent
    assert "db_connections_active" in sent  # evidence itself still goes


@pytest.mark.parametrize("mode", ["error", "overloaded", "garbage"])
async def test_errors_fall_back_cleanly(standin, mode: str) -> None:
    standin.mode = mode
    standin.tool_input = ANSWER
    inc = incident()
    out = await analyst(standin, max_retries=2).analyze(inc, rules(inc), EDGES, budget_left=8000)
    assert out.hypotheses == [] and out.error
    # 500 and 529 are retried with backoff (the SDK's policy); an invalid answer is not
    assert len(standin.requests) == (1 if mode == "garbage" else 3), mode


async def test_the_breaker_opens_after_consecutive_failures(standin) -> None:
    standin.mode = "error"
    llm = analyst(standin, max_retries=0, breaker_failures=2, breaker_reset_seconds=60)
    inc = incident()
    for _ in range(2):
        out = await llm.analyze(inc, rules(inc), EDGES, budget_left=8000)
        assert out.error and not out.error.startswith("circuit_open")
    t0 = time.monotonic()
    out = await llm.analyze(inc, rules(inc), EDGES, budget_left=8000)
    assert out.error and out.error.startswith("circuit_open"), out.error
    assert time.monotonic() - t0 < 0.1 and len(standin.requests) == 2  # no call made
    llm.guard.breaker.reset()  # as after the reset period: a good answer closes it
    standin.mode, standin.tool_input = "ok", ANSWER
    out = await llm.analyze(inc, rules(inc), EDGES, budget_left=8000)
    assert out.hypotheses and out.error is None


async def test_timeout_falls_back_within_the_timeout(standin) -> None:
    standin.mode, standin.delay = "slow", 10.0
    inc = incident()
    t0 = time.monotonic()
    out = await analyst(standin, timeout=0.5, max_retries=1).analyze(
        inc, rules(inc), EDGES, budget_left=8000)
    assert time.monotonic() - t0 < 0.5 * 2 + 8.0 + 1.0  # two attempts and the backoff
    assert out.hypotheses == [] and out.error and "timeout" in out.error.lower()


async def test_budget_exhausted_sends_nothing(standin) -> None:
    inc = incident()
    out = await analyst(standin).analyze(inc, rules(inc), EDGES, budget_left=300)
    assert out.error and "budget" in out.error and standin.requests == []


async def test_wrong_api_key_is_an_error_not_a_crash(standin) -> None:
    bad = LlmAnalyst(AnthropicSettings(api_key=SecretStr("nope"), base_url=standin.url))
    inc = incident()
    out = await bad.analyze(inc, rules(inc), EDGES, budget_left=8000)
    assert out.error and "Authentication" in out.error


async def test_disabled_without_key() -> None:
    a = LlmAnalyst(AnthropicSettings())
    assert not a.enabled
    inc = incident()
    out = await a.analyze(inc, rules(inc), EDGES, budget_left=8000)
    assert out.error and out.error.startswith("disabled")

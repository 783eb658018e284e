"""Claude as a second opinion on RCA, through the anthropic SDK — never a single point of failure.

:class:`LlmAnalyst` sends the incident's evidence and the rule hypotheses
(everything passed through :func:`~sre_agent.processors.redact.redact_obj`
first: no secrets, tokens, keys, e-mails or IP addresses leave) and asks for a
structured answer through a forced tool call whose input schema constrains
``cause_type`` to the RCA vocabulary. A client timeout, retries with backoff, a circuit breaker and a
per-incident token budget bound the cost; any error (HTTP, timeout, budget,
schema) returns an :class:`LlmOutcome` with ``error`` set and no hypotheses,
and the caller keeps the rules' result.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, Field, ValidationError

from ..config import AnthropicSettings
from ..processors.rca import CAUSE_TYPES
from ..processors.redact import redact_obj
from ..schemas import EvidenceItem, Hypothesis, Incident, RcaResult
from .breakers import CircuitBreakerError, Guard

if TYPE_CHECKING:  # the SDK is imported when a client is built: importing it costs
    # seconds of CPU at every worker start, and most deployments run without a key
    from anthropic import AsyncAnthropic

__all__ = ["TOOL", "LlmAnalyst", "LlmOutcome", "build_prompt"]

log = logging.getLogger(__name__)

#: answers never need more than this many output tokens
MAX_OUTPUT_TOKENS = 1024
MIN_OUTPUT_TOKENS = 256

SYSTEM = (
    "You are an SRE assistant doing root-cause analysis for a 24/7 trading platform on "
    "Kubernetes. You get an incident's signals, recent changes, the service dependency edges, "
    "rule-based hypotheses and similar past cases. Rank the most likely root causes. Use only "
    "services that appear in the input and only the listed cause types. Cite the evidence you "
    "rely on. Recommend safe, reversible first actions; never recommend actions on wallets, "
    "balances, orders or the matching engine core without a human. Answer only by calling the "
    "tool report_root_causes."
)

TOOL: dict[str, Any] = {
    "name": "report_root_causes",
    "description": "Report ranked root-cause hypotheses for the incident.",
    "input_schema": {
        "type": "object",
        "properties": {
            "hypotheses": {
                "type": "array", "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {
                        "cause_type": {"type": "string", "enum": list(CAUSE_TYPES)},
                        "service": {"type": "string"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "summary": {"type": "string"},
                        "evidence": {"type": "array", "items": {"type": "string"}},
                        "recommended_actions": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["cause_type", "service", "confidence", "summary"],
                },
            },
        },
        "required": ["hypotheses"],
    },
}


class _LlmHypothesis(BaseModel):
    cause_type: str
    service: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)
    summary: str = Field(max_length=2000)
    evidence: list[str] = Field(default_factory=list, max_length=10)
    recommended_actions: list[str] = Field(default_factory=list, max_length=10)


class _LlmAnswer(BaseModel):
    hypotheses: list[_LlmHypothesis] = Field(max_length=5)


@dataclass
class LlmOutcome:
    hypotheses: list[Hypothesis] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None


def build_prompt(incident: Incident, rules: RcaResult, edges: list[tuple[str, str]]) -> str:
    """The redacted JSON evidence document sent as the user message."""
    involved = set(incident.services)
    doc = {
        "incident": {"title": incident.title, "severity": incident.severity,
                     "services": incident.services, "root_service": incident.root_service,
                     "opened_at": incident.opened_at.isoformat(),
                     "signal_count": incident.signal_count},
        "signals": [{"kind": s.kind, "service": s.service, "metric": s.metric,
                     "summary": s.summary, "time": s.time.isoformat(),
                     "details": {k: v for k, v in s.attrs.items()
                                 if k in ("direction", "observed", "expected", "template",
                                          "reason", "count", "flapping")}}
                    for s in incident.signals[:40]],
        "recent_changes": [{k: c.get(k) for k in ("service", "change_type", "revision",
                                                  "previous_revision", "author", "time",
                                                  "seconds_before", "images")}
                           for c in incident.candidate_changes[:10]],
        "dependencies": [[a, b] for a, b in edges if a in involved or b in involved][:60],
        "rule_hypotheses": [{"cause_type": h.cause_type, "service": h.service,
                             "confidence": round(h.confidence, 3),
                             "evidence": [e.summary for e in h.evidence[:5]]}
                            for h in rules.hypotheses],
        "similar_cases": [{"title": c.title, "kind": c.kind, "cause_type": c.cause_type,
                           "similarity": c.similarity, "resolution": c.resolution}
                          for c in rules.similar[:5]],
    }
    return orjson.dumps(redact_obj(doc)).decode()


class LlmAnalyst:
    """Structured RCA opinions from Claude; ``enabled`` only with an API key.

    Parameters
    ----------
    settings
        The ``anthropic`` section (key, base_url, model, timeout, per-incident budget).
    client
        An injected client (the lifecycle owner's); built from settings otherwise.
    """

    def __init__(self, settings: AnthropicSettings, client: AsyncAnthropic | None = None) -> None:
        self.settings = settings
        self._client = client
        self.guard = Guard("anthropic", settings.breaker_failures, settings.breaker_reset_seconds)

    @property
    def enabled(self) -> bool:
        return self._client is not None or self.settings.api_key is not None

    def client(self) -> AsyncAnthropic:
        if self._client is None:
            from anthropic import AsyncAnthropic

            key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
            self._client = AsyncAnthropic(api_key=key, base_url=self.settings.base_url,
                                          timeout=self.settings.timeout,
                                          max_retries=self.settings.max_retries)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def analyze(self, incident: Incident, rules: RcaResult, edges: list[tuple[str, str]],
                      budget_left: int) -> LlmOutcome:
        """Ask for ranked hypotheses within ``budget_left`` tokens; never raises."""
        if not self.enabled:
            return LlmOutcome(error="disabled: no anthropic api key")
        prompt = build_prompt(incident, rules, edges)
        est_in = (len(prompt) + len(SYSTEM) + len(orjson.dumps(TOOL))) // 3
        max_out = min(MAX_OUTPUT_TOKENS, budget_left - est_in)
        if max_out < MIN_OUTPUT_TOKENS:
            return LlmOutcome(error=f"token budget exhausted ({budget_left} left, "
                                    f"~{est_in} needed for the prompt)")
        retries = self.settings.max_retries
        # every attempt's timeout plus the SDK's backoff between attempts (<= 8 s each)
        bound = self.settings.timeout * (retries + 1) + 8.0 * retries + 1.0

        async def call() -> Any:
            return await asyncio.wait_for(self.client().messages.create(
                model=self.settings.model, max_tokens=max_out, system=SYSTEM,
                messages=[{"role": "user", "content": prompt}], tools=[TOOL],
                tool_choice={"type": "tool", "name": TOOL["name"]}), timeout=bound)

        try:
            msg = await self.guard(call)
        except CircuitBreakerError as exc:  # failing lately: straight to the rules
            return LlmOutcome(error=f"circuit_open: {str(exc)[:300]}")
        except Exception as exc:  # any failure falls back to the rules
            kind = "timeout" if isinstance(exc, asyncio.TimeoutError) or "Timeout" in type(
                exc).__name__ else type(exc).__name__
            log.warning("LLM RCA failed for %s (%s): %s", incident.incident_id, kind,
                        str(exc)[:300], extra={"incident_id": incident.incident_id})
            return LlmOutcome(error=f"{kind}: {str(exc)[:300]}")
        usage = getattr(msg, "usage", None)
        tokens = int(getattr(usage, "input_tokens", 0) or 0) + int(
            getattr(usage, "output_tokens", 0) or 0)
        block = next((b for b in msg.content if getattr(b, "type", "") == "tool_use"
                      and getattr(b, "name", "") == TOOL["name"]), None)
        if block is None:
            return LlmOutcome(tokens=tokens, error="no tool_use block in the answer")
        try:
            answer = _LlmAnswer.model_validate(block.input)
        except ValidationError as exc:
            return LlmOutcome(tokens=tokens, error=f"invalid structured answer: "
                                                   f"{exc.errors(include_url=False)[:2]}")
        hyps = [Hypothesis(cause_type=h.cause_type, service=h.service, confidence=h.confidence,
                           summary=h.summary,
                           evidence=[EvidenceItem(kind="llm", summary=e[:500]) for e in h.evidence],
                           recommended_actions=h.recommended_actions)
                for h in answer.hypotheses]
        return LlmOutcome(hypotheses=hyps, tokens=tokens)

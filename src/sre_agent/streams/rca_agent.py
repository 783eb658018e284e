"""incidents -> rca-results: rules first, similar cases from the knowledge base, then Claude.

For each new or changed (``open``/``updated``) incident: search the knowledge
base (``ctx.state["knowledge"]``) for similar incidents, patterns and runbooks,
rank hypotheses with :class:`~sre_agent.processors.rca.RootCauseAnalyzer`, and —
when an Anthropic API key is configured and the incident's token budget
(``rca_budget`` table, tokens used per incident) allows — merge Claude's
structured opinion. Any failure of the knowledge base or the LLM leaves the
rules' result, which is always published. Every step is audited.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..processors.rca import RootCauseAnalyzer, incident_text, merge_llm
from ..processors.redact import redact_obj
from ..processors.topology import ServiceGraph
from ..schemas import AuditRecord, Incident, RcaResult, SimilarCase
from ..sinks.breakers import breaker_health
from ..sinks.llm import LlmAnalyst
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)

KB_TIMEOUT = 5.0


def register(ctx: StreamContext) -> None:
    graph = ServiceGraph(ctx.settings.correlation.edges)
    analyzer = RootCauseAnalyzer(graph)
    llm = LlmAnalyst(ctx.settings.anthropic)
    if llm.enabled:
        ctx.stats.health["anthropic"] = breaker_health(llm.guard)
    budget_total = ctx.settings.anthropic.max_tokens_per_incident
    budget = ctx.tables.declare("rca_budget", help="LLM tokens spent per incident")
    ctx.state["rca_analyzer"] = analyzer
    ctx.state["llm"] = llm

    async def similar_to(inc: Incident) -> list[SimilarCase]:
        kb = ctx.state.get("knowledge")
        if kb is None:
            return []
        try:
            found: list[SimilarCase] = await asyncio.wait_for(kb.search(incident_text(inc), 5),
                                                              KB_TIMEOUT)
            ctx.stats.health["knowledge"] = {"ok": True}
            return found
        except Exception as exc:
            ctx.stats.health["knowledge"] = {"ok": False, "error": str(exc)[:300]}
            log.warning("knowledge search failed for %s: %s", inc.incident_id, exc)
            return []

    @ctx.app.agent(ctx.topics["incidents"], name="rca")
    async def rca(stream: Any) -> None:
        async for event in stream.events():
            inc = await ctx.decode(Incident, event, stage="rca")
            if inc is None or inc.status == "resolved":
                continue
            result = analyzer.analyze(inc, await similar_to(inc))
            if llm.enabled:
                used = int(budget.get(inc.incident_id) or b"0")
                outcome = await llm.analyze(inc, result, graph.edges, budget_total - used)
                ctx.stats.health["anthropic"] = breaker_health(llm.guard)
                if outcome.tokens:
                    budget[inc.incident_id] = str(used + outcome.tokens).encode()
                if outcome.hypotheses:
                    result = merge_llm(result, outcome.hypotheses, outcome.tokens,
                                       set(inc.services) | set(graph.services))
                await ctx.send(AuditRecord(
                    actor="rca", action="llm.called" if outcome.error is None else "llm.fallback",
                    subject=inc.incident_id,
                    details={"tokens": outcome.tokens, "tokens_total": used + outcome.tokens,
                             "error": outcome.error, "model": ctx.settings.anthropic.model}))
            # what leaves the RCA (Slack, tickets, knowledge base) carries no secrets either
            result = RcaResult.model_validate(redact_obj(result.model_dump(mode="json")))
            await ctx.send(result)
            top = result.hypotheses[0] if result.hypotheses else None
            await ctx.send(AuditRecord(
                actor="rca", action="rca.completed", subject=inc.incident_id,
                details={"revision": inc.revision, "method": result.method,
                         "top": {"cause_type": top.cause_type, "service": top.service,
                                 "confidence": round(top.confidence, 3)} if top else None,
                         "similar": [c.id for c in result.similar]}))
            log.info("rca %s r%d: %s", inc.incident_id, inc.revision,
                     f"{top.cause_type} on {top.service} ({top.confidence:.2f})" if top else "-",
                     extra={"incident_id": inc.incident_id})

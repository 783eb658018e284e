"""The closed loop: feedback -> knowledge base (patterns, past incidents) -> better RCA.

Uses the :class:`~sre_agent.sinks.knowledge.KnowledgeBase` that
``ctx.services.knowledge`` (other stages call its async ``search(text, limit)``)
and warms it up at start. One agent reads ``incidents``, ``rca-results`` and
``feedback`` — all keyed by incident id, so co-partitioned — remembering in
the ``kb_cases`` table what each incident looked like and which cause the RCA
ranked first; a ``feedback`` event is resolved against that
(:func:`~sre_agent.processors.rca_feedback.learn`) and applied: the incident
is stored with its confirmed (or rejected) cause and the cause's pattern gets
its occurrence count, confidence and success rate updated.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..processors.rca import incident_text
from ..processors.rca_feedback import learn
from ..schemas import AuditRecord, Feedback, Incident, RcaResult
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    s = ctx.settings
    if not s.knowledge.enabled:
        return
    kb = ctx.services.knowledge
    if kb is None:  # pragma: no cover - Services builds it whenever knowledge is enabled
        return
    cases = ctx.tables.declare("kb_cases", help="incident text and shown top cause, per incident")
    names = {s.topic(t): t for t in ("incidents", "rca-results", "feedback")}
    source = ctx.app.topic(*names, key_serializer="raw", value_serializer="raw")

    @ctx.app.task
    async def knowledge_setup() -> None:
        try:
            await kb.setup()
            ctx.stats.health["knowledge"] = {"ok": True}
        except Exception as exc:  # RCA keeps working without similar cases
            ctx.stats.health["knowledge"] = {"ok": False, "error": str(exc)[:300]}
            log.exception("knowledge base setup failed")

    async def on_feedback(fb: Feedback) -> None:
        raw = cases.get(fb.incident_id)
        case = orjson.loads(raw) if raw else {}
        lesson = learn(fb, case.get("top"))
        title = case.get("title") or fb.comment or fb.incident_id
        text = case.get("text") or " ".join(filter(None, [fb.comment, fb.confirmed_cause]))
        try:
            pattern = await kb.learn(lesson, fb.incident_id, title, text, when=fb.time.isoformat())
        except Exception as exc:
            ctx.stats.health["knowledge"] = {"ok": False, "error": str(exc)[:300]}
            log.exception("knowledge update failed for %s", fb.incident_id)
            pattern = None
            error: str | None = str(exc)[:300]
        else:
            error = None
        meta = (pattern or {}).get("metadata", {})
        await ctx.send(AuditRecord(
            actor=f"feedback:{fb.user}", action="knowledge.updated" if error is None
            else "knowledge.failed", subject=fb.incident_id,
            details={"kind": fb.kind, "rating": fb.rating, "cause_type": lesson.cause_type,
                     "service": lesson.service, "confirmed": lesson.confirmed,
                     "action_succeeded": lesson.action_succeeded, "error": error,
                     "pattern": (pattern or {}).get("pattern_id"),
                     "confidence": meta.get("confidence"),
                     "success_rate": meta.get("success_rate"),
                     "occurrence_count": meta.get("occurrence_count")}))

    @ctx.app.agent(source, name="knowledge")
    async def knowledge(stream: Any) -> None:
        async for event in stream.events():
            topic = names.get(event.message.topic)
            if topic == "incidents":
                inc = await ctx.decode(Incident, event, stage="knowledge")
                if inc is not None:
                    raw = cases.get(inc.incident_id)
                    case = orjson.loads(raw) if raw else {}
                    case.update(title=inc.title, text=incident_text(inc), services=inc.services)
                    cases[inc.incident_id] = orjson.dumps(case)
            elif topic == "rca-results":
                res = await ctx.decode(RcaResult, event, stage="knowledge")
                if res is not None and res.hypotheses:
                    raw = cases.get(res.incident_id)
                    case = orjson.loads(raw) if raw else {}
                    h = res.hypotheses[0]
                    case["top"] = {"cause_type": h.cause_type, "service": h.service,
                                   "confidence": h.confidence}
                    cases[res.incident_id] = orjson.dumps(case)
            elif topic == "feedback":
                fb = await ctx.decode(Feedback, event, stage="knowledge")
                if fb is not None:
                    await on_feedback(fb)

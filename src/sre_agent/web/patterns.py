"""Seed 003's remaining pattern API: ``POST /api/patterns/detect`` and ``/learn``.

* ``detect`` (viewer): with a ``series`` (points) it runs the stream's calibrated
  detector over it (:mod:`sre_agent.processors.pattern_detect`); without, it takes
  what the detectors see now (open anomalies, optionally of one ``service``).
  Either way each anomaly is matched against the knowledge base (patterns, past
  incidents, runbooks). ``/sre detect [service]`` answers the same in Slack.
* ``learn`` (operator): a person teaches a pattern (title, symptoms, root
  causes, solutions, cause type); it is upserted into the knowledge base and
  audited. Feedback then tunes its confidence like the seeded ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from faust.web import Request, Response, View

from ..processors.pattern_detect import describe, detect_points
from ..readmodel.views import DetectRequest, LearnRequest
from ..streams.audit_agent import emit_audit
from .auth import Principal
from .http import Api, BadRequest, json_body
from .views import pattern_search

__all__ = ["current_anomalies", "detect", "register_patterns"]

log = logging.getLogger(__name__)

#: the whole detect answer waits at most this long for the knowledge base
MATCH_TIMEOUT = 8.0


def current_anomalies(api: Api, service: str | None, limit: int) -> list[dict[str, Any]]:
    """What the detectors see now: open anomalies, strongest first."""
    items = api.model.anomalies(service=service or None, status="open")
    items.sort(key=lambda a: -a.score)
    return [{"metric": a.metric, "service": a.service, "series": a.series, "score": a.score,
             "observed": a.observed, "expected": a.expected, "direction": a.direction,
             "since": (a.started_at or a.time).isoformat(), "kind": a.kind,
             "text": describe(a.metric, a.service, a.direction)}
            for a in items[:limit]]


async def _matches(api: Api, texts: list[str], limit: int) -> list[list[dict[str, Any]]]:
    async def one(t: str) -> list[dict[str, Any]]:
        try:
            return await pattern_search(api, t, limit)
        except BadRequest:
            return []
    try:
        return await asyncio.wait_for(asyncio.gather(*(one(t) for t in texts)), MATCH_TIMEOUT)
    except TimeoutError:
        return [[] for _ in texts]


async def detect(api: Api, req: DetectRequest) -> dict[str, Any]:
    threshold = req.threshold or api.ctx.settings.anomaly_detection.threshold
    source = "series" if req.series else "live"
    if req.series is not None:
        s = req.series
        found = detect_points(sorted(s.points), threshold=threshold,
                              warmup=min(api.ctx.settings.anomaly_detection.warmup_samples,
                                         max(5, len(s.points) // 4)))
        anomalies = [{**f.as_dict(), "metric": s.metric, "service": s.service,
                      "text": describe(s.metric, s.service, f.direction)} for f in found[: req.limit * 5]]
    else:
        anomalies = current_anomalies(api, req.service, req.limit)
    texts = [a["text"] for a in anomalies[: req.limit]]
    if req.text:
        texts.append(req.text)
    kb = api.ctx.services.knowledge
    matched = await _matches(api, texts, 3) if kb is not None and texts else [[] for _ in texts]
    for a, m in zip(anomalies, matched, strict=False):
        a["patterns"] = m
    out: dict[str, Any] = {"source": source, "threshold": threshold, "anomalies": anomalies,
                           "knowledge_base": kb is not None}
    if req.text:
        out["text_matches"] = matched[-1] if matched else []
    return out


def register_patterns(api: Api) -> None:
    app = api.ctx.app

    @app.page("/api/patterns/detect")
    class Detect(View):
        @api.endpoint("patterns_detect", "viewer")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            req: DetectRequest = await json_body(request, DetectRequest)
            return self.json(await detect(api, req))

    @app.page("/api/patterns/learn")
    class Learn(View):
        @api.endpoint("patterns_learn", "operator")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            assert principal is not None
            req: LearnRequest = await json_body(request, LearnRequest)
            kb = api.ctx.services.knowledge
            if kb is None:
                raise BadRequest("knowledge base is not available on this agent", status=503)
            pid = req.pattern_id or "PAT-USER-" + hashlib.blake2b(
                req.title.lower().encode(), digest_size=5).hexdigest()
            doc = {**req.model_dump(mode="json"), "pattern_id": pid,
                   "learned_by": f"api:{principal.user}"}
            try:
                stored = await asyncio.wait_for(kb.add_pattern(doc), MATCH_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - the store is down: say so
                log.warning("learning pattern %s failed: %s", pid, exc)
                raise BadRequest(f"knowledge base unavailable: {type(exc).__name__}",
                                 status=503) from None
            await emit_audit(api.ctx, f"api:{principal.user}", "pattern.learned", pid,
                             {"title": req.title, "cause_type": req.cause_type,
                              "symptoms": len(req.symptoms), "solutions": len(req.solutions)})
            return self.json({"accepted": True, "pattern_id": pid,
                              "confidence": stored["metadata"].get("confidence")}, status=201)

"""REST endpoints of the read side: status, anomalies, incidents, predictions,
feedback, pattern search, audit and chart series. Documented in ``/openapi.json``.

Roles: reads need ``viewer``; feedback needs ``operator``; the audit trail
needs ``operator``. Approvals are served by :mod:`.approvals`, baselines
by the cognition stage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.web import Request, Response, View
from pydantic import BaseModel

from ..readmodel import paginate
from ..readmodel.query import choice_param, float_param, page_params, str_param
from ..readmodel.views import FeedbackRequest, SeriesSummary
from ..schemas import AuditRecord, Feedback
from .http import Api, BadRequest, json_body
from .auth import Principal
from .status import status_payload

__all__ = ["pattern_search", "register_views", "status_summary", "submit_feedback"]

log = logging.getLogger(__name__)

MAX_HOURS = 24.0 * 30
SEARCH_TIMEOUT = 10.0


def _dump(items: list[Any]) -> list[Any]:
    return [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in items]


def _page(items: list[Any], q: Any, default_limit: int = 50) -> dict[str, Any]:
    limit, offset = page_params(q, default_limit)
    page = paginate(items, limit, offset)
    page["items"] = _dump(page["items"])
    return page


def _since(q: Any, default_hours: float | None) -> datetime | None:
    hours = float_param(q, "hours", default_hours, 0.0, MAX_HOURS)
    return None if hours is None else datetime.now(UTC) - timedelta(hours=hours)


def status_summary(api: Api) -> dict[str, Any]:
    agent = status_payload(api.ctx)
    s = api.ctx.settings
    return {
        "status": agent["status"],
        # what the console shows in its header and links to (never a secret)
        "dry_run": s.actions.dry_run,
        "auto_remediation": s.actions.auto_remediation,
        "metrics_url": s.api.metrics_url,
        "runbook_url": s.api.runbook_url,
        "silences_active": len(api.model.silences.listing(datetime.now(UTC))),
        **api.model.summary(),
        "readmodel": {
            **api.projection.health(),
            "events": dict(api.model.events),
            "rejected": dict(api.model.rejected),
        },
        "agent": agent,
    }


async def submit_feedback(api: Api, fb: Feedback, actor: str, via: str) -> None:
    """Produce ``fb`` to ``feedback`` and audit it."""
    await api.ctx.send(fb)
    await api.ctx.send(
        AuditRecord(
            actor=actor,
            action="feedback.submitted",
            subject=fb.incident_id,
            details={"via": via, "kind": fb.kind, "rating": fb.rating, "feedback_id": fb.event_id},
        )
    )
    log.info(
        "feedback %s on %s by %s",
        fb.rating or fb.kind,
        fb.incident_id,
        fb.user,
        extra={"incident_id": fb.incident_id, "via": via},
    )


async def pattern_search(api: Api, text: str, limit: int) -> list[dict[str, Any]]:
    """Search the knowledge base; :class:`BadRequest` 503 when it is not available."""
    kb = api.ctx.services.knowledge
    if kb is None:
        raise BadRequest(
            "knowledge base is not available on this agent (not configured or still starting)",
            status=503,
        )
    try:
        found = await asyncio.wait_for(kb.search(text, limit), SEARCH_TIMEOUT)
    except TimeoutError:
        raise BadRequest(
            f"knowledge base search timed out after {SEARCH_TIMEOUT:.0f}s", status=503
        ) from None
    except Exception as exc:
        log.warning("knowledge base search failed: %s", exc)
        raise BadRequest(
            f"knowledge base search failed: {type(exc).__name__}", status=503
        ) from None
    return _dump(list(found)[:limit])


def register_views(api: Api) -> None:
    app = api.ctx.app
    rm = api.model

    @app.page("/api/status")
    class StatusView(View):
        @api.endpoint("status", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            return self.json(status_summary(api))

    @app.page("/api/whoami")
    class WhoamiView(View):
        @api.endpoint("whoami", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            assert principal is not None
            return self.json({"user": principal.user, "role": principal.role})

    @app.page("/api/anomalies")
    class AnomaliesView(View):
        """Anomalies that started in the last ``hours`` (default 24)."""

        @api.endpoint("anomalies", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            q = request.query
            items = rm.anomalies(
                since=_since(q, 24.0),
                service=str_param(q, "service"),
                status=choice_param(q, "status", ("open", "resolved")),
            )
            return self.json(_page(items, q))

    @app.page("/api/predictions")
    class PredictionsView(View):
        @api.endpoint("predictions", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            q = request.query
            items = rm.predictions(since=_since(q, None), service=str_param(q, "service"))
            return self.json(_page(items, q))

    @app.page("/api/incidents")
    class IncidentsView(View):
        @api.endpoint("incidents", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            q = request.query
            status = choice_param(q, "status", ("open", "resolved", "all"), "all")
            since = float_param(q, "since", None, 0.0, 4e9)
            until = float_param(q, "until", None, 0.0, 4e9)
            hours = _since(q, None)
            start = datetime.fromtimestamp(since, UTC) if since is not None else hours
            items = rm.incidents(
                status=None if status == "all" else status,
                service=str_param(q, "service"),
                severity=choice_param(q, "severity", ("info", "warning", "critical")),
                text=str_param(q, "q", 200),
                since=start,
                until=datetime.fromtimestamp(until, UTC) if until is not None else None,
            )
            return self.json(_page(items, q))

    @app.page("/api/incidents/{incident_id}")
    class IncidentView(View):
        @api.endpoint("incident", "viewer")
        async def get(
            self, request: Request, principal: Principal | None, incident_id: str = ""
        ) -> Response:
            found = rm.find_incident(incident_id)
            detail = rm.incident(found) if found else None
            if detail is None:
                return self.json(
                    {
                        "error": f"incident {incident_id!r} not found "
                        f"(or older than the read model keeps)"
                    },
                    status=404,
                )
            return self.json(detail.model_dump(mode="json"))

    @app.page("/api/feedback")
    class FeedbackView(View):
        @api.endpoint("feedback", "operator")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            assert principal is not None
            body: FeedbackRequest = await json_body(request, FeedbackRequest)
            if body.kind == "rca" and body.rating is None:
                raise BadRequest("rating (good|bad) is required for kind=rca feedback")
            fb = Feedback(user=principal.user, **body.model_dump())
            await submit_feedback(api, fb, actor=f"api:{principal.user}", via="api")
            return self.json(
                {"accepted": True, "event_id": fb.event_id, "incident_id": fb.incident_id},
                status=202,
            )

    @app.page("/api/patterns/search")
    class PatternSearchView(View):
        @api.endpoint("patterns", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            q = request.query
            text = str_param(q, "q", 500)
            if not text:
                raise BadRequest("q (the text to search for) is required")
            limit, _ = page_params(q, 5)
            items = await pattern_search(api, text, min(limit, 50))
            return self.json({"query": text, "items": items})

    @app.page("/api/audit")
    class AuditView(View):
        @api.endpoint("audit", "operator")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            q = request.query
            items = rm.audit(
                subject=str_param(q, "subject"),
                actor=str_param(q, "actor"),
                action=str_param(q, "action"),
            )
            return self.json(_page(items, q))

    @app.page("/api/series")
    class SeriesListView(View):
        """Series tracked for charts (those with anomalies), most recent first."""

        @api.endpoint("series", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            svc = str_param(request.query, "service")
            items = [
                SeriesSummary(
                    series=sid,
                    metric=b.metric,
                    service=b.service,
                    points=len(b.points),
                    open=b.open,
                    last_anomaly=datetime.fromtimestamp(b.last_anomaly, UTC)
                    if b.last_anomaly is not None
                    else None,
                )
                for sid, b in reversed(rm.series.items())
                if svc is None or b.service == svc
            ]
            return self.json({"items": _dump(items)})

    @app.page("/api/series/points")
    class SeriesPointsView(View):
        @api.endpoint("series_points", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            sid = str_param(request.query, "series", 2048)
            if not sid:
                raise BadRequest("series (a series id from /api/series) is required")
            buf = rm.series.get(sid)
            if buf is None:
                return self.json(
                    {"error": f"series {sid!r} is not tracked (only series with anomalies are)"},
                    status=404,
                )
            since = float_param(request.query, "since", None, 0.0, time.time() + 86400)
            pts = [p for p in buf.points if since is None or p[0] >= since]
            return self.json({"series": sid, "points": pts, "anomalies": list(buf.marks)})

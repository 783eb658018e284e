"""Inbound webhooks: ArgoCD / Alertmanager / n9e.

Views (``POST``), authenticated with the shared webhook token
(``SRE_AGENT_API__WEBHOOK_TOKEN``) given as ``Authorization: Bearer <token>`` or
``X-Webhook-Token: <token>`` (never in the query string: URLs end up in proxy logs):

* ``/webhooks/argocd`` -> ``deploy-events``
* ``/webhooks/alertmanager`` -> ``alerts`` (payload version 4)
* ``/webhooks/n9e`` -> ``alerts``

They answer ``202 {"accepted": n, "ids": [...]}``; bad input gets one 4xx JSON
``{"error": ...}`` and produces nothing. Work per request is bounded: at most
``MAX_WEBHOOK_BODY`` bytes and ``MAX_WEBHOOK_EVENTS`` events (more: 413), and a
rejected request is one answer and one counter, never one log line per item. Without a configured token every
webhook answers 503 (closed by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from faust.web import Request, Response, View

from ..processors.ingest import PayloadError, parse_alertmanager, parse_argocd, parse_n9e
from ..schemas import AuditRecord, Event
from .auth import Principal
from .http import Api, BadRequest, read_body

__all__ = ["MAX_WEBHOOK_BODY", "MAX_WEBHOOK_EVENTS", "register"]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
#: events one request may produce (an Alertmanager group, a batch of n9e events)
MAX_WEBHOOK_EVENTS = 1000


def register(api: Api) -> None:
    ctx = api.ctx
    app = ctx.app

    async def accept(view: View, request: Request, source: str,
                     parse: Callable[[Any], list[Event]]) -> Response:
        body = await read_body(request, MAX_WEBHOOK_BODY)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None
        try:
            events = parse(payload)
        except PayloadError as exc:
            ctx.stats.events_in[f"webhook:{source}:rejected"] += 1
            raise BadRequest(f"invalid {source} payload: {str(exc)[:500]}", status=422) from None
        if len(events) > MAX_WEBHOOK_EVENTS:
            ctx.stats.events_in[f"webhook:{source}:rejected"] += 1
            raise BadRequest(f"{len(events)} events in one request; at most {MAX_WEBHOOK_EVENTS}",
                             status=413)
        for ev in events:
            await ctx.send(ev)
        ctx.stats.events_in[f"webhook:{source}"] += len(events)
        await ctx.send(AuditRecord(actor=f"webhook:{source}", action="webhook.accepted",
                                   subject=events[0].event_id if events else source,
                                   details={"count": len(events),
                                            "topic": events[0].TOPIC if events else None}))
        return view.json({"accepted": len(events), "ids": [e.event_id for e in events]},
                         status=202)

    @app.page("/webhooks/argocd")
    class ArgoCd(View):
        """ArgoCD notifications webhook -> deploy-events."""

        @api.endpoint("webhook_argocd", "webhook")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            return await accept(self, request, "argocd", lambda p: [parse_argocd(p)])

    @app.page("/webhooks/alertmanager")
    class Alertmanager(View):
        """Prometheus Alertmanager webhook (v4) -> alerts."""

        @api.endpoint("webhook_alertmanager", "webhook")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            return await accept(self, request, "alertmanager", parse_alertmanager)

    @app.page("/webhooks/n9e")
    class N9e(View):
        """n9e (夜莺) callback -> alerts."""

        @api.endpoint("webhook_n9e", "webhook")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            return await accept(self, request, "n9e", parse_n9e)

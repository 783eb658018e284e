"""Inbound webhooks: ArgoCD / Alertmanager / n9e.

Views (``POST``), authenticated with the shared webhook token
(``SRE_AGENT_API__WEBHOOK_TOKEN``) given as ``Authorization: Bearer <token>``,
``X-Webhook-Token: <token>`` or ``?token=<token>``:

* ``/webhooks/argocd`` -> ``deploy-events``
* ``/webhooks/alertmanager`` -> ``alerts`` (payload version 4)
* ``/webhooks/n9e`` -> ``alerts``

They answer ``202 {"accepted": n, "ids": [...]}``; bad input gets a 4xx JSON
``{"error": ...}`` and produces nothing. Without a configured token every
webhook answers 503 (closed by default).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import orjson
from faust.web import Request, Response, View

from ..processors.ingest import PayloadError, parse_alertmanager, parse_argocd, parse_n9e
from ..schemas import AuditRecord, Event
from ..streams.context import StreamContext

__all__ = ["MAX_WEBHOOK_BODY", "register"]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024


def _token(request: Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:].strip()
    return request.headers.get("X-Webhook-Token") or request.query.get("token")


def register(ctx: StreamContext) -> None:
    app = ctx.app
    secret = ctx.settings.api.webhook_token

    async def accept(view: View, request: Request, source: str,
                     parse: Callable[[Any], list[Event]]) -> Response:
        if secret is None:
            return view.json({"error": "webhooks are disabled: set SRE_AGENT_API__WEBHOOK_TOKEN"},
                             status=503)
        given = _token(request)
        if not given or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
            return view.json({"error": "missing or wrong webhook token"}, status=401)
        body = await request.read()
        if len(body) > MAX_WEBHOOK_BODY:
            return view.json({"error": f"body larger than {MAX_WEBHOOK_BODY} bytes"}, status=413)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return view.json({"error": f"body is not valid JSON: {exc}"}, status=400)
        try:
            events = parse(payload)
        except PayloadError as exc:
            ctx.stats.events_in[f"webhook:{source}:rejected"] += 1
            return view.json({"error": f"invalid {source} payload: {exc}"}, status=422)
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

        async def post(self, request: Request) -> Response:
            return await accept(self, request, "argocd", lambda p: [parse_argocd(p)])

    @app.page("/webhooks/alertmanager")
    class Alertmanager(View):
        """Prometheus Alertmanager webhook (v4) -> alerts."""

        async def post(self, request: Request) -> Response:
            return await accept(self, request, "alertmanager", parse_alertmanager)

    @app.page("/webhooks/n9e")
    class N9e(View):
        """n9e (夜莺) callback -> alerts."""

        async def post(self, request: Request) -> Response:
            return await accept(self, request, "n9e", parse_n9e)

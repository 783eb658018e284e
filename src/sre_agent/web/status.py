"""Web views of the worker: /status and the baseline read API."""

from __future__ import annotations

import time
from typing import Any

from faust.web import Request, Response, View

from ..streams.context import StreamContext
from ..streams.faust_fixes import handover
from .auth import Principal
from .http import Api, BadRequest

__all__ = ["authorize_viewer", "register", "status_payload"]


def _lag(app: Any) -> dict[str, int]:
    mon = app.monitor
    out: dict[str, int] = {}
    for tp, end in getattr(mon, "tp_end_offsets", {}).items():
        read = mon.tp_read_offsets.get(tp, -1)
        out[f"{tp.topic}:{tp.partition}"] = max(0, end - read - 1)
    return out


def _recovery(app: Any) -> dict[str, Any]:
    """Faust's rebalance/changelog-recovery state: a worker is ready once its first
    recovery completed and it is neither rebalancing nor restoring an active table
    partition (standbys restore in the background). A ready worker may hold no
    partition: with standby replicas, Faust's sticky assignor can leave one idle."""
    rec = getattr(getattr(app, "tables", None), "recovery", None)
    rebalancing = bool(getattr(app, "rebalancing", False))
    if rec is None:  # pragma: no cover - before the table manager exists
        return {"ready": False, "rebalancing": rebalancing, "in_recovery": False,
                "active_remaining": 0, "standby_remaining": 0}
    in_recovery = bool(rec.in_recovery)
    return {
        "ready": rec.completed.is_set() and not rebalancing and not in_recovery,
        "rebalancing": rebalancing,
        "in_recovery": in_recovery,
        "active_remaining": int(rec.active_remaining_total()),
        "standby_remaining": int(rec.standby_remaining_total()),
    }


def status_payload(ctx: StreamContext) -> dict[str, Any]:
    app = ctx.app
    lag = _lag(app)
    tables = {}
    for name, table in ctx.tables.items():
        try:
            size = len(table)
        except Exception:  # pragma: no cover - store not ready
            size = -1
        tables[name] = {"keys": size}
    stats = ctx.stats
    health_ok = all(h.get("ok", True) for h in stats.health.values())
    consumer = getattr(app, "_consumer", None)
    assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in (consumer.assignment() if consumer else []))
    return {
        "status": "ok" if health_ok else "degraded",
        "app_id": ctx.settings.worker.app_id,
        "uptime_seconds": round(time.time() - stats.started, 1),
        "broker": {"url": ctx.settings.kafka.broker, "assigned": assigned},
        "recovery": _recovery(app),
        "lag": lag,
        "lag_total": sum(lag.values()),
        # partitions with records past what their streams expect next (not yet read)
        "handover": handover(app),
        "tables": tables,
        "events_in": dict(stats.events_in),
        "events_out": dict(stats.events_out),
        "samples_in": stats.samples_in,
        "dlq": dict(stats.dlq),
        "health": stats.health,
        "dry_run": ctx.settings.actions.dry_run,
        # the key decision events are signed with, and whether the decision stages may act
        "decisions": ctx.services.readiness(),
    }


def authorize_viewer(ctx: StreamContext, view: View, request: Request) -> Response | None:
    """None when the caller may read (role viewer), else the 401/403/503 response.

    For views declared outside :mod:`sre_agent.web` that do not use ``Api.endpoint``.
    """
    api = ctx.stages.api
    if api is None:
        return view.json({"error": "the API stage is not configured"}, status=503)
    who = api.authorize(view, request, "viewer")
    return None if isinstance(who, Principal) else who


def register(api: Api) -> None:
    ctx = api.ctx
    app = ctx.app

    @app.page("/status")
    class Status(View):
        async def get(self, request: Request) -> Response:
            return self.json(status_payload(ctx))

    @app.page("/api/baselines")
    class Baselines(View):
        """Learned state of series in memory on this worker (``?series=`` filter)."""

        @api.endpoint("baselines", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            det = ctx.stages.metric_detector
            want = request.query.get("series")
            try:
                limit = min(int(request.query.get("limit", "100")), 1000)
            except ValueError:
                raise BadRequest("limit must be an integer") from None
            items = det.find(want, limit) if det is not None else []
            return self.json({"items": items, "count": len(items)})

"""Stage wiring: the read side — REST API, web console, ChatOps and ``/metrics``.

A :class:`~sre_agent.readmodel.ReadModel` is fed on every worker by a
group-less projection of the output topics (see :mod:`sre_agent.streams.projection`) and
by a Faust agent that keeps recent values of anomalous series for the charts.
Views only read from it; writes (feedback, chat votes, ``fix``) are events
produced to their topics, each audited.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from .. import __version__
from ..readmodel.series import Band
from .chatops import register_chatops
from .console import register_console
from .http import Api
from .metrics import AgentCollector, render
from .openapi import build_openapi
from .patterns import register_patterns
from .triage import register_triage
from .views import register_views
from .auth import Authenticator
from ..streams.context import StreamContext

__all__ = ["band_of", "register"]

log = logging.getLogger(__name__)


def band_of(ctx: StreamContext, sid: str, t: float, v: float) -> Band | None:
    """The learned band of ``sid`` near ``t``, if this worker's baseline knows it.

    Uses ``ctx.stages.baseline_band`` (``(sid, t) -> (expected, lower, upper) | None``)
    when the cognition stage provides one; otherwise asks the metric detector
    through its read-only views (``describe`` of a series slot, or a model's
    pure ``score_one``). None while warming up or unknown: the chart shows a gap.
    """
    fn = ctx.stages.baseline_band
    if fn is not None:
        return fn(sid, t)
    det: Any = ctx.stages.metric_detector
    if det is None:
        return None
    slots = getattr(det, "slot_of", None)
    if isinstance(slots, dict) and hasattr(det, "describe"):
        slot = slots.get(sid)
        if slot is None:
            return None
        d = det.describe(slot)
        if not d.get("warm", True):
            return None
        return (float(d["expected"]), float(d["lower"]), float(d["upper"]))
    state = getattr(det, "series", {}).get(sid)
    model = getattr(state, "model", None)
    if model is None:
        return None
    sc = model.score_one(t, v)
    if not getattr(sc, "warm", True):
        return None
    return (float(sc.expected), float(sc.lower), float(sc.upper))


def register(ctx: StreamContext) -> Api:
    """Declare the read model's feeds and every view of the read side; return the
    :class:`Api` the other views are declared with."""
    app, s = ctx.app, ctx.settings.api
    model, projection = ctx.services.readmodel, ctx.services.projection
    api = Api(ctx=ctx, model=model, auth=Authenticator(s), projection=projection)
    # other stages' views authenticate through it (metrics, logs)
    ctx.stages.api = api
    register_views(api)
    register_triage(api)
    register_patterns(api)
    register_chatops(api)
    register_console(api)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(api))
    ctx.stages.metrics_registry = registry

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                render(registry),
                content_type=CONTENT_TYPE_LATEST.split(";")[0],
                headers={"Cache-Control": "no-cache"},
            )

    openapi: dict[str, Any] = {}

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            if not openapi:  # routes are fixed once the server runs
                routes = {path: set(view.get_methods()) for path, view in app.web.views.items()}
                openapi.update(build_openapi(routes, __version__))
            return self.json(openapi)

    @app.timer(2.0)  # type: ignore[untyped-decorator]
    async def readmodel_health() -> None:
        ctx.stats.health["readmodel"] = projection.health()

    # the console's chart points come from the metrics agent's decoded batches
    # (streams/metrics_agent.py: readmodel.series.add_series with band_of)
    return api

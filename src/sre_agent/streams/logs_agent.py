"""logs -> templates + per-template rate baselines (tables) -> anomalies (kind="log").

Wiring only: :class:`~sre_agent.processors.logs.LogPatternDetector` mines and
baselines in memory; its per-service state goes to the ``log_patterns`` table
and the rate baselines to ``log_baselines``, per partition at most every
``checkpoint_interval``. A timer closes the windows of services that went
quiet (a silent error template is news only when its window closes). The timer
judges "quiet" by the records' event time (:class:`~sre_agent.processors.clock.EventClock`),
never the wall clock alone: in a replay or a backlog the wall clock runs ahead of
the records, and rolling windows to it would fold many minutes of records into one
window and keep a recovered error template "new" until the records catch up.

View: ``GET /api/logs/templates?service=`` (viewer) lists mined templates.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.web import Request, Response, View

from ..processors.clock import EventClock
from ..processors.logs import LogPatternDetector
from ..schemas import LogRecord
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    settings = ctx.settings
    if not settings.log_patterns.enabled:
        return
    services = ctx.tables.declare("log_patterns", help="service -> log templates and windows")
    rates = ctx.tables.declare("log_baselines", help="log template rate baselines")
    detector = LogPatternDetector(settings.log_patterns, settings.anomaly_detection,
                                  load_service=services.get, load_rate=rates.get)
    ctx.stages.log_patterns = detector
    interval = settings.worker.checkpoint_interval
    last_checkpoint: dict[int, float] = {}
    clock = EventClock()

    def checkpoint(partition: int, force: bool) -> None:
        now = time.monotonic()
        if not force and now - last_checkpoint.get(partition, 0.0) < interval:
            return
        last_checkpoint[partition] = now
        for name, state in detector.take_dirty(tag=partition).items():
            services[name] = state
        for sid, state in detector.rates.take_dirty(tag=partition).items():
            rates[sid] = state

    @ctx.app.agent(ctx.topics["logs"], name="log-patterns")
    async def log_patterns(stream: Any) -> None:
        async for event in stream.events():
            rec = await ctx.decode(LogRecord, event, stage="log-patterns")
            if rec is None:
                continue
            partition = event.message.partition
            clock.observe(rec.time.timestamp(), time.time())
            anomalies = detector.add(rec, tag=partition)
            for a in anomalies:
                await ctx.send(a)
            checkpoint(partition, force=bool(anomalies))

    @ctx.app.timer(settings.log_patterns.window_seconds)
    async def close_quiet_windows() -> None:
        for a in detector.tick(clock.now(time.time())):
            await ctx.send(a)

    @ctx.app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kw: Any) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == ctx.topics["logs"].get_topic_name()}
        if parts:
            dropped = detector.forget(parts)
            for p in parts:
                last_checkpoint.pop(p, None)
            log.info("partitions %s revoked: dropped %d log services", sorted(parts), dropped)

    api = ctx.stages.api
    if api is None:
        return

    @ctx.app.page("/api/logs/templates")
    class Templates(View):
        """Mined templates per service on this worker, most frequent first."""

        @api.endpoint("log_templates", "viewer")
        async def get(self, request: Request, principal: Any) -> Response:
            from ..web.http import BadRequest

            try:
                limit = min(int(request.query.get("limit", "50")), 1000)
            except ValueError:
                raise BadRequest("limit must be an integer") from None
            items = detector.describe(request.query.get("service"), limit)
            return self.json({"items": items, "count": len(items)})

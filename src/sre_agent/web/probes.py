"""Kubernetes probes: ``/livez`` (restart me) and ``/readyz`` (send me traffic).

``/status`` always answers 200 with the worker's state; a probe needs a verdict.

* **Liveness** fails only when a restart helps: the Faust app or its consumer
  thread crashed while the process stays up. A wedged event loop answers no
  HTTP at all, so the probe times out. Nothing outside the process (broker,
  PostgreSQL, Slack) fails liveness: restarting would not bring it back, and a
  restart in the middle of a table recovery starts the recovery over.
* **Readiness** fails (503, with the reasons) while the worker is recovering
  (rebalancing or restoring an active table partition), while it is not
  connected to the broker (no group coordinator), and while a stage is stalled:
  events wait in its input buffer but it has taken none for
  ``worker.stall_seconds``. A worker that is not ready leaves the Service
  endpoints and shows as not ready; nothing restarts it.

No probe does I/O: each reads state the worker already has, so a probe costs
microseconds and cannot hang on a dependency.
"""

from __future__ import annotations

import time
from typing import Any

from faust.web import Request, Response, View

from ..streams.context import StreamContext
from .metrics import StageSensor, stage_sensor
from .status import _recovery

__all__ = ["liveness", "readiness", "register"]

#: used when the settings have no ``worker.stall_seconds``
DEFAULT_STALL_SECONDS = 180.0


def _crashed(svc: Any) -> str | None:
    if svc is not None and getattr(svc, "crashed", False):
        return str(getattr(svc, "crash_reason", None) or "crashed")[:300]
    return None


def liveness(ctx: StreamContext) -> dict[str, Any]:
    """``{"live": bool, "reasons": [...]}``: only a crashed app or consumer thread is fatal."""
    reasons = []
    app = ctx.app
    why = _crashed(app)
    if why:
        reasons.append(f"app crashed: {why}")
    consumer = getattr(app, "_consumer", None)  # not created before the app starts
    thread = getattr(consumer, "_thread", None)
    why = _crashed(consumer) or _crashed(thread)
    if why:
        reasons.append(f"consumer crashed: {why}")
    return {"live": not reasons, "reasons": reasons}


def _broker(app: Any) -> dict[str, Any]:
    """Connected = the consumer knows its group coordinator (aiokafka forgets it when
    a heartbeat or a request to it fails, and looks it up again on the next metadata)."""
    consumer = getattr(app, "_consumer", None)
    thread = getattr(consumer, "_thread", None)
    kafka = getattr(thread, "_consumer", None)
    coordinator = getattr(kafka, "_coordinator", None)
    if kafka is None or coordinator is None:
        return {"connected": False, "reason": "consumer not started"}
    node = getattr(coordinator, "coordinator_id", None)
    if node is None:
        return {"connected": False, "reason": "no group coordinator (broker unreachable?)"}
    return {"connected": True, "coordinator": node}


def _stall_seconds(ctx: StreamContext) -> float:
    return float(getattr(ctx.settings.worker, "stall_seconds", DEFAULT_STALL_SECONDS))


def readiness(ctx: StreamContext, now: float | None = None) -> dict[str, Any]:
    """``{"ready": bool, "reasons": [...], "recovery": ..., "broker": ..., "stalled": ...}``."""
    now = time.monotonic() if now is None else now
    app = ctx.app
    reasons: list[str] = []
    live = liveness(ctx)
    reasons += live["reasons"]
    recovery = _recovery(app)
    if not recovery["ready"]:
        what = ("rebalancing" if recovery["rebalancing"] else
                f"restoring tables ({recovery['active_remaining']} changelog records left)"
                if recovery["in_recovery"] else "first recovery not complete")
        reasons.append(f"recovering: {what}")
    broker = _broker(app)
    if not broker["connected"]:
        reasons.append(f"broker: {broker['reason']}")
    after = _stall_seconds(ctx)
    sensor: StageSensor | None = ctx.stages.stage_sensor
    stalled = sensor.stalled(now, after) if sensor is not None and after > 0 else {}
    for stage, info in sorted(stalled.items()):
        reasons.append(f"stage {stage} stalled: {info['waiting']} events waiting, none taken "
                       f"for {info['idle_seconds']:.0f}s")
    return {"ready": not reasons, "reasons": reasons, "recovery": recovery, "broker": broker,
            "stalled": stalled, "stall_seconds": after}


def register(ctx: StreamContext) -> None:
    """``/livez`` and ``/readyz``: no credentials (kubelet), 200 or 503 with reasons."""
    app = ctx.app
    stage_sensor(ctx)  # created before the app starts, so it sees every stream

    @app.page("/livez")
    class Livez(View):
        async def get(self, request: Request) -> Response:
            body = liveness(ctx)
            return self.json(body, status=200 if body["live"] else 503)

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            body = readiness(ctx)
            return self.json(body, status=200 if body["ready"] else 503)

"""anomalies / alerts / predictions / k8s-events / deploy-events -> incidents.

Input topics have different keys (anomalies by service, alerts by fingerprint,
k8s events by object ...), so one thin agent per input decodes and normalises
each event into a :class:`~sre_agent.processors.correlate_signals.Signal` and
re-keys it by the service's *topology group* (connected component of the
dependency graph) onto the internal ``correlation-signals`` topic. The
``correlator`` agent consumes that topic: every signal that may join one
incident arrives in order on one partition, and the group's state lives in the
``correlation`` table (orjson bytes), written only by that agent. Two alerts
with the same fingerprint 2 s apart therefore always meet the same state.

A timer (every ``correlation.tick_interval``) sends a *tick* for each local
group with a due deadline, so hold-down resolution and batched updates also
happen inside the agent. ``GET /api/correlation/stats`` shows the noise
reduction counters of this worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response, View
from pydantic import ValidationError

from ..processors.correlate import GroupState, IncidentCorrelator
from ..processors.correlate_signals import (
    Signal,
    from_alert,
    from_anomaly,
    from_deploy,
    from_k8s,
    from_prediction,
    resolve_signal,
    tick,
)
from ..processors.severity import SeverityModel
from ..processors.clock import EventClock
from ..processors.topology import ServiceGraph
from ..schemas import (
    Alert,
    Anomaly,
    AuditRecord,
    DeployEvent,
    Event,
    K8sEvent,
    Prediction,
    TriageEvent,
)
from .context import StreamContext
from ..web.status import authorize_viewer

__all__ = ["SIGNALS_TOPIC", "register"]

log = logging.getLogger(__name__)

SIGNALS_TOPIC = "correlation-signals"

_INPUTS: list[tuple[type[Event], Callable[[Any], Signal | None]]] = [
    (Anomaly, from_anomaly),
    (Alert, from_alert),
    (Prediction, from_prediction),
    (K8sEvent, from_k8s),
    (DeployEvent, from_deploy),
]


def register(ctx: StreamContext) -> None:
    app, settings = ctx.app, ctx.settings.correlation
    # severity from impact; run-time silences from the compacted topic (every worker)
    correlator = IncidentCorrelator(
        settings, ServiceGraph(settings.edges),
        severity=SeverityModel(ctx.settings.severity, ctx.settings.actions),
        silences=ctx.services.silences)
    # windows follow event time (accelerated replays, backlogs), and still pass when idle
    clock = EventClock()
    ctx.stages.correlator = correlator
    table = ctx.tables.declare("correlation", help="correlation state per topology group")
    signals = app.topic(ctx.settings.topic(SIGNALS_TOPIC), partitions=ctx.settings.kafka.partitions,
                        replicas=ctx.settings.kafka.replication, key_serializer="raw",
                        value_serializer="raw", internal=True)

    async def forward(sig: Signal) -> None:
        group = correlator.group_of(sig.service)
        await signals.send(key=group.encode(), value=sig.model_dump_json().encode())

    def make_input(model: type[Event], convert: Callable[[Any], Signal | None]) -> None:
        stage = f"correlate-in-{model.TOPIC}"

        @app.agent(ctx.topics[model.TOPIC], name=stage)
        async def normalise(stream: Any) -> None:
            async for event in stream.events():
                obj = await ctx.decode(model, event, stage=stage)
                if obj is None:
                    continue
                sig = convert(obj)
                if sig is not None:
                    await forward(sig)

    for model, convert in _INPUTS:
        make_input(model, convert)

    @app.agent(ctx.topics[TriageEvent.TOPIC], name="correlate-in-triage")
    async def triage_in(stream: Any) -> None:
        """A person resolved an incident: the correlator that keeps it resolves it."""
        async for event in stream.events():
            ev = await ctx.decode(TriageEvent, event, stage="correlate-in-triage")
            if ev is None or ev.action != "resolve" or not ev.group:
                continue
            sig = resolve_signal(ev.incident_id, ev.group, ev.actor, ev.time)
            await signals.send(key=ev.group.encode(), value=sig.model_dump_json().encode())

    def publish_stats() -> None:
        ctx.stats.health["correlator"] = {"ok": True, **correlator.stats.as_dict()}

    @app.agent(signals, name="correlator")
    async def correlate(stream: Any) -> None:
        async for event in stream.events():
            key = event.key.decode() if isinstance(event.key, bytes) else str(event.key)
            try:
                sig = Signal.model_validate_json(event.value)
            except ValidationError as exc:  # only this stage writes the topic
                log.error("undecodable correlation signal at offset %s: %s",
                          event.message.offset, str(exc)[:300])
                continue
            raw = table.get(key)
            try:
                state = GroupState.from_bytes(raw) if raw else GroupState(group=key)
            except Exception:  # corrupt/old state: start over rather than stall the partition
                log.exception("discarding unreadable correlation state of group %s", key)
                state = GroupState(group=key)
            wall = time.time()
            if sig.kind not in ("tick", "resolve"):  # a person's click is not event time
                clock.observe(sig.time.timestamp(), wall)
            incidents = correlator.update(state, sig, now=clock.now(wall))
            table[key] = state.to_bytes()
            for inc in incidents:
                await ctx.send(inc)
                await ctx.send(AuditRecord(
                    actor="correlator", action=f"incident.{inc.status}", subject=inc.incident_id,
                    details={"revision": inc.revision, "services": inc.services,
                             "severity": inc.severity, "signals": inc.signal_count,
                             "reopen_count": inc.reopen_count,
                             "changes": len(inc.candidate_changes)}))
                log.info("incident %s %s: %s", inc.incident_id, inc.status, inc.title,
                         extra={"incident_id": inc.incident_id})
            while correlator.silenced_first:  # audited once per silence and signal
                sid, fp, svc = correlator.silenced_first.pop(0)
                await ctx.send(AuditRecord(actor="correlator", action="silence.applied",
                                           subject=sid, details={"fingerprint": fp,
                                                                 "service": svc}))
            if sig.kind != "tick" or incidents:
                publish_stats()

    @app.timer(settings.tick_interval)
    async def correlation_ticks() -> None:
        wall = time.time()
        # event time passes while no signal arrives: the metrics this worker buffers for
        # RCA carry it (in a replay or a backlog, a quiet hour goes by in seconds of wall
        # time, and an incident whose signals all recovered waited for the next fault's
        # first signal to be resolved)
        metrics = ctx.stages.rca_windows
        if metrics is not None and metrics.clock > 0:
            clock.observe(metrics.clock, wall)
        now = clock.now(wall)
        try:
            items = list(table.items())
        except Exception:  # store not ready during rebalance
            return
        for group, raw in items:
            try:
                due = IncidentCorrelator.next_deadline(GroupState.from_bytes(raw), settings)
            except Exception:
                continue
            if due is not None and due <= now:
                sig = tick(group, datetime.fromtimestamp(now, UTC))
                await signals.send(key=group.encode(), value=sig.model_dump_json().encode())

    @app.page("/api/correlation/stats")
    class CorrelationStats(View):
        """Noise-reduction counters of this worker's correlator."""

        async def get(self, request: Request) -> Response:
            denied = authorize_viewer(ctx, self, request)
            if denied is not None:
                return denied
            return self.json(correlator.stats.as_dict())

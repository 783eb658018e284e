"""incidents + rca-results + incident-triage -> notification sinks, each message once.

The ``incident-notifier`` agent reads the three topics (all keyed by incident
id, so co-partitioned with its ``notify_state`` table) and a private tick topic,
feeds each event to the pure machine
:func:`sre_agent.processors.notifications.decide`, and sends what it returns
through the channels built once by :class:`~.services.Services`
(:mod:`sre_agent.sinks.channels`).

Sent once across replicas: an incident's events are handled by the one worker
that owns its partition. Before a message goes out its idempotency key is saved
as *pending* in the table and flushed to the changelog; after, as *sent*. A
worker that takes the partition over (crash, rebalance) gets the unfinished
event again, finds the key pending and, for Slack, looks the message up by its
metadata in the channel or thread before sending it again (PagerDuty
deduplicates by its dedup key itself; e-mail carries a stable Message-ID).

Every send, failure and reconciliation is audited (``notify.sent``,
``notify.failed``, ``notify.reconciled``, subject = incident id). A timer sends
ticks (through the tick topic, so the owner handles them) for incidents with a
due escalation, snooze end or retry, and for resolved ones old enough to forget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..processors.notifications import (
    Event,
    IncidentIn,
    NotifyState,
    RcaIn,
    Rules,
    Send,
    SinkState,
    Tick,
    TriageIn,
    begin,
    decide,
    failed,
    next_due,
    sent,
)
from ..schemas import Incident, RcaResult, TriageEvent
from ..sinks.channels import Channels
from .audit_agent import emit_audit
from .context import StreamContext

__all__ = ["NOTIFY_TICKS_TOPIC", "Outbox", "register"]

log = logging.getLogger(__name__)

#: private tick topic of the notifier (keyed by incident id, partitioned like incidents)
NOTIFY_TICKS_TOPIC = "incidents.notify-ticks"
#: a resolved incident's notification state is forgotten this long after (seconds)
FORGET_AFTER = 24 * 3600.0
#: the history lookup of a send in doubt starts this long before it was begun
LOOKUP_SLACK = 300.0


def register(ctx: StreamContext) -> None:
    app, settings, services = ctx.app, ctx.settings, ctx.services
    channels = services.channels
    n = settings.notify
    rules = Rules(sinks=channels.sinks, console_url=n.console_url, max_attempts=n.max_attempts)
    counters = {"sent": 0, "failed": 0, "gave_up": 0, "reconciled": 0}
    ctx.stats.health["notify"] = {**channels.health(), **counters,
                                  "sinks_configured": [s.name for s in rules.sinks]}
    if not rules.sinks:
        log.info("no notification sinks configured (notify.sinks, slack.bot_token, "
                 "notify.wecom_webhook_url or notify.pagerduty_routing_key)")
        return
    table = ctx.tables.declare("notify_state", help="incident id -> notification state (JSON)")
    ticks = app.topic(settings.topic(NOTIFY_TICKS_TOPIC), key_serializer="raw",
                      value_serializer="raw", partitions=settings.kafka.partitions, internal=True)
    names = {settings.topic(t): t for t in (Incident.TOPIC, RcaResult.TOPIC, TriageEvent.TOPIC)}
    source = app.topic(*names, settings.topic(NOTIFY_TICKS_TOPIC), key_serializer="raw",
                       value_serializer="raw")
    #: incident id -> last tick sent (the timer does not flood a lagging agent)
    ticked: dict[str, float] = {}

    def load(incident_id: str) -> NotifyState | None:
        raw = table.get(incident_id)
        try:
            return NotifyState.model_validate_json(raw) if raw else None
        except ValueError:  # an older, unreadable state: start over rather than stall
            log.exception("discarding unreadable notification state of %s", incident_id)
            return None

    def save(st: NotifyState) -> None:
        table[st.incident_id] = st.model_dump_json().encode()

    async def audit(action: str, subject: str, details: dict[str, Any], key: str | None) -> None:
        await emit_audit(ctx, "notifier", action, subject, details, idempotency_key=key)

    async def flush() -> None:
        await app.producer.flush()

    outbox = Outbox(channels, rules, save, flush, audit, counters)

    def publish_health() -> None:
        ctx.stats.health["notify"] = {**channels.health(), **counters,
                                      "sinks_configured": [s.name for s in rules.sinks]}

    async def handle(incident_id: str, ev: Event) -> None:
        now = time.time()
        before = load(incident_id)
        if isinstance(ev, Tick) and before is not None and _forgettable(before, now):
            table.pop(incident_id, None)
            return
        st, sends = decide(before, ev, now, rules)
        if st is None:
            return
        for send in sends:
            await outbox.deliver(st, send)
        save(st)
        publish_health()

    @app.agent(source, name="incident-notifier")
    async def incident_notifier(stream: Any) -> None:
        async for event in stream.events():
            topic = names.get(event.message.topic)
            ev: Event
            if topic == Incident.TOPIC:
                inc = await ctx.decode(Incident, event, stage="incident-notifier")
                if inc is None:
                    continue
                iid, ev = inc.incident_id, IncidentIn(inc)
            elif topic == RcaResult.TOPIC:
                rca = await ctx.decode(RcaResult, event, stage="incident-notifier")
                if rca is None:
                    continue
                iid, ev = rca.incident_id, RcaIn(rca)
            elif topic == TriageEvent.TOPIC:
                tri = await ctx.decode(TriageEvent, event, stage="incident-notifier")
                if tri is None:
                    continue
                iid, ev = tri.incident_id, TriageIn(tri)
            else:
                key = event.key
                iid = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                ticked.pop(iid, None)
                ev = Tick()
            await handle(iid, ev)

    @app.timer(n.tick_interval)
    async def notify_ticks() -> None:
        now = time.time()
        try:
            items = list(table.items())
        except Exception:  # the store is not ready during a rebalance
            return
        for iid, raw in items:
            if not raw or now - ticked.get(iid, 0.0) < max(30.0, 3 * n.tick_interval):
                continue
            try:
                st = NotifyState.model_validate_json(raw)
            except ValueError:
                continue
            due = next_due(st, rules)
            if (due is not None and due <= now) or _forgettable(st, now):
                ticked[iid] = now
                await ticks.send(key=iid.encode(), value=b"tick")
        if len(ticked) > 50_000:
            ticked.clear()


class Outbox:
    """Sends one message of an incident exactly once per idempotency key (see module doc).

    ``save`` writes the state to the table, ``flush`` waits until the changelog has
    it, ``audit`` produces an audit record; injected so tests can drive it.
    """

    def __init__(self, channels: Channels, rules: Rules,
                 save: Callable[[NotifyState], None], flush: Callable[[], Awaitable[None]],
                 audit: Callable[[str, str, dict[str, Any], str | None], Awaitable[None]],
                 counters: dict[str, int] | None = None) -> None:
        self.channels, self.rules = channels, rules
        self.save, self.flush, self.audit = save, flush, audit
        self.counters = counters if counters is not None else {}

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    async def deliver(self, st: NotifyState, send: Send) -> None:
        key, msg = send.msg.key, send.msg
        channel = self.channels.channels.get(send.sink)
        doubt = st.pending.get(key)
        if channel is None or not begin(st, send, time.time()):
            return
        self.save(st)
        await self.flush()  # 'pending' is in the changelog before anything leaves
        ss = st.sinks.setdefault(send.sink, SinkState())
        details = {"sink": send.sink, "type": channel.type, "event": msg.event, "key": key,
                   "severity": msg.severity}
        try:
            if doubt is not None:
                found = await channel.find(msg, ss.thread, doubt.next - LOOKUP_SLACK)
                if found is not None:
                    ss.thread = found
                    sent(st, key)
                    self._count("reconciled")
                    await self.audit("notify.reconciled", msg.incident_id, details,
                                     f"notify:{key}")
                    return
            thread = await channel.add(msg, ss.thread)
        except Exception as exc:  # noqa: BLE001 - any failure: retried with backoff
            gave_up = failed(st, send, f"{type(exc).__name__}: {exc}", time.time(), self.rules)
            self._count("gave_up" if gave_up else "failed")
            log.warning("notification %s to %s failed%s: %s", key, send.sink,
                        " (given up)" if gave_up else "", exc,
                        extra={"incident_id": msg.incident_id})
            await self.audit("notify.failed", msg.incident_id,
                             {**details, "error": str(exc)[:300], "given_up": gave_up}, None)
            return
        if thread:
            ss.thread = thread
        sent(st, key)
        self._count("sent")
        await self.audit("notify.sent", msg.incident_id, details, f"notify:{key}")


def _forgettable(st: NotifyState, now: float) -> bool:
    inc = st.incident
    return (inc.status == "resolved" and not st.pending and not st.retry
            and inc.resolved_at is not None and now - st.first_seen > FORGET_AFTER
            and now - inc.time.timestamp() > FORGET_AFTER)

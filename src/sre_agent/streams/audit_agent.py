"""audit -> PostgreSQL (hash-chained), and incidents -> tickets + open/resolved view.

The audit sink acks an event only after its row is in PostgreSQL. When the
database is down it retries with backoff, holding the stream where it is: the
consumer never commits past an unwritten record. If the worker stops or the
group rebalances meanwhile, the record is first re-produced to the ``audit``
topic (awaited), then acked — Faust waits for in-flight events there, so holding
it would hang the shutdown — and a restarted worker writes it (rows are unique
by ``event_id``, so nothing is written twice). ``/status`` shows
``health.audit`` (ok, pending, requeued, last error).

Tickets are written the same way: while PostgreSQL is down the incident waits
(retried with backoff); if the worker stops or the group rebalances meanwhile,
the incident goes to the private ``incidents.tickets-retry`` topic (keyed and
partitioned like ``incidents``, read only by this agent) and is written from
there later, so a ticket opened during an outage is never lost.

Helpers used by the other action stages: :func:`emit_audit` (every plan, vote,
action, result and policy decision) and :func:`incident_status`. The
PostgreSQL store is ``ctx.services.postgres``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from ..schemas import AuditRecord, Incident
from ..sinks.audit import AuditStore
from ..sinks.tickets import PostgresTickets
from .context import StreamContext

__all__ = ["TICKETS_RETRY_TOPIC", "emit_audit", "incident_status", "register"]

log = logging.getLogger(__name__)

#: private re-try topic of the ticket writer (created with the others by streams.admin)
TICKETS_RETRY_TOPIC = "incidents.tickets-retry"


async def emit_audit(ctx: StreamContext, actor: str, action: str, subject: str,
                     details: dict[str, Any] | None = None,
                     idempotency_key: str | None = None) -> AuditRecord:
    """Produce one :class:`AuditRecord` to the ``audit`` topic."""
    rec = AuditRecord(actor=actor, action=action, subject=subject, details=details or {},
                      idempotency_key=idempotency_key)
    await ctx.send(rec)
    return rec


async def incident_status(ctx: StreamContext, incident_id: str) -> str | None:
    """open / updated / resolved from the tickets table, else this worker's view, else the
    read model's (every replica projects all partitions of ``incidents``; with several
    workers the incident may live on another one's partition)."""
    store = ctx.services.postgres
    if store is not None and store.pool is not None:
        try:
            found = await PostgresTickets(store).status(incident_id)
            if found:
                return found
        except Exception as exc:  # noqa: BLE001 - fall back to the in-memory view
            log.warning("ticket status of %s unavailable: %s", incident_id, exc)
    local = ctx.stages.ticket_status.get(incident_id)
    if local is not None:
        return local
    rec = ctx.services.readmodel.records.get(incident_id)
    return rec.incident.status if rec is not None and rec.incident is not None else None


def register(ctx: StreamContext) -> None:
    app = ctx.app
    store = ctx.services.postgres
    statuses = ctx.stages.ticket_status
    health: dict[str, Any] = {"ok": True, "sink": "postgres" if store else "none",
                              "written": 0, "duplicates": 0, "pending": 0, "error": None}
    ctx.stats.health["audit"] = health

    def letting_go() -> bool:
        """The worker stops or the group rebalances: hand the record back to Kafka."""
        return bool(app.should_stop or getattr(app, "rebalancing", False))

    async def requeue(event: Any) -> None:
        """Re-produce the record at the tail of ``audit`` and wait until Kafka has it."""
        fut = await ctx.topics["audit"].send(key=event.message.key, value=event.value)
        await fut
        health["requeued"] = health.get("requeued", 0) + 1

    async def write(rec: AuditRecord, event: Any) -> str | None:
        """Write one record, retrying while PostgreSQL is unavailable.

        Returns None when written (or handed back to Kafka because the worker
        stops or rebalances while the database is down), or why PostgreSQL
        refuses this record for good (e.g. a NUL character): that one goes to the DLQ.
        """
        assert store is not None
        delay = 0.5
        while True:
            try:
                await store.setup()
                if await store.add(rec):
                    health["written"] += 1
                else:
                    health["duplicates"] += 1
                health.update(ok=True, error=None, pending=0)
                health.pop("since", None)
                return None
            except asyncio.CancelledError:
                raise
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                return f"audit row refused by PostgreSQL: {type(exc).__name__}: {exc}"[:500]
            except Exception as exc:  # noqa: BLE001 - any DB failure: keep the record, retry
                health.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300], pending=1,
                              since=health.get("since") or time.time())
                log.warning("audit write failed (retrying in %.1fs): %s", delay, exc)
                await _reset(store)
            # Holding an unacked event blocks Faust's stop and rebalance (they wait for
            # in-flight events), so then the record goes back to the topic instead.
            end = time.monotonic() + delay
            while time.monotonic() < end and not letting_go():
                await asyncio.sleep(0.1)
            if letting_go():
                await requeue(event)
                return None
            delay = min(delay * 2, 15.0)

    @app.agent(ctx.topics["audit"], name="audit-sink")
    async def audit_sink(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            rec = await ctx.decode(AuditRecord, event, stage="audit-sink")
            if rec is not None:
                if store is None:
                    log.info("audit %s %s %s", rec.actor, rec.action, rec.subject)
                else:
                    refused = await write(rec, event)
                    if refused:
                        msg = event.message
                        await ctx.dead_letter("audit", event.value, refused, stage="audit-sink",
                                              partition=msg.partition, offset=msg.offset)
            # only now may the offset be committed: the record is in PostgreSQL,
            # back on the topic, or on the DLQ
            await manual.ack(event)

    tickets_health: dict[str, Any] = {"ok": True, "written": 0, "pending": 0, "requeued": 0,
                                      "error": None}
    if store is not None:
        ctx.stats.health["tickets"] = tickets_health
    retry_topic = app.topic(ctx.settings.topic(TICKETS_RETRY_TOPIC), key_serializer="raw",
                            value_serializer="raw", partitions=ctx.settings.kafka.partitions)
    incidents_topic = ctx.settings.topic("incidents")
    channel = app.topic(incidents_topic, ctx.settings.topic(TICKETS_RETRY_TOPIC),
                        key_serializer="raw", value_serializer="raw")

    async def write_ticket(inc: Incident, event: Any) -> str | None:
        """Upsert the ticket, retrying while PostgreSQL is down; None if handed over
        to the retry topic (stop/rebalance meanwhile), else what was done."""
        assert store is not None
        delay = 0.5
        while True:
            try:
                await store.setup()
                what = await PostgresTickets(store).upsert(inc)
                tickets_health.update(ok=True, error=None, pending=0)
                tickets_health["written"] += 1
                return what
            except asyncio.CancelledError:
                raise
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                log.warning("ticket of %s refused by PostgreSQL: %s", inc.incident_id, exc)
                return "refused"
            except Exception as exc:  # noqa: BLE001 - keep the incident, retry
                tickets_health.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300],
                                      pending=1)
                log.warning("ticket upsert of %s failed (retrying in %.1fs): %s",
                            inc.incident_id, delay, exc)
                await _reset(store)
            end = time.monotonic() + delay
            while time.monotonic() < end and not letting_go():
                await asyncio.sleep(0.1)
            if letting_go():
                fut = await retry_topic.send(key=event.message.key, value=event.value)
                await fut
                tickets_health["requeued"] += 1
                return None
            delay = min(delay * 2, 15.0)

    jira = ctx.services.jira
    jira_health: dict[str, Any] = {"ok": True, "created": 0, "commented": 0, "resolved": 0,
                                   "failed": 0, "error": None}
    if jira is not None:
        ctx.stats.health["jira"] = jira_health

    async def mirror_to_jira(inc: Incident, what: str) -> None:
        """Mirror the written revision to Jira; a Jira outage never holds the tickets
        (an issue not created yet is created with the incident's next revision)."""
        if jira is None or store is None:
            return
        try:
            done = await jira.mirror(inc, what, PostgresTickets(store))
        except Exception as exc:  # noqa: BLE001 - Jira down or refusing: audited, retried later
            jira_health.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
            jira_health["failed"] += 1
            log.warning("Jira mirror of %s failed: %s", inc.incident_id, exc,
                        extra={"incident_id": inc.incident_id})
            await emit_audit(ctx, "ticket-manager", "ticket.jira_failed", inc.incident_id,
                             {"revision": inc.revision, "error": str(exc)[:300]})
            return
        jira_health.update(ok=True, error=None)
        for op in done:
            jira_health[op] = jira_health.get(op, 0) + 1
        if done:
            await emit_audit(ctx, "ticket-manager", "ticket.jira", inc.incident_id,
                             {"revision": inc.revision, "status": inc.status, **done})

    @app.agent(channel, name="incident-tickets")
    async def incident_tickets(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            inc = await ctx.decode(Incident, event, stage="incident-tickets")
            if inc is not None:
                if event.message.topic == incidents_topic:
                    statuses[inc.incident_id] = inc.status
                    if len(statuses) > 50_000:  # bounded: drop the oldest entries
                        for key in list(statuses)[:10_000]:
                            statuses.pop(key, None)
                what = await write_ticket(inc, event) if store is not None else None
                if what not in (None, "stale", "refused"):
                    await emit_audit(ctx, "ticket-manager", f"ticket.{what}", inc.incident_id,
                                     {"status": inc.status, "revision": inc.revision,
                                      "severity": inc.severity, "title": inc.title})
                    await mirror_to_jira(inc, str(what))
            # only now: the ticket is written, or on the retry topic
            await manual.ack(event)



async def _reset(store: AuditStore) -> None:
    """Drop a broken pool so the next attempt reconnects."""
    try:
        await asyncio.wait_for(store.close(), timeout=2)
    except Exception:  # noqa: BLE001
        store.pool = None

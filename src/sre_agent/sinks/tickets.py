"""Incident tickets: create / update / resolve, kept in PostgreSQL, mirrored to Jira.

:class:`TicketAdapter` is the interface (the seeds' TicketManager): ``upsert``
an incident as a ticket, ``status`` of one. :class:`PostgresTickets` is the
system of record (table ``incident_tickets``, created by the audit store's
migrations); :class:`JiraTickets` mirrors the same calls to Jira's REST API v2
(issue create, comment on update, transition on resolve) and stores the Jira key.
The executor reads the ticket status for its pre-action "is the incident still
open?" check, so every worker sees the same answer.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import aiohttp
import orjson

from ..processors.redact import scrub_model
from ..schemas import Incident
from .audit import AuditStore

__all__ = ["JiraTickets", "PostgresTickets", "TicketAdapter"]

log = logging.getLogger(__name__)


class TicketAdapter(Protocol):
    async def upsert(self, incident: Incident) -> str:
        """Create or update the ticket of ``incident``; return ``created|updated|resolved``."""

    async def status(self, incident_id: str) -> str | None:
        """``open``, ``updated``, ``resolved``, or None when unknown."""


class PostgresTickets:
    def __init__(self, store: AuditStore) -> None:
        self.store = store

    async def upsert(self, incident: Incident) -> str:
        incident = scrub_model(incident)
        entry = orjson.dumps([{"revision": incident.revision, "status": incident.status,
                               "time": incident.time.isoformat()}]).decode()
        async with self.store._pool().acquire() as con:
            row = await con.fetchrow(
                """INSERT INTO incident_tickets (incident_id, status, title, severity, services,
                       revision, opened_at, resolved_at, history)
                   VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::jsonb)
                   ON CONFLICT (incident_id) DO UPDATE SET
                       status = EXCLUDED.status, title = EXCLUDED.title,
                       severity = EXCLUDED.severity, services = EXCLUDED.services,
                       revision = EXCLUDED.revision, resolved_at = EXCLUDED.resolved_at,
                       history = incident_tickets.history || EXCLUDED.history,
                       updated_at = now()
                   WHERE incident_tickets.revision <= EXCLUDED.revision
                   RETURNING (xmax = 0) AS created""",
                incident.incident_id, incident.status, incident.title, incident.severity,
                orjson.dumps(incident.services).decode(), incident.revision, incident.opened_at,
                incident.resolved_at, entry)
        if row is None:
            return "stale"  # an older revision arrived late: the ticket keeps the newer one
        if row["created"]:
            return "created"
        return "resolved" if incident.status == "resolved" else "updated"

    async def status(self, incident_id: str) -> str | None:
        async with self.store._pool().acquire() as con:
            return await con.fetchval(  # type: ignore[no-any-return]
                "SELECT status FROM incident_tickets WHERE incident_id = $1", incident_id)

    async def set_external_key(self, incident_id: str, key: str) -> None:
        async with self.store._pool().acquire() as con:
            await con.execute("UPDATE incident_tickets SET external_key = $2 WHERE incident_id = $1",
                              incident_id, key)

    async def external_key(self, incident_id: str) -> str | None:
        async with self.store._pool().acquire() as con:
            return await con.fetchval(  # type: ignore[no-any-return]
                "SELECT external_key FROM incident_tickets WHERE incident_id = $1", incident_id)


class JiraTickets:
    """Mirror of :class:`PostgresTickets` to Jira (REST API v2, basic auth with a token)."""

    def __init__(self, local: PostgresTickets, session: aiohttp.ClientSession, url: str,
                 project: str, user: str, token: str) -> None:
        self.local = local
        self.session = session
        self.url = url.rstrip("/")
        self.project = project
        self.auth = aiohttp.BasicAuth(user, token)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        async with self.session.request(method, f"{self.url}/rest/api/2/{path}", json=body,
                                        auth=self.auth) as r:
            text = await r.text()
            if r.status >= 300:
                raise RuntimeError(f"jira {method} {path}: HTTP {r.status}: {text[:300]}")
            return orjson.loads(text) if text else {}

    async def upsert(self, incident: Incident) -> str:
        incident = scrub_model(incident)
        what = await self.local.upsert(incident)
        key = await self.local.external_key(incident.incident_id)
        summary = f"[{incident.severity}] {incident.title}"[:250]
        if key is None and what != "stale":
            made = await self._call("POST", "issue", {"fields": {
                "project": {"key": self.project}, "summary": summary, "issuetype": {"name": "Incident"},
                "description": f"SRE Agent incident {incident.incident_id}; services: "
                               f"{', '.join(incident.services)}"}})
            key = str(made.get("key"))
            await self.local.set_external_key(incident.incident_id, key)
        elif key is not None and what in ("updated", "resolved"):
            await self._call("POST", f"issue/{key}/comment",
                             {"body": f"revision {incident.revision}: {incident.status}"})
            if what == "resolved":
                found = await self._call("GET", f"issue/{key}/transitions", None)
                ids = [t["id"] for t in found.get("transitions", [])
                       if str(t.get("name", "")).lower() in ("resolve", "resolve issue", "done")]
                if ids:
                    await self._call("POST", f"issue/{key}/transitions", {"transition": {"id": ids[0]}})
        return what

    async def status(self, incident_id: str) -> str | None:
        return await self.local.status(incident_id)

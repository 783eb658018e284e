"""Incident tickets: create / update / resolve, kept in PostgreSQL, mirrored to Jira.

:class:`TicketAdapter` is the interface (the seeds' TicketManager): ``upsert``
an incident as a ticket, ``status`` of one. :class:`PostgresTickets` is the
system of record (table ``incident_tickets``, created by the audit store's
migrations); with ``tickets.backend: jira``, :class:`JiraTickets` mirrors each
written revision to Jira with the ``jira`` client library (issue created on
the incident, comments on material updates, a transition on resolve) and keeps
the Jira key in the ticket row.
The executor reads the ticket status for its pre-action "is the incident still
open?" check, so every worker sees the same answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from ..config import TicketSettings
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
        """Idempotent per revision and status: a redelivered one (its writer killed after
        the write, before the audit record left) answers again what it did the first time."""
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
                       history = CASE WHEN incident_tickets.revision = EXCLUDED.revision
                                           AND incident_tickets.status = EXCLUDED.status
                                      THEN incident_tickets.history
                                      ELSE incident_tickets.history || EXCLUDED.history END,
                       updated_at = now()
                   WHERE incident_tickets.revision <= EXCLUDED.revision
                   RETURNING (xmax = 0 OR ((history -> 0 ->> 'revision')::int = $6
                                           AND history -> 0 ->> 'status' = $2)) AS created""",
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
    """Mirror of the incident tickets to Jira, with the ``jira`` client library.

    ``tickets.backend: jira`` builds one (in :class:`~sre_agent.streams.services.Services`);
    the ticket writer calls :meth:`mirror` after PostgreSQL took the revision:

    * no Jira key yet: the issue is looked up by its label ``sre-incident-<id>``
      (a create whose answer was lost is not made twice), else created
      (project, issue type, summary ``[SEVERITY] title``, description, labels);
      the key is kept in the ticket row (``external_key``);
    * a material change (severity, services, status) of a known issue: a comment;
    * resolved: a comment saying by whom and after how long, then the first
      available transition named in ``tickets.jira_resolve_transitions``.

    The client is synchronous (requests): calls run in a worker thread. Everything
    sent is redacted first (:func:`~sre_agent.processors.redact.scrub_model`).
    """

    def __init__(self, settings: TicketSettings, timeout: float = 10.0,
                 console_url: str | None = None, client: Any = None) -> None:
        self.settings = settings
        self.timeout = timeout
        self.console_url = console_url
        self._jira = client
        #: last mirrored signature per incident (comments only on material changes)
        self._last: OrderedDict[str, str] = OrderedDict()

    def _client(self) -> Any:
        if self._jira is None:
            from jira import JIRA

            s = self.settings
            assert s.jira_url and s.jira_user and s.jira_token is not None
            self._jira = JIRA(server=s.jira_url, basic_auth=(s.jira_user,
                                                             s.jira_token.get_secret_value()),
                              get_server_info=False, max_retries=0, timeout=self.timeout,
                              options={"rest_api_version": "2"})
        return self._jira

    @staticmethod
    def label(incident_id: str) -> str:
        return f"sre-incident-{incident_id}"[:255]

    def _description(self, inc: Incident) -> str:
        lines = [f"SRE Agent incident {inc.incident_id}", "",
                 f"* severity: {inc.severity}" + (f" (impact {inc.impact:.2f})"
                                                   if inc.impact is not None else ""),
                 *[f"** {r}" for r in inc.severity_reasons[:4]],
                 f"* services: {', '.join(inc.services)}",
                 f"* root service: {inc.root_service or '?'}",
                 f"* opened: {inc.opened_at:%Y-%m-%d %H:%M:%S} UTC"]
        if self.console_url:
            lines.append(f"* console: {self.console_url.replace('{incident_id}', inc.incident_id)}")
        return "\n".join(lines)

    def _find_or_create(self, inc: Incident) -> str:
        jira, s = self._client(), self.settings
        found = jira.search_issues(f'labels = "{self.label(inc.incident_id)}"', maxResults=1)
        if found:
            return str(found[0].key)
        issue = jira.create_issue(fields={
            "project": {"key": s.jira_project}, "issuetype": {"name": s.jira_issue_type},
            "summary": f"[{inc.severity.upper()}] {inc.title}"[:250],
            "description": self._description(inc),
            "labels": ["sre-agent", self.label(inc.incident_id)]}, prefetch=False)
        return str(issue.key)

    def _comment(self, key: str, text: str) -> None:
        self._client().add_comment(key, text)

    def _resolve(self, key: str) -> str | None:
        jira = self._client()
        wanted = [n.lower() for n in self.settings.jira_resolve_transitions]
        avail = {str(t["name"]).lower(): t["id"] for t in jira.transitions(key)}
        for name in wanted:
            if name in avail:
                jira.transition_issue(key, avail[name])
                return name
        return None  # already resolved, or the workflow names it differently

    @staticmethod
    def _sig(inc: Incident) -> str:
        return f"{inc.severity}|{inc.status == 'resolved'}|{','.join(sorted(inc.services))}"

    async def mirror(self, incident: Incident, what: str, local: PostgresTickets) -> dict[str, str]:
        """Mirror one ticket write (``created|updated|resolved``); return what was done."""
        inc = scrub_model(incident)
        iid = inc.incident_id
        done: dict[str, str] = {}
        key = await local.external_key(iid)
        if key is None:
            key = await asyncio.to_thread(self._find_or_create, inc)
            await local.set_external_key(iid, key)
            done["created"] = key
        elif self._last.get(iid) != self._sig(inc) and inc.status != "resolved":
            await asyncio.to_thread(self._comment, key, (
                f"Revision {inc.revision}: {inc.status}, severity {inc.severity}, services "
                f"{', '.join(inc.services)}"))
            done["commented"] = key
        if inc.status == "resolved" and (self._last.get(iid) or "").split("|")[1:2] != ["True"]:
            mins = ((inc.resolved_at - inc.opened_at).total_seconds() / 60
                    if inc.resolved_at else 0.0)
            by = f" by {inc.resolved_by}" if inc.resolved_by else " (signals recovered)"
            await asyncio.to_thread(self._comment, key, f"Resolved{by} after {mins:.0f} min.")
            moved = await asyncio.to_thread(self._resolve, key)
            done["resolved"] = moved or "no resolve transition available"
        self._last[iid] = self._sig(inc)
        self._last.move_to_end(iid)
        while len(self._last) > 10_000:
            self._last.popitem(last=False)
        return done

    async def status(self, incident_id: str, local: PostgresTickets) -> str | None:
        return await local.status(incident_id)

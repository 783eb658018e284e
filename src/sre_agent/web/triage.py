"""On-call triage over HTTP: acknowledge, assign, snooze, resolve; silences; runbooks.

* ``POST /api/incidents/{id}/{ack|unack|assign|snooze|resolve|comment}`` (operator)
* ``GET /api/silences`` (viewer), ``POST /api/silences`` (operator),
  ``DELETE /api/silences/{id}`` (operator: expire it now)
* ``GET /api/runbooks/{id}`` (viewer): a runbook the RCA named

Who acts is the authenticated caller (the Gate's principal, or the Slack user
id for ``/sre``), never a field of the request. Each act is one event on
``incident-triage`` (the notifier tells the incident's Slack thread and
PagerDuty; a resolve goes to the correlator that keeps the incident) or on the
compacted ``silences`` topic (every worker's correlator applies it), answered
once the broker has acknowledged it, and audited. Silences whose window is over
are marked expired by the leader worker (audited once).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from faust.web import Request, Response, View

from ..config import Settings
from ..readmodel.query import choice_param, page_params
from ..readmodel.views import SilenceRequest, SilenceView, TriageRequest
from ..schemas import Event, Silence, TriageEvent, new_id, utcnow
from ..sinks.knowledge import PACKAGED_RUNBOOKS, parse_runbook
from ..streams.audit_agent import emit_audit
from .auth import Principal
from .http import Api, BadRequest, json_body

__all__ = ["ACTIONS", "create_silence", "expire_silence", "register_triage", "triage"]

log = logging.getLogger(__name__)

ACTIONS = ("ack", "unack", "assign", "snooze", "resolve", "comment")
#: seconds a triage act waits for the broker's acknowledgement before answering 503
ACK_TIMEOUT = 15.0
#: the longest silence or maintenance window
MAX_SILENCE = timedelta(days=90)


async def _publish(api: Api, event: Event) -> None:
    try:
        await asyncio.wait_for(api.ctx.send_acked(event), ACK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - not recorded: the caller must retry
        log.warning("%s not acknowledged by Kafka: %s", event.TOPIC, exc)
        raise BadRequest("not recorded: Kafka did not acknowledge it; please retry",
                         status=503) from None


async def triage(api: Api, ref: str, action: str, actor: str, role: str, via: str,
                 comment: str = "", assignee: str | None = None,
                 minutes: float | None = None) -> TriageEvent:
    """Validate and publish one triage act; :class:`BadRequest` 4xx when it cannot apply."""
    if action not in ACTIONS:
        raise BadRequest(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", status=404)
    iid = api.model.find_incident(ref)
    rec = api.model.records.get(iid) if iid else None
    if rec is None or rec.incident is None:
        raise BadRequest(f"incident {ref!r} not found (or older than the read model keeps)",
                         status=404)
    inc = rec.incident
    if action == "assign" and assignee is None:
        raise BadRequest("assignee is required (\"\" unassigns)")
    if action == "snooze" and not minutes:
        raise BadRequest("minutes (how long to snooze, at most 7 days) is required")
    if action in ("ack", "snooze", "resolve") and inc.status == "resolved":
        raise BadRequest(f"incident {inc.incident_id} is already resolved", status=409)
    group = inc.group
    if action == "resolve" and not group:
        correlator = api.ctx.stages.correlator
        group = correlator.group_of(inc.root_service or (inc.services or ["unknown"])[0]) \
            if correlator is not None else (inc.root_service or None)
    ev = TriageEvent(incident_id=inc.incident_id, action=action, actor=actor,  # type: ignore[arg-type]
                     role=role, assignee=assignee, minutes=minutes, comment=comment,
                     group=group if action == "resolve" else None, via=via)  # type: ignore[arg-type]
    await _publish(api, ev)
    await emit_audit(api.ctx, actor, f"incident.{action}", inc.incident_id,
                     {"via": via, "role": role, "comment": comment[:500], "assignee": assignee,
                      "minutes": minutes, "triage_id": ev.event_id})
    api.model.update(ev)  # this replica's read model shows it at once
    log.info("incident %s: %s by %s", inc.incident_id, action, actor,
             extra={"incident_id": inc.incident_id})
    return ev


def _check_window(req: SilenceRequest) -> tuple[Any, Any]:
    now = utcnow()
    start = req.starts_at or now
    if req.ends_at is not None and req.duration_minutes is not None:
        raise BadRequest("give ends_at or duration_minutes, not both")
    if req.ends_at is None and req.duration_minutes is None:
        raise BadRequest("ends_at or duration_minutes is required (silences always expire)")
    end = req.ends_at or start + timedelta(minutes=req.duration_minutes or 0)
    if end <= start:
        raise BadRequest("ends_at must be after starts_at")
    if end <= now:
        raise BadRequest("the window is already over (ends_at is in the past)")
    if end - start > MAX_SILENCE:
        raise BadRequest(f"a silence lasts at most {MAX_SILENCE.days} days")
    for key, pattern in req.matchers.items():
        if not key.strip() or not pattern.strip():
            raise BadRequest("matchers need a name and a pattern")
    if all(p.strip("*") == "" for p in req.matchers.values()):
        raise BadRequest("a silence must narrow something: at least one matcher needs a "
                         "pattern other than '*'")
    return start, end


async def create_silence(api: Api, req: SilenceRequest, author: str, via: str) -> Silence:
    start, end = _check_window(req)
    s = Silence(silence_id=new_id()[:16], matchers=dict(req.matchers), starts_at=start,
                ends_at=end, author=author, comment=req.comment, kind=req.kind)
    await _publish(api, s)
    await emit_audit(api.ctx, author, "silence.created", s.silence_id,
                     {"via": via, "matchers": s.matchers, "starts_at": start.isoformat(),
                      "ends_at": end.isoformat(), "comment": s.comment[:500], "kind": s.kind})
    api.model.update(s)
    return s


async def expire_silence(api: Api, silence_id: str, actor: str, via: str) -> Silence:
    cur = api.model.silences.get(silence_id)
    if cur is None:
        raise BadRequest(f"silence {silence_id!r} not found", status=404)
    if cur.state == "expired":
        raise BadRequest(f"silence {silence_id} is already expired", status=409)
    now = utcnow()
    s = cur.model_copy(update={"state": "expired", "ends_at": min(now, cur.ends_at),
                               "expired_by": actor, "time": now, "event_id": new_id()})
    await _publish(api, s)
    await emit_audit(api.ctx, actor, "silence.expired", silence_id,
                     {"via": via, "matchers": s.matchers, "early": True})
    api.model.update(s)
    return s


def silence_view(api: Api, s: Silence) -> dict[str, Any]:
    now = utcnow()
    return SilenceView(**s.model_dump(), hits=api.model.silences.hits.get(s.silence_id, 0),
                       active=s.active_at(now)).model_dump(mode="json")


def runbook(settings: Settings, runbook_id: str) -> dict[str, Any]:
    """A runbook by id (its file name), from the configured or packaged folder."""
    if not runbook_id or "/" in runbook_id or "\\" in runbook_id or runbook_id.startswith("."):
        raise BadRequest(f"invalid runbook id {runbook_id!r}")
    folder = settings.knowledge.runbooks_dir or PACKAGED_RUNBOOKS
    path = folder / f"{runbook_id}.md"
    if not path.is_file():
        raise BadRequest(f"runbook {runbook_id!r} not found", status=404)
    rb = parse_runbook(path)
    url = settings.api.runbook_url.replace("{id}", runbook_id) if settings.api.runbook_url else None
    return {"id": runbook_id, "title": rb["title"], "body": rb["body"][:20_000], "url": url}


def register_triage(api: Api) -> None:
    app = api.ctx.app

    def who(principal: Principal | None) -> tuple[str, str]:
        assert principal is not None
        return f"api:{principal.user}", principal.role

    @app.page("/api/incidents/{incident_id}/{action}")
    class IncidentAct(View):
        @api.endpoint("incident_triage", "operator")
        async def post(self, request: Request, principal: Principal | None,
                       incident_id: str = "", action: str = "") -> Response:
            actor, role = who(principal)
            body: TriageRequest = await json_body(request, TriageRequest) \
                if request.headers.get("Content-Length", "0") not in ("", "0") else TriageRequest()
            ev = await triage(api, incident_id, action, actor, role, "api", body.comment,
                              body.assignee, body.minutes)
            return self.json({"accepted": True, "event_id": ev.event_id,
                              "incident_id": ev.incident_id, "action": ev.action,
                              "actor": actor}, status=202)

    @app.page("/api/silences")
    class Silences(View):
        @api.endpoint("silences", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            state = choice_param(request.query, "state", ("active", "all"), "active")
            items = api.model.silences.listing(utcnow(), include_expired=state == "all")
            limit, offset = page_params(request.query, 100)
            page = items[offset:offset + limit]
            nxt = offset + limit if offset + limit < len(items) else None
            return self.json({"total": len(items), "limit": limit, "offset": offset,
                              "next_offset": nxt, "items": [silence_view(api, s) for s in page]})

        @api.endpoint("silences_create", "operator")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            actor, _ = who(principal)
            req: SilenceRequest = await json_body(request, SilenceRequest)
            s = await create_silence(api, req, actor, "api")
            return self.json(silence_view(api, s), status=201)

    @app.page("/api/silences/{silence_id}")
    class SilenceOne(View):
        @api.endpoint("silence_expire", "operator")
        async def delete(self, request: Request, principal: Principal | None,
                         silence_id: str = "") -> Response:
            actor, _ = who(principal)
            s = await expire_silence(api, silence_id, actor, "api")
            return self.json(silence_view(api, s))

    @app.page("/api/runbooks/{runbook_id}")
    class Runbook(View):
        @api.endpoint("runbook", "viewer")
        async def get(self, request: Request, principal: Principal | None,
                      runbook_id: str = "") -> Response:
            return self.json(runbook(api.ctx.settings, runbook_id))

    @app.timer(10.0, on_leader=True)  # type: ignore[untyped-decorator]
    async def expire_ended_silences() -> None:
        """Mark silences whose window is over as expired (once: the leader does it)."""
        now = utcnow()
        for s in api.model.silences.ended(now):
            done = s.model_copy(update={"state": "expired", "time": now, "event_id": new_id()})
            try:
                await api.ctx.send(done)
                await emit_audit(api.ctx, "silence-keeper", "silence.expired", s.silence_id,
                                 {"matchers": s.matchers, "ends_at": s.ends_at.isoformat(),
                                  "early": False}, idempotency_key=f"silence-expired:{s.silence_id}")
            except Exception as exc:  # noqa: BLE001 - tried again at the next tick
                log.warning("marking silence %s expired failed: %s", s.silence_id, exc)
                continue
            api.model.update(done)


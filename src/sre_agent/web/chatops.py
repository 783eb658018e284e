"""ChatOps: the Slack slash command ``/sre``, verified with the signing secret.

Every command is audited (``chatops.<command>`` on the ``audit`` topic) with
its outcome. Votes go to ``approvals`` with ``source="slack"``: the approval
manager applies the plan's policy (roles, quorum), exactly as for buttons.
``fix`` never executes anything: it re-publishes the incident's latest RCA so
the planner proposes a plan through the normal risk policy.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal, cast

from faust.web import Request, Response, View

from ..readmodel import blocks
from ..readmodel.chatops import (
    COMMANDS,
    Command,
    CommandError,
    allowed,
    parse_command,
    slack_role,
    usage,
)
from ..schemas import Approval, AuditRecord, Feedback, SimilarCase, new_id, utcnow
from ..readmodel.views import DetectRequest, SilenceRequest
from .approvals import submit
from .http import Api, BadRequest, read_body
from .patterns import detect
from .status import status_payload
from .triage import create_silence, expire_silence, triage
from .views import pattern_search, submit_feedback

__all__ = ["register_chatops", "run_command"]

log = logging.getLogger(__name__)

#: Slack wants an answer within 3 s
SEARCH_TIMEOUT = 2.5


@dataclass(frozen=True, slots=True)
class _User:
    id: str
    name: str
    role: str | None
    channel: str

    @property
    def label(self) -> str:
        return self.name or self.id


async def _audit(
    api: Api, user: _User, cmd: str, subject: str, outcome: str, text: str, **details: Any
) -> None:
    await api.ctx.send(
        AuditRecord(
            actor=f"slack:{user.id}",
            action=f"chatops.{cmd}",
            subject=subject or "chatops",
            details={
                "text": text[:500],
                "user_name": user.name,
                "role": user.role,
                "channel": user.channel,
                "outcome": outcome,
                **details,
            },
        )
    )


async def _vote(api: Api, cmd: Command, user: _User) -> tuple[dict[str, Any], str, str]:
    pr = api.model.find_plan(cmd.ref)
    plan_id = pr.plan.plan_id if pr else cmd.ref
    # same identity as the interactive buttons (the Slack user id), so quorum counts a person once
    approval = Approval(
        plan_id=plan_id,
        decision=cast(Literal["approve", "reject"], cmd.name),
        user=user.id,
        role=cast(Literal["oncall", "sre", "lead", "admin"], user.role),
        source="slack",
        comment=f"slack user {user.label}" + (f": {cmd.text}" if cmd.text else ""),
        incident_id=pr.plan.incident_id if pr else None,
    )
    await submit(api, approval)
    log.info(
        "slack %s of plan %s by %s",
        cmd.name,
        plan_id,
        user.label,
        extra={"plan_id": plan_id, "incident_id": pr.plan.incident_id if pr else None},
    )
    known = (
        ""
        if pr
        else " (this plan is not in the agent's recent history; the approval manager decides)"
    )
    verb = "Approval" if cmd.name == "approve" else "Rejection"
    return (
        blocks.reply(
            f"{verb} of plan {plan_id} recorded for {user.label} ({user.role}). "
            f"The plan's policy decides when it is approved.{known}",
            in_channel=True,
        ),
        plan_id,
        "ok",
    )


async def _fix(api: Api, cmd: Command, user: _User) -> tuple[dict[str, Any], str, str]:
    iid = api.model.find_incident(cmd.ref)
    rec = api.model.records.get(iid) if iid else None
    if rec is None:
        return blocks.reply(f"Incident {cmd.ref} not found."), cmd.ref, "not_found"
    if rec.rca is None:
        return (
            blocks.reply(
                f"No root-cause analysis yet for {rec.incident_id}: nothing to plan from."
            ),
            rec.incident_id,
            "no_rca",
        )
    again = rec.rca.model_copy(update={"event_id": new_id(), "time": utcnow()})
    await api.ctx.send(again)
    log.info(
        "fix requested for %s by %s: RCA re-submitted to the planner",
        rec.incident_id,
        user.label,
        extra={"incident_id": rec.incident_id},
    )
    return (
        blocks.reply(
            f"Asked the planner for a fix of {rec.incident_id}. The plan follows the "
            "risk policy: it is executed only as its tier allows (approvals, dry-run, "
            "protected services never automatically).",
            in_channel=True,
        ),
        rec.incident_id,
        "ok",
    )


async def _triage(api: Api, cmd: Command, user: _User) -> tuple[dict[str, Any], str, str]:
    assignee = cmd.assignee
    if assignee == "me":
        assignee = f"slack:{user.id}" + (f" ({user.name})" if user.name else "")
    try:
        ev = await triage(api, cmd.ref, cmd.name, f"slack:{user.id}", user.role or "", "slack",
                          comment=cmd.text, assignee=assignee, minutes=cmd.minutes)
    except BadRequest as exc:
        return blocks.reply(str(exc)), cmd.ref, "not_found" if exc.status == 404 else "refused"
    what = {"ack": "acknowledged", "resolve": "resolved",
            "assign": f"assigned to {assignee or 'nobody'}",
            "snooze": f"snoozed for {cmd.minutes or 0:g} min"}[cmd.name]
    return (blocks.reply(f"Incident {ev.incident_id} {what} by {user.label}.", in_channel=True),
            ev.incident_id, "ok")


async def run_command(api: Api, text: str, user: _User) -> dict[str, Any]:
    """Parse, authorize, run and audit one command; return the Block Kit reply."""
    try:
        cmd = parse_command(text)
    except CommandError as exc:
        api.commands["invalid"] += 1
        await _audit(api, user, "invalid", "chatops", "invalid", text)
        return blocks.reply(str(exc))
    api.commands[cmd.name] += 1
    read_role = api.ctx.settings.slack.read_role
    if not allowed(cmd.name, user.role, read_role):
        await _audit(api, user, cmd.name, cmd.ref, "denied", text)
        needed = COMMANDS[cmd.name][1]
        needed = read_role if needed == "read" else needed
        return blocks.reply(
            f"Sorry {user.label}, `{cmd.name}` needs the {needed} role or higher "
            "(ask an admin to map your Slack user id in slack.user_roles)."
        )
    subject, outcome = cmd.ref, "ok"
    rm = api.model
    try:
        if cmd.name == "help":
            reply = blocks.reply(usage())
        elif cmd.name == "status":
            reply = blocks.status(rm.summary(), status_payload(api.ctx)["status"])
        elif cmd.name == "incidents":
            items = rm.incidents(status="open")
            reply = blocks.incident_list(items[:10], len(items))
        elif cmd.name == "rca":
            iid = rm.find_incident(cmd.ref)
            detail = rm.incident(iid) if iid else None
            subject = iid or cmd.ref
            if detail is None:
                reply, outcome = blocks.reply(f"Incident {cmd.ref} not found."), "not_found"
            else:
                reply = blocks.rca(detail)
        elif cmd.name == "pattern_search":
            subject = "knowledge"
            try:
                found = await pattern_search(api, cmd.text, 5)
            except BadRequest as exc:
                reply, outcome = blocks.reply(str(exc)), "unavailable"
            else:
                reply = blocks.patterns(cmd.text, [SimilarCase.model_validate(c) for c in found])
        elif cmd.name in ("approve", "reject"):
            reply, subject, outcome = await _vote(api, cmd, user)
        elif cmd.name == "feedback":
            iid = rm.find_incident(cmd.ref) or cmd.ref
            fb = Feedback(
                incident_id=iid,
                kind="rca",
                rating=cmd.rating,  # type: ignore[arg-type]
                user=f"slack:{user.label}",
                comment=cmd.text,
            )
            await submit_feedback(api, fb, actor=f"slack:{user.id}", via="slack")
            subject = iid
            reply = blocks.reply(f"Thanks {user.label}: feedback '{cmd.rating}' on {iid} recorded.")
        elif cmd.name in ("ack", "assign", "snooze", "resolve"):
            reply, subject, outcome = await _triage(api, cmd, user)
        elif cmd.name == "silence":
            subject = "silences"
            try:
                s = await create_silence(api, SilenceRequest(
                    matchers=cmd.matchers, starts_at=cmd.start, duration_minutes=cmd.minutes,
                    comment=cmd.text, kind="maintenance" if cmd.start else "silence"),
                    f"slack:{user.id}", "slack")
            except (BadRequest, ValueError) as exc:
                reply, outcome = blocks.reply(f"Not silenced: {exc}"), "invalid"
            else:
                subject = s.silence_id
                m = " ".join(f"{k}={v}" for k, v in s.matchers.items())
                reply = blocks.reply(
                    f"{s.kind.capitalize()} `{s.silence_id}` on {m} from {s.starts_at:%H:%M} to "
                    f"{s.ends_at:%Y-%m-%d %H:%M} UTC by {user.label}: {s.comment}. "
                    f"`/sre unsilence {s.silence_id}` ends it.", in_channel=True)
        elif cmd.name == "silences":
            reply = blocks.silences(rm.silences.listing(utcnow()))
        elif cmd.name == "unsilence":
            try:
                s = await expire_silence(api, cmd.ref, f"slack:{user.id}", "slack")
            except BadRequest as exc:
                reply, outcome = blocks.reply(str(exc)), "not_found"
            else:
                reply = blocks.reply(f"Silence `{s.silence_id}` expired by {user.label}.",
                                     in_channel=True)
        elif cmd.name == "detect":
            subject = cmd.ref or "detect"
            found = await detect(api, DetectRequest(service=cmd.ref or None, limit=5))
            reply = blocks.detected(found, cmd.ref or None)
        else:  # fix
            reply, subject, outcome = await _fix(api, cmd, user)
    except Exception:
        log.exception("chat command %s failed", cmd.name)
        reply, outcome = blocks.reply(f"`{cmd.name}` failed; see the agent's log."), "error"
    await _audit(api, user, cmd.name, subject, outcome, text)
    return reply


def register_chatops(api: Api) -> None:
    settings = api.ctx.settings.slack

    @api.ctx.app.page("/slack/commands")
    class SlackCommands(View):
        """Slack slash command endpoint (form-encoded, signed)."""

        @api.endpoint("slack_commands", "slack")
        async def post(self, request: Request, principal: Any = None) -> Response:
            body = await read_body(request)  # signed, hence UTF-8 (checked by the gate)
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8")).items()}
            uid, name = form.get("user_id", ""), form.get("user_name", "")
            if not uid:
                raise BadRequest("user_id is missing from the slash command payload")
            user = _User(uid, name[:128], slack_role(settings.user_roles, uid),
                         form.get("channel_id", "")[:64])
            return self.json(await run_command(api, form.get("text", "")[:4000], user))

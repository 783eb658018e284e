"""Votes on action plans: Slack buttons and the approvals REST API.

* ``POST /slack/interactions`` (Slack buttons; Slack signature)
* ``POST /api/approvals/{plan_id}/approve|reject`` (bearer token, role approver)
* ``GET /api/approvals/pending`` (role viewer)

A vote becomes a signed event on ``approvals``; the approval manager
(:mod:`sre_agent.streams.approval_agent`) owns the plan and decides, with the
voter's role taken from configuration. A vote is answered only once the broker
has acknowledged it (``202``), so an answered vote survives a crash of the
worker right after; when the broker does not acknowledge in time the answer is
``503`` and the vote may be sent again (one vote per person counts).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from faust.web import Request, Response, View

from ..processors.approvals import PlanState, VoterRoles, cast_vote, quorum_status
from ..readmodel.records import PlanRecord
from ..schemas import Approval, utcnow
from ..sinks.slack import InteractionError, parse_interaction
from ..streams.audit_agent import emit_audit
from .auth import Principal
from .http import Api, BadRequest, read_body

__all__ = ["ACK_TIMEOUT", "pending_view", "register", "replayed"]

log = logging.getLogger(__name__)

#: seconds a vote waits for the broker's acknowledgement before answering 503
ACK_TIMEOUT = 15.0
MAX_COMMENT = 2000


def pending_view(state: PlanState) -> dict[str, Any]:
    p = state.plan
    _, progress = quorum_status(p.policy, state.votes)
    return {"plan_id": p.plan_id, "incident_id": p.incident_id, "cause_type": p.cause_type,
            "service": p.service, "summary": p.summary, "risk_score": p.risk_score,
            "risk_tier": p.risk_tier, "policy": p.policy, "quorum": progress,
            "votes": [v.model_dump(mode="json") for v in state.votes],
            "expires_at": p.expires_at.isoformat() if p.expires_at else None,
            "steps": [{"action": s.action, "target": s.target.ref(), "risk": s.risk}
                      for s in p.steps],
            "evidence": p.evidence, "similar": p.similar}


def replayed(rec: PlanRecord, roles: VoterRoles | None = None) -> PlanState:
    """A plan's state replayed from what the read model saw of it (roles from config)."""
    state = PlanState.open(rec.plan)
    now = utcnow()
    for vote in rec.approvals:
        role = roles.role_of(vote.source, vote.user) if roles is not None else vote.role
        if role is not None:
            cast_vote(state, vote.model_copy(update={"role": role}), now)
    if rec.results:
        state.status = "failed" if rec.results[-1].status == "failed" else "completed"
    return state


async def submit(api: Api, vote: Approval) -> None:
    """Produce the vote (signed) and wait for the broker's acknowledgement."""
    try:
        await asyncio.wait_for(api.ctx.send_acked(vote), ACK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - not recorded: the voter must retry
        log.warning("vote on %s not acknowledged: %s", vote.plan_id, exc)
        raise BadRequest("the vote could not be recorded (Kafka did not acknowledge it); "
                         "please retry", status=503) from None


def register(api: Api) -> None:
    ctx = api.ctx
    app, settings = ctx.app, ctx.settings
    roles = VoterRoles.from_settings(settings)

    def table() -> Any:
        return ctx.tables["approval_state"]

    def load(plan_id: str) -> PlanState | None:
        raw = table().get(plan_id)
        return PlanState.model_validate_json(raw) if raw else None

    def replicated_state(plan_id: str) -> PlanState | None:
        """The state of a plan another replica owns: with several workers the table
        holds only this worker's partitions, the read model every plan (each replica
        projects all partitions). The owner's approval manager stays the arbiter."""
        rec = api.model.find_plan(plan_id)
        return replayed(rec, roles) if rec is not None and rec.plan.plan_id == plan_id else None

    @app.page("/slack/interactions")
    class SlackInteractions(View):
        """Slack interactive-button callbacks (form-encoded, signed)."""

        @api.endpoint("slack_interactions", "slack")
        async def post(self, request: Request, principal: Principal | None) -> Response:
            body = await read_body(request)
            try:
                act = parse_interaction(body)
            except InteractionError as exc:
                raise BadRequest(str(exc)) from None
            uid = act["user_id"]
            role = roles.role_of("slack", uid) if uid else None
            label = act["user_name"] or uid
            if role is None:  # roles by Slack user id only: a name proves nothing
                await emit_audit(ctx, f"slack:{uid or 'unknown'}", "vote.unauthorized",
                                 act["plan_id"], {"source": "slack", "slack_user": uid,
                                                  "user_name": act["user_name"][:128]})
                return self.json({"response_type": "ephemeral", "replace_original": False,
                                  "text": "You are not an approver for SRE Agent plans."})
            known = load(act["plan_id"]) or replicated_state(act["plan_id"])
            await submit(api, Approval(plan_id=act["plan_id"], decision=act["decision"],  # type: ignore[arg-type]
                                       user=uid, role=role, source="slack",  # type: ignore[arg-type]
                                       comment=f"slack user {label}"[:MAX_COMMENT],
                                       incident_id=known.plan.incident_id if known else None))
            return self.json({"response_type": "ephemeral", "replace_original": False,
                              "text": f"Recorded your {act['decision']} of {act['plan_id']}."})

    @app.page("/api/approvals/pending")
    class Pending(View):
        @api.endpoint("approvals_pending", "viewer")
        async def get(self, request: Request, principal: Principal | None) -> Response:
            now = utcnow()
            items, local = [], set()
            for plan_id, raw in list(table().items()):
                state = PlanState.model_validate_json(raw)
                local.add(plan_id)
                exp = state.plan.expires_at
                if state.status == "pending" and (exp is None or exp > now):
                    items.append(pending_view(state))
            for rec in api.model.plans(pending_only=True):
                exp = rec.plan.expires_at
                if rec.plan.plan_id not in local and (exp is None or exp > now):
                    state = replayed(rec, roles)  # another replica owns it
                    if state.status == "pending":
                        items.append(pending_view(state))
            items.sort(key=lambda x: -x["risk_score"])
            return self.json({"items": items, "count": len(items)})

    @app.page("/api/approvals/{plan_id}/{decision}")
    class Decide(View):
        @api.endpoint("approvals_decide", "approver")
        async def post(self, request: Request, principal: Principal | None, plan_id: str = "",
                       decision: str = "") -> Response:
            assert principal is not None
            if decision not in ("approve", "reject"):
                return self.json({"error": "use /approve or /reject"}, status=404)
            comment = ""
            raw = await read_body(request)
            if raw.strip():
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise BadRequest("body must be a JSON object") from None
                if not isinstance(doc, dict):
                    raise BadRequest("body must be a JSON object")
                comment = str(doc.get("comment") or doc.get("reason") or "")
            state = load(plan_id) or replicated_state(plan_id)
            if state is None:
                return self.json({"error": f"unknown plan {plan_id}"}, status=404)
            if state.status != "pending":
                return self.json({"error": f"plan {plan_id} is {state.status}",
                                  "status": state.status}, status=409)
            role = roles.role_of("api", principal.user)
            if role is None:
                return self.json({"error": f"{principal.user} is not a configured approver"},
                                 status=403)
            vote = Approval(plan_id=plan_id, decision=decision, user=principal.user,  # type: ignore[arg-type]
                            role=role, source="api", comment=comment[:MAX_COMMENT],  # type: ignore[arg-type]
                            incident_id=state.plan.incident_id)
            await submit(api, vote)
            return self.json({"status": "submitted", "plan_id": plan_id, "user": principal.user,
                              "role": role, "decision": decision, "event_id": vote.event_id},
                             status=202)

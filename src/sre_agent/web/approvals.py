"""Votes on action plans: Slack buttons and the approvals REST API.

* ``POST /slack/interactions`` (Slack buttons; signature verified)
* ``POST /api/approvals/{plan_id}/approve|reject`` (bearer token, role approver)
* ``GET /api/approvals/pending`` (role viewer)

A vote becomes an event on ``approvals``; the approval manager
(:mod:`sre_agent.streams.approval_agent`) owns the plan and decides.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.web import Request, Response, View
from slack_sdk.signature import SignatureVerifier

from ..processors.approvals import PlanState, cast_vote, quorum_status
from ..readmodel.records import PlanRecord
from ..schemas import Approval, utcnow
from ..sinks.slack import InteractionError, check_signature, parse_interaction
from ..streams.audit_agent import emit_audit
from ..streams.context import StreamContext
from .auth import Authenticator

__all__ = ["pending_view", "register", "replayed"]

VOTING_ROLES = ("oncall", "sre", "lead", "admin")


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


def replayed(rec: PlanRecord) -> PlanState:
    """A plan's state replayed from what the read model saw of it."""
    state = PlanState.open(rec.plan)
    now = utcnow()
    for vote in rec.approvals:
        cast_vote(state, vote, now)
    if rec.results:
        state.status = "failed" if rec.results[-1].status == "failed" else "completed"
    return state


def register(ctx: StreamContext) -> None:
    app, settings = ctx.app, ctx.settings
    auth = Authenticator(settings.api)
    secret = settings.slack.signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret is not None else None

    def table() -> Any:
        return ctx.tables["approval_state"]

    def load(plan_id: str) -> PlanState | None:
        raw = table().get(plan_id)
        return PlanState.model_validate_json(raw) if raw else None

    def replicated_state(plan_id: str) -> PlanState | None:
        """The state of a plan another replica owns: with several workers the table
        holds only this worker's partitions, the read model every plan (each replica
        projects all partitions). The owner's approval manager stays the arbiter."""
        api = ctx.state.get("api")
        rec = api.model.find_plan(plan_id) if api is not None else None
        return replayed(rec) if rec is not None and rec.plan.plan_id == plan_id else None

    async def submit(plan_id: str, decision: str, user: str, role: str, source: str,
                     comment: str = "") -> Approval:
        vote = Approval(plan_id=plan_id, decision=decision, user=user, role=role,  # type: ignore[arg-type]
                        source=source, comment=comment[:2000])  # type: ignore[arg-type]
        await ctx.send(vote)
        return vote

    @app.page("/slack/interactions")
    class SlackInteractions(View):
        async def post(self, request: Request) -> Response:
            body = await request.read()
            if verifier is None:
                return self.json({"error": "slack.signing_secret is not configured"}, status=503)
            problem = check_signature(verifier, body, request.headers)
            if problem:
                await emit_audit(ctx, "slack", "slack.signature_rejected", "slack/interactions", {
                    "reason": problem, "remote": request.remote,
                    "timestamp": request.headers.get("X-Slack-Request-Timestamp"),
                    "bytes": len(body)})
                return self.json({"error": f"invalid Slack signature: {problem}"}, status=401)
            try:
                act = parse_interaction(body)
            except InteractionError as exc:
                return self.json({"error": str(exc)}, status=400)
            roles = settings.slack.user_roles
            role = roles.get(act["user_id"]) or roles.get(act["user_name"])
            user = act["user_name"] or act["user_id"]
            if role not in VOTING_ROLES:
                await emit_audit(ctx, user or "unknown", "vote.unauthorized", act["plan_id"], {
                    "source": "slack", "slack_user": act["user_id"], "role": role})
                return self.json({"response_type": "ephemeral", "replace_original": False,
                                  "text": "You are not an approver for SRE Agent plans."})
            await submit(act["plan_id"], act["decision"], act["user_id"], role, "slack",
                         comment=f"slack user {user}")
            return self.json({"response_type": "ephemeral", "replace_original": False,
                              "text": f"Recorded your {act['decision']} of {act['plan_id']}."})

    @app.page("/api/approvals/pending")
    class Pending(View):
        async def get(self, request: Request) -> Response:
            who = auth.identify(request.headers.get("Authorization"))
            if who is None:
                return self.json({"error": "missing or invalid bearer token"}, status=401)
            now = utcnow()
            items, local = [], set()
            for plan_id, raw in list(table().items()):
                state = PlanState.model_validate_json(raw)
                local.add(plan_id)
                exp = state.plan.expires_at
                if state.status == "pending" and (exp is None or exp > now):
                    items.append(pending_view(state))
            api = ctx.state.get("api")
            for rec in (api.model.plans(pending_only=True) if api is not None else []):
                exp = rec.plan.expires_at
                if rec.plan.plan_id not in local and (exp is None or exp > now):
                    state = replayed(rec)  # another replica owns it
                    if state.status == "pending":
                        items.append(pending_view(state))
            items.sort(key=lambda x: -x["risk_score"])
            return self.json({"items": items, "count": len(items)})

    @app.page("/api/approvals/{plan_id}/{decision}")
    class Decide(View):
        async def post(self, request: Request, plan_id: str, decision: str) -> Response:
            if decision not in ("approve", "reject"):
                return self.json({"error": "use /approve or /reject"}, status=404)
            who = auth.identify(request.headers.get("Authorization"))
            if who is None:
                return self.json({"error": "missing or invalid bearer token"}, status=401)
            if not who.allows("approver"):
                return self.json({"error": f"role {who.role} may not vote; approver needed"},
                                 status=403)
            comment = ""
            raw = await request.read()
            if raw.strip():
                try:
                    doc = orjson.loads(raw)
                    comment = str(doc.get("comment") or doc.get("reason") or "") \
                        if isinstance(doc, dict) else ""
                except orjson.JSONDecodeError:
                    return self.json({"error": "body must be JSON"}, status=400)
            state = load(plan_id) or replicated_state(plan_id)
            if state is None:
                return self.json({"error": f"unknown plan {plan_id}"}, status=404)
            if state.status != "pending":
                return self.json({"error": f"plan {plan_id} is {state.status}",
                                  "status": state.status}, status=409)
            role = settings.actions.approvers.get(who.user) or ""
            if role not in VOTING_ROLES:
                role = "admin" if who.role == "admin" else "oncall"
            vote = await submit(plan_id, decision, who.user, role, "api", comment)
            return self.json({"status": "submitted", "plan_id": plan_id, "user": who.user,
                              "role": role, "decision": decision, "event_id": vote.event_id},
                             status=202)

"""action-plans + approvals + action-results -> sre-actions: the approval manager.

One agent reads the three topics (all keyed by plan id, so co-partitioned with
the ``approval_state`` table) and runs each plan's state machine
(:mod:`sre_agent.processors.approvals`): pending plans are posted to Slack with
Approve/Reject buttons (and WeCom/PagerDuty when configured), votes are checked
against the tier's quorum, and an approved (or AUTO) plan's steps are handed to
the executor one at a time on ``sre-actions`` — the next step only after the
previous one's result succeeded. A timer marks overdue plans expired by sending
the plan with ``status=expired`` back through ``action-plans``.

Web views: ``POST /slack/interactions`` (Slack buttons; signature verified),
``POST /api/approvals/{plan_id}/approve|reject`` (bearer token, role approver),
``GET /api/approvals/pending`` (role viewer).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import orjson
from faust.web import Request, Response, View
from slack_sdk.signature import SignatureVerifier

from ..processors.approvals import (
    PlanState,
    VoteOutcome,
    cast_vote,
    expire_if_due,
    quorum_status,
    record_result,
)
from ..readmodel.records import PlanRecord
from ..schemas import ActionPlan, ActionResult, Approval, SreAction, utcnow
from ..sinks.breakers import breaker_health
from ..sinks.notify import Notice, Notifier
from ..sinks.slack import InteractionError, SlackApprovals, check_signature, parse_interaction
from .audit_agent import emit_audit
from .auth import Authenticator
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)

VOTING_ROLES = ("oncall", "sre", "lead", "admin")
#: seconds subtracted from the pre-post mark: the history lookup tolerates this much
#: clock difference between the worker and Slack
POST_CLOCK_SLACK = 300.0


def action_for(state: PlanState, index: int, dry_run: bool) -> SreAction:
    plan = state.plan
    step = plan.steps[index]
    key = hashlib.sha256(f"{plan.plan_id}:{index}:{step.target.ref()}".encode()).hexdigest()
    approved_by = state.approvers() or [f"policy:{plan.policy}"]
    return SreAction(action_id=f"{plan.plan_id}-s{index}", idempotency_key=key,
                     plan_id=plan.plan_id, incident_id=plan.incident_id, step_index=index,
                     step=step, approved_by=approved_by, policy=plan.policy, dry_run=dry_run)


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


def register(ctx: StreamContext) -> None:
    app, settings = ctx.app, ctx.settings
    table = ctx.tables.declare("approval_state", help="plan id -> approval state (JSON)")
    slack = SlackApprovals.from_settings(settings.slack)
    notifier = Notifier(settings.notify)
    auth = Authenticator(settings.api)
    secret = settings.slack.signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret is not None else None
    channel = app.topic(*(settings.topic(n) for n in ("action-plans", "approvals", "action-results")),
                        key_serializer="raw", value_serializer="raw")
    results_topic = settings.topic("action-results")
    approvals_topic = settings.topic("approvals")
    expiring: set[str] = set()
    if slack is not None:
        ctx.stats.health["slack"] = breaker_health(slack.guard)
    #: plans re-offered for posting once; cleared when a post attempt was made
    reposting: set[str] = set()

    def load(plan_id: str) -> PlanState | None:
        raw = table.get(plan_id)
        return PlanState.model_validate_json(raw) if raw else None

    def save(state: PlanState) -> None:
        table[state.plan.plan_id] = state.model_dump_json().encode()

    async def notify(state: PlanState, title: str, text: str, resolve: bool = False) -> None:
        if not notifier.enabled:
            return
        p = state.plan
        sent = await notifier.add(Notice(title=title, text=text, dedup_key=p.plan_id,
                                         severity="critical" if p.status == "blocked" else p.severity,
                                         resolve=resolve, details={"incident": p.incident_id,
                                                                   "policy": p.policy}))
        await emit_audit(ctx, "notifier", "notify.sent", p.plan_id, {"channels": sent, "title": title})

    async def post_request(state: PlanState) -> None:
        """Post the plan to Slack once, also across a crash mid-post.

        Before posting, ``{"posting": t}`` is saved and flushed to the changelog; the
        ts is saved after. A worker taking over a plan still marked ``posting`` (the
        previous owner died, outcome unknown) looks the message up by its metadata in
        the channel history and posts only if it is not there.
        """
        assert slack is not None
        plan = state.plan
        if state.slack.get("posting"):
            try:
                found = await slack.find(plan.plan_id, oldest=float(state.slack["posting"]))
            except Exception as exc:  # noqa: BLE001 - cannot tell: post (at least once)
                log.warning("slack history lookup for %s failed: %s", plan.plan_id, exc)
                found = None
            if found is not None:
                state.slack = found
                save(state)
                await emit_audit(ctx, "approval-manager", "slack.reconciled", plan.plan_id,
                                 {"channel": found["channel"], "ts": found["ts"]})
                return
        reposting.discard(plan.plan_id)
        state.slack = {"posting": f"{time.time() - POST_CLOCK_SLACK:.6f}"}
        save(state)
        await app.producer.flush()  # the marker is in the changelog before Slack sees a post
        try:
            state.slack = await slack.post(plan)
            await emit_audit(ctx, "approval-manager", "slack.posted", plan.plan_id,
                             {"channel": state.slack.get("channel"), "ts": state.slack.get("ts"),
                              "status": state.status})
        except Exception as exc:  # noqa: BLE001 - the plan still waits for API votes
            # the marker stays: a timed-out post may have landed, the next try looks first
            log.warning("slack post of %s failed: %s", plan.plan_id, exc)
            await emit_audit(ctx, "approval-manager", "slack.failed", plan.plan_id,
                             {"error": str(exc)[:300]})
        ctx.stats.health["slack"] = breaker_health(slack.guard)
        save(state)

    async def resume(state: PlanState) -> None:
        """Finish what a crashed owner of this plan left half done (on any redelivered
        event): a post still in flight (or one that failed: Slack was down), or an
        executable step never handed over (the executor's idempotency key makes a second
        copy of a step harmless)."""
        if slack is not None and "ts" not in state.slack and state.status in ("pending",
                                                                              "blocked"):
            await post_request(state)  # in flight when the owner died, or failed earlier
        if (state.executable and state.next_step < len(state.plan.steps)
                and state.next_step not in state.requested
                and state.next_step not in state.step_status):
            await emit_step(state)

    async def slack_update(state: PlanState, note: str = "") -> None:
        if slack is None or "ts" not in state.slack:
            return
        try:
            await slack.update(state.slack, state.plan, state.status, note)
        except Exception as exc:  # noqa: BLE001 - the decision stands without the message update
            log.warning("slack update of %s failed: %s", state.plan.plan_id, exc)

    async def emit_step(state: PlanState) -> None:
        action = action_for(state, state.next_step, settings.actions.dry_run)
        await ctx.send(action)
        await emit_audit(ctx, "approval-manager", "action.requested", action.action_id, {
            "plan_id": state.plan.plan_id, "step_index": action.step_index,
            "action": action.step.action, "target": action.step.target.ref(),
            "approved_by": action.approved_by, "policy": action.policy, "dry_run": action.dry_run},
            idempotency_key=action.idempotency_key)
        state.requested.append(action.step_index)
        save(state)

    async def on_plan(plan: ActionPlan) -> None:
        state = load(plan.plan_id)
        if state is not None:
            if plan.status == "expired" and expire_if_due(state, utcnow()):
                save(state)
                await emit_audit(ctx, "approval-manager", "plan.expired", plan.plan_id,
                                 {"votes": len(state.votes)})
                await slack_update(state, "Expired before reaching its quorum.")
            reposting.discard(plan.plan_id)
            await resume(state)
            return  # a redelivered or repeated plan: already being handled
        if plan.status == "expired":
            return
        state = PlanState.open(plan)
        if state.status == "auto":
            state.decided_at = utcnow()
            save(state)
            await emit_audit(ctx, "approval-manager", "plan.auto", plan.plan_id,
                             {"tier": plan.risk_tier, "reason": plan.policy_reason})
            await emit_step(state)
            return
        if slack is not None:
            await post_request(state)
        save(state)
        if state.status == "blocked":
            await emit_audit(ctx, "approval-manager", "plan.blocked", plan.plan_id,
                             {"reason": plan.policy_reason, "protected": plan.protected})
            await notify(state, f"Plan BLOCKED (diagnosis only): {plan.cause_type} on {plan.service}",
                         plan.policy_reason)
        else:
            await emit_audit(ctx, "approval-manager", "approval.requested", plan.plan_id,
                             {"policy": plan.policy, "tier": plan.risk_tier,
                              "expires_at": plan.expires_at.isoformat() if plan.expires_at else None})
            await notify(state, f"Approval needed ({plan.risk_tier}, {plan.policy})",
                         f"{plan.cause_type} on {plan.service}: plan {plan.plan_id}")

    async def on_vote(vote: Approval) -> None:
        state = load(vote.plan_id)
        who = {"user": vote.user, "role": vote.role, "decision": vote.decision,
               "source": vote.source, "comment": vote.comment}
        if state is None:
            await emit_audit(ctx, vote.user, "vote.refused", vote.plan_id,
                             {**who, "reason": "unknown plan"})
            return
        await resume(state)
        out: VoteOutcome = cast_vote(state, vote, utcnow())
        save(state)
        await emit_audit(ctx, vote.user, "vote.cast" if out.accepted else "vote.refused",
                         vote.plan_id, {**who, "reason": out.reason, "status": state.status})
        if not out.decided:
            if out.accepted:
                await slack_update(state, f"{vote.user} ({vote.role}) approved: {out.reason}")
            return
        await emit_audit(ctx, "approval-manager", f"plan.{state.status}", vote.plan_id,
                         {"approvers": state.approvers(), "by": vote.user})
        await slack_update(state, f"{state.status} — last vote by {vote.user} ({vote.role})")
        if state.status == "approved":
            await emit_step(state)

    async def on_result(res: ActionResult) -> None:
        state = load(res.plan_id)
        if state is None:
            return
        recorded = len(state.step_status)
        nxt = record_result(state, res.step_index, res.status)
        if len(state.step_status) == recorded:  # a redelivered or stray result
            await resume(state)
            return
        save(state)
        if nxt is not None:
            await emit_step(state)
        elif state.status in ("completed", "failed"):
            await emit_audit(ctx, "approval-manager", f"plan.{state.status}", res.plan_id,
                             {"steps": {str(k): v for k, v in state.step_status.items()}})
            await slack_update(state, f"Step {res.step_index + 1}: {res.status} — {res.detail}")
            if state.plan.policy == "AUTO" or state.status == "failed":
                await notify(state, f"Plan {state.status}: {state.plan.cause_type} on "
                                    f"{state.plan.service}", res.detail)

    @app.agent(channel, name="approval-manager")
    async def approval_manager(stream: Any) -> None:
        async for event in stream.events():
            topic = event.message.topic
            if topic == approvals_topic:
                vote = await ctx.decode(Approval, event, stage="approval-manager")
                if vote is not None:
                    await on_vote(vote)
            elif topic == results_topic:
                res = await ctx.decode(ActionResult, event, stage="approval-manager")
                if res is not None:
                    await on_result(res)
            else:
                plan = await ctx.decode(ActionPlan, event, stage="approval-manager")
                if plan is not None:
                    await on_plan(plan)

    @app.timer(5.0)
    async def expire_overdue() -> None:
        now = utcnow()
        for plan_id, raw in list(table.items()):
            if plan_id in expiring or not raw:
                continue
            state = PlanState.model_validate_json(raw)
            exp = state.plan.expires_at
            if state.status == "pending" and exp is not None and now >= exp:
                expiring.add(plan_id)
                await ctx.send(state.plan.model_copy(update={"status": "expired"}))

    @app.timer(30.0)
    async def repost_unposted() -> None:
        """Plans whose Slack post failed go round again (through ``action-plans``, so
        their owner's stream handles them) once the breaker lets calls through; the
        retry first looks for the message, in case the failed post landed after all."""
        if slack is None or slack.guard.breaker.state == "open":
            return
        now = utcnow()
        for plan_id, raw in list(table.items()):
            if not raw:
                continue
            state = PlanState.model_validate_json(raw)
            exp = state.plan.expires_at
            if (state.status == "pending" and "ts" not in state.slack
                    and plan_id not in reposting and (exp is None or exp > now)):
                reposting.add(plan_id)
                await ctx.send(state.plan)

    # ------------------------------------------------------------------ web views
    def replayed(rec: PlanRecord) -> PlanState:
        """A plan's state replayed from what the read model saw of it."""
        state = PlanState.open(rec.plan)
        now = utcnow()
        for vote in rec.approvals:
            cast_vote(state, vote, now)
        if rec.results:
            state.status = "failed" if rec.results[-1].status == "failed" else "completed"
        return state

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
            for plan_id, raw in list(table.items()):
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

    @app.on_before_shutdown.connect
    async def _close(app: Any, **kw: Any) -> None:
        await notifier.close()

"""action-plans + approvals + action-results -> sre-actions: the approval manager.

One agent reads the three topics (all keyed by plan id, so co-partitioned with
the ``approval_state`` table) and runs each plan's state machine
(:mod:`sre_agent.processors.approvals`): pending plans are posted to Slack with
Approve/Reject buttons (and WeCom/PagerDuty when configured), votes are checked
against the tier's quorum, and an approved (or AUTO) plan's steps are handed to
the executor one at a time on ``sre-actions`` — the next step only after the
previous one's result succeeded. A timer marks overdue plans expired by sending
the plan with ``status=expired`` back through ``action-plans``.

Its web views (Slack buttons, the approvals REST API) are in :mod:`sre_agent.web.approvals`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any


from ..processors.approvals import (
    PlanState,
    VoteOutcome,
    cast_vote,
    expire_if_due,
    quorum_status,
    record_result,
)
from ..schemas import ActionPlan, ActionResult, Approval, SreAction, utcnow
from ..sinks.breakers import breaker_health
from ..sinks.notify import Notice, Notifier
from ..sinks.slack import SlackApprovals
from .audit_agent import emit_audit
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


def register(ctx: StreamContext) -> None:
    app, settings = ctx.app, ctx.settings
    table = ctx.tables.declare("approval_state", help="plan id -> approval state (JSON)")
    slack = SlackApprovals.from_settings(settings.slack)
    notifier = Notifier(settings.notify)
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

    @app.on_before_shutdown.connect
    async def _close(app: Any, **kw: Any) -> None:
        await notifier.close()

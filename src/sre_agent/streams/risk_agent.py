"""rca-results -> action-plans: playbook, risk score, policy (all audited).

Playbooks are loaded and validated when the stage is wired, so a bad playbook
stops the worker at start with an error naming the file and the field. When a
Kubernetes/AWS back-end is enabled, each step's target is observed first, so the
plan records what it assumes (uid, revision) and the risk sees the replicas.

A plan answers one diagnosis: the stage keeps each incident's latest plan (table
``incident_plan``, keyed like ``rca-results`` by incident id) and, when a later
result of the incident changes the diagnosis (:func:`superseded_reason`), sends
the older plan back through ``action-plans`` with ``status=superseded``; the
approval manager closes it if it still waits for votes (audit, Slack update,
notice), so a stale plan can no longer be approved.
"""

from __future__ import annotations

import logging
from typing import Any

from ..processors.planner import Planner, superseded_reason
from ..schemas import ActionPlan, RcaResult, new_id, utcnow
from .audit_agent import emit_audit
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    planner = Planner.from_settings(ctx.settings.actions)
    targets = ctx.services.targets
    latest = ctx.tables.declare("incident_plan", help="incident id -> its latest plan (JSON)")

    async def supersede(rca: RcaResult, plan: ActionPlan | None) -> None:
        """Replace the incident's previous plan if this diagnosis makes it stale."""
        raw = latest.get(rca.incident_id)
        previous = ActionPlan.model_validate_json(raw) if raw else None
        why = superseded_reason(previous, rca, plan, ctx.settings.actions.min_confidence) \
            if previous is not None else None
        if previous is not None and why is not None:
            by = plan.plan_id if plan is not None else None
            await ctx.send(previous.model_copy(update={
                "status": "superseded", "superseded_by": by, "superseded_reason": why,
                "time": utcnow(), "event_id": new_id()}))
            await emit_audit(ctx, "risk-planner", "plan.superseded", previous.plan_id,
                             {"incident_id": rca.incident_id, "superseded_by": by,
                              "reason": why})
            log.info("plan %s of %s superseded: %s", previous.plan_id, rca.incident_id, why)
        if plan is not None:
            latest[rca.incident_id] = plan.model_dump_json().encode()
        elif why is not None:
            del latest[rca.incident_id]

    @ctx.app.agent(ctx.topics["rca-results"], name="risk-planner")
    async def risk_planner(stream: Any) -> None:
        async for event in stream.events():
            rca = await ctx.decode(RcaResult, event, stage="risk-planner")
            if rca is None:
                continue
            draft = planner.draft(rca)
            if draft is None:
                await supersede(rca, None)
                causes = [f"{h.cause_type}@{h.service}:{h.confidence:.2f}" for h in rca.hypotheses]
                await emit_audit(ctx, "risk-planner", "plan.none", rca.incident_id,
                                 {"reason": "no playbook covers a hypothesis above "
                                            f"{ctx.settings.actions.min_confidence}",
                                  "hypotheses": causes[:5]})
                continue
            observed: dict[int, dict[str, Any]] = {}
            for i, step in enumerate(draft.steps):
                if not targets.available(step):
                    continue
                try:
                    observed[i] = await targets.observe(step)
                except Exception as exc:  # noqa: BLE001 - plan anyway; the executor re-checks
                    log.warning("observing %s failed: %s", step.target.ref(), exc)
                    observed[i] = {"error": str(exc)[:200]}
            raw = latest.get(rca.incident_id)
            plan = planner.finalize(draft, observed, utcnow(),
                                    ActionPlan.model_validate_json(raw) if raw else None)
            await supersede(rca, plan)
            await ctx.send(plan)
            await emit_audit(ctx, "risk-planner", "plan.created", plan.plan_id, {
                "incident_id": plan.incident_id, "playbook": plan.playbook,
                "cause_type": plan.cause_type, "service": plan.service,
                "confidence": plan.confidence,
                "steps": [{"action": s.action, "target": s.target.ref(), "uid": s.target.uid,
                           "expect": s.expect, "risk": s.risk} for s in plan.steps]})
            await emit_audit(ctx, "policy", "policy.decided", plan.plan_id, {
                "risk_score": plan.risk_score, "tier": plan.risk_tier, "policy": plan.policy,
                "protected": plan.protected, "reason": plan.policy_reason,
                "factors": plan.risk_factors, "status": plan.status})
            log.info("plan %s for %s: %s %s (%.2f) %s", plan.plan_id, plan.incident_id,
                     plan.playbook, plan.risk_tier, plan.risk_score, plan.policy,
                     extra={"plan_id": plan.plan_id, "incident_id": plan.incident_id})

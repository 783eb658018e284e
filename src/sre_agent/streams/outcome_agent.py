"""action-results -> feedback: verified outcomes of executed actions close the learning loop.

The executor reports every step on ``action-results`` (keyed by incident); a step
that ran for real and was verified — healed, rolled back, or failed its
verification — becomes a ``feedback`` event from the verifier
(:func:`~sre_agent.processors.rca_feedback.outcome_feedback`), keyed by
incident, which the knowledge agent applies like human feedback: the shown
cause's pattern gets its success rate and confidence updated.

Only results signed by a key the agent trusts count (nothing is believed
because of what an event says about itself); each action's outcome is sent
once (``outcomes_sent`` table), and every outcome is audited.
"""

from __future__ import annotations

import logging
from typing import Any

from ..processors.rca_feedback import outcome_feedback
from ..schemas import ActionResult, AuditRecord
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    sent = ctx.tables.declare("outcomes_sent", help="action ids whose verified outcome "
                                                    "went to feedback")

    @ctx.app.agent(ctx.topics["action-results"], name="outcomes")
    async def outcomes(stream: Any) -> None:
        async for event in stream.events():
            result, check, _ = await ctx.decode_signed(ActionResult, event, stage="outcomes")
            if result is None:
                continue
            if not check.ok:
                log.warning("ignoring action result %s: %s", result.action_id, check.reason)
                continue
            fb = outcome_feedback(result)
            if fb is None or sent.get(result.action_id) is not None:
                continue
            await ctx.send(fb)
            sent[result.action_id] = result.status.encode()
            await ctx.send(AuditRecord(
                actor="verifier", action="feedback.outcome", subject=result.incident_id,
                details={"plan_id": result.plan_id, "action_id": result.action_id,
                         "status": result.status, "outcome": fb.action_outcome,
                         "step": result.step_index, "action": result.action,
                         "target": result.target}))
            log.info("verified outcome of %s (%s): %s -> feedback", result.action_id,
                     result.plan_id, fb.action_outcome,
                     extra={"incident_id": result.incident_id})

"""The test workers' signing key, and decision events signed with it.

Every worker started by the test fixtures signs its decision events with
:data:`TEST_SIGNING_KEY` (set by ``conftest.worker_env``), so workers of one
test trust each other. Tests that play the agent (a dead worker's half-done
work, a redelivery) sign with it; tests that play an attacker do not, or sign
with :data:`ROGUE` — a key the workers do not trust.
"""

from __future__ import annotations

from typing import Any

import orjson

from sre_agent.processors.signing import Signer
from sre_agent.schemas import ActionPlan, Approval, Event, SreAction

__all__ = ["AGENT", "ROGUE", "TEST_SIGNING_KEY", "authorised_action", "signed", "signed_bytes"]

#: base64 of a fixed Ed25519 private key: for tests only
TEST_SIGNING_KEY = "qr1Zor/a5rpjp6FjfC16MHBwo4N09dREU88YwOoDn2k="
AGENT = Signer.from_text(TEST_SIGNING_KEY)
#: a key nobody trusts
ROGUE = Signer.generate()


def signed(event: Event, signer: Signer = AGENT) -> dict[str, Any]:
    """``event`` as the signed JSON object the agent would produce."""
    return signer.sign_dict(event.model_dump(mode="json"))


def signed_bytes(event: Event, signer: Signer = AGENT) -> bytes:
    return orjson.dumps(signed(event, signer))


def authorised_action(plan: ActionPlan, votes: list[Approval], step_index: int = 0,
                      dry_run: bool = False, signer: Signer = AGENT, **kw: Any) -> SreAction:
    """Step ``step_index`` of ``plan`` with the signed plan and votes attached."""
    import hashlib

    step = plan.steps[step_index]
    key = hashlib.sha256(f"{plan.plan_id}:{step_index}:{step.target.ref()}".encode()).hexdigest()
    fields: dict[str, Any] = {
        "action_id": f"{plan.plan_id}-s{step_index}", "idempotency_key": key,
        "plan_id": plan.plan_id, "incident_id": plan.incident_id, "step_index": step_index,
        "step": step, "approved_by": [v.user for v in votes] or [f"policy:{plan.policy}"],
        "policy": plan.policy, "dry_run": dry_run, "plan": signed(plan, signer),
        "approvals": [signed(v, signer) for v in votes]}
    fields.update(kw)
    return SreAction(**fields)

"""One fast scenario end to end on the real broker: replay, lockstep, closed loop, score.

The full eval is a command (``sre-agent eval``), not a test; this runs a
shortened bad-deploy window after 3 h of history through a real worker. What
it asserts holds whatever the downstream stages decide: the simulated input is
all valid and consumed in lockstep, the detector sees the error surge, an
``sre-actions`` event reaches the simulated platform and heals it, and the
scorecard measures that.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sre_agent.schemas import ActionPlan, ActionStep, Approval, Target
from sre_agent.sim import DEFAULT_EPOCH, SCENARIOS, Platform, Topology, plan, score
from sre_agent.sim.replay import SIM_SIGNER, Replayer
from sre_agent.sim.stack import agent_env
from tests.signing_support import authorised_action, signed_bytes

pytestmark = pytest.mark.integration


async def test_bad_deploy_replayed_detected_and_healed_over_sre_actions(
        kafka_broker, worker_factory, kafka_io) -> None:
    topo = Topology.default()
    w = worker_factory(extra_env=agent_env(topo)).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    sc = replace(SCENARIOS["bad_deploy_error_surge"], duration=30 * 60.0, onset=5 * 60.0)
    p = Platform(seed=7, start=DEFAULT_EPOCH, topology=topo)
    segments = plan([sc], p.t, history=3 * 3600.0, gap=0.0)
    onset = segments[1].start + sc.onset
    rep = Replayer(kafka_broker.bootstrap, pfx, w.url + "/status", p, segments,
                   protected=["wallet*", "order*", "matching-engine*", "postgres*"])

    async def operator() -> None:
        """An on-call's rollout undo, 10 sample-minutes in, for the open incident."""
        while rep.clock < onset + 600:
            await asyncio.sleep(0.05)
        open_ = [o.payload["incident_id"] for o in rep.observations if o.topic == "incidents"
                 and "api-gateway" in o.payload.get("services", [])
                 and o.payload.get("status") != "resolved"]
        # an approved plan of its own: signed plan and vote attached, as the agent would
        # (an unsigned action straight onto sre-actions is refused: issue 15)
        op_plan = ActionPlan(plan_id="op", incident_id=open_[-1] if open_ else "op",
                             risk_score=0.45, risk_tier="MEDIUM", policy="ONE_APPROVAL",
                             steps=[ActionStep(action="rollout_undo", risk=0.3, target=Target(
                                 kind="deployment", name="api-gateway",
                                 service="api-gateway"))])
        vote = Approval(plan_id="op", decision="approve", user="oncall-sim", source="cli")
        action = authorised_action(op_plan, [vote], signer=SIM_SIGNER, action_id="op-1",
                                   idempotency_key="op-1", dry_run=True)
        await kafka_io._producer.send_and_wait(pfx + "sre-actions",
                                               signed_bytes(action, SIM_SIGNER),
                                               key=action.key().encode())

    op = asyncio.create_task(operator())
    record = await rep.run()
    await op

    # every simulated event was valid and consumed, in lockstep
    assert record.info["dlq"] == {}
    assert record.info["settle_timeouts"] == 0
    assert w.status()["events_in"]["metrics"] == rep.produced["metrics"]
    assert rep.produced["logs"] > 1000 and rep.produced["deploy-events"] >= 1
    # the closed loop: the action reached the platform and cleared the fault
    undo = [o for o in record.outcomes if o["action"] == "rollout_undo"]
    assert undo and any(o["effect"] == "resolved" for o in undo), record.outcomes
    assert any(o["action_id"] == "op-1" for o in record.outcomes), record.outcomes

    card = score(record)
    s = card["scenarios"][0]
    assert s["name"] == "bad_deploy_error_surge"
    assert s["signal_mttd_seconds"] is not None and s["signal_mttd_seconds"] <= 300
    assert s["remediated"] is True and s["mttr_seconds"] is not None
    assert s["mttr_seconds"] <= 15 * 60
    assert card["overall"]["protected_auto_executions"] == 0
    assert set(card["overall"]) >= {
        "detection_rate", "false_alarms_per_day", "mttd_seconds", "lead_time_seconds",
        "noise_reduction", "rca_top1", "rca_top3", "mtti_seconds", "action_correct",
        "remediation_success", "mttr_seconds", "protected_auto_executions", "llm_tokens"}

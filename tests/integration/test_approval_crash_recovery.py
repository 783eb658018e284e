"""The approval manager finishes what a crashed owner of a plan left half done.

A worker can die between two writes of one event's handling: after saving
``{"posting": t}`` but before saving the Slack ts, or after saving a plan as
approved/auto but before handing its step to the executor. These tests put such
a half-done state into the ``approval_state`` changelog (what the dead worker
left), restart the worker so it recovers the table from Kafka, redeliver the
event, and check the outcome on the real broker and the Slack stand-in (real
slack-sdk client): the lost post is found by its metadata and not repeated, a
post that never happened is made once, and an unrequested step is requested once.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from sre_agent.config import SlackSettings
from sre_agent.processors.approvals import PlanState
from sre_agent.schemas import ActionPlan, ActionStep, Target, utcnow
from sre_agent.sinks.slack import SlackApprovals
from tests.signing_support import signed
from tests.standins.slack_server import SlackStandin

pytestmark = pytest.mark.integration


def plan(pid: str, status: str = "pending") -> ActionPlan:
    return ActionPlan(
        plan_id=pid, incident_id=f"inc-{pid}", cause_type="bad_deploy", service="checkout",
        summary="roll back checkout", risk_score=0.4,
        risk_tier="LOW" if status == "auto" else "MEDIUM",
        policy="AUTO" if status == "auto" else "ONE_APPROVAL", status=status,  # type: ignore[arg-type]
        steps=[ActionStep(action="rollout_undo",
                          target=Target(kind="deployment", name="checkout", namespace="shop"))])


async def put_state(bootstrap: str, changelog: str, state: PlanState) -> None:
    """Write ``state`` to the table's changelog as the dead worker would have: in the
    partition of the plan's incident (the decision topics are keyed by incident id)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        n = len(await producer.partitions_for(changelog))
        part = (murmur2(state.plan.incident_id.encode()) & 0x7FFFFFFF) % n
        await producer.send_and_wait(changelog, key=state.plan.plan_id.encode(),
                                     value=state.model_dump_json().encode(), partition=part)
    finally:
        await producer.stop()


async def test_half_done_plans_are_finished_once_after_a_crash(
        worker_factory: Any, kafka_io: Any, wait_for: Any) -> None:
    slack = await SlackStandin().start()
    try:
        env = {"SRE_AGENT_SLACK__BOT_TOKEN": slack.token,
               "SRE_AGENT_SLACK__SIGNING_SECRET": "crash-signing-secret",
               "SRE_AGENT_SLACK__BASE_URL": slack.base_url,
               "SRE_AGENT_API__TOKENS": '{"conftest-viewer-token": "viewer:conftest", '
                                        '"tok-crash": "approver:alice"}'}
        w = worker_factory(extra_env=env).start()  # creates the topics and changelogs
        w.stop()
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        changelog = f"{w.env['SRE_AGENT_WORKER__APP_ID']}-approval_state-changelog"

        # 1. the dead worker posted, but died before saving the ts
        lost = plan("plan-posted-then-crash")
        before = time.time() - 1
        sender = SlackApprovals.from_settings(SlackSettings(
            bot_token=slack.token, base_url=slack.base_url))  # type: ignore[arg-type]
        assert sender is not None
        where = await sender.post(lost)
        await put_state(kafka_io.bootstrap, changelog, PlanState(
            plan=lost, slack={"posting": f"{before:.6f}"}, signed_plan=signed(lost)))
        # 2. the dead worker marked the post, but died before it reached Slack
        unposted = plan("plan-crash-before-post")
        await put_state(kafka_io.bootstrap, changelog, PlanState(
            plan=unposted, slack={"posting": f"{before:.6f}"}, signed_plan=signed(unposted)))
        # 3. an AUTO plan saved, but its step never handed to the executor
        auto = plan("plan-auto-never-requested", status="auto")
        await put_state(kafka_io.bootstrap, changelog, PlanState(
            plan=auto, status="auto", decided_at=utcnow(), signed_plan=signed(auto)))
        posts_before = len(slack.plan_posts())

        w.start()  # recovers approval_state from the changelog
        for p in (lost, unposted, auto):  # the uncommitted input is redelivered
            await kafka_io.send_signed(pfx + "action-plans", p)

        actions = await kafka_io.read(pfx + "sre-actions", timeout=60,
                                      until=lambda ms: any(m["plan_id"] == auto.plan_id
                                                           for m in ms))
        audits = await kafka_io.read(
            pfx + "audit", timeout=60,
            until=lambda ms: {(m["action"], m["subject"]) for m in ms} >= {
                ("slack.reconciled", lost.plan_id), ("slack.posted", unposted.plan_id)})
        posted_for = [_meta(p)["event_payload"]["plan_id"] for p in slack.plan_posts()[posts_before:]]
        assert posted_for == [unposted.plan_id], posted_for  # the lost post not repeated
        reconciled = [m for m in audits if m["action"] == "slack.reconciled"]
        assert [m["details"]["ts"] for m in reconciled] == [where["ts"]], reconciled
        assert [m["step_index"] for m in actions if m["plan_id"] == auto.plan_id] == [0]

        # the reconciled message is the one updated later: a vote lands on it
        status, _ = await _vote(w, lost.plan_id)
        assert status == 202
        await wait_for(lambda: any(u.get("ts") == where["ts"] for u in slack.updates()),
                       timeout=30)
    finally:
        await slack.stop()


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return orjson.loads(meta) if isinstance(meta, str) else meta


async def _vote(w: Any, plan_id: str) -> tuple[int, bytes]:
    from tests.actions_support import http

    return await http("POST", f"{w.url}/api/approvals/{plan_id}/approve", b"{}",
                      {"Authorization": "Bearer tok-crash", "Content-Type": "application/json"})

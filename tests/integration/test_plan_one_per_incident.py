"""One running plan per incident holds across partitions (issue 14, closed loop).

Before: ``action-plans``, ``approvals`` and ``action-results`` were keyed by plan id, so
two plans of one incident could be owned by two partitions (two workers, or one worker
holding both): the approval manager of the second plan looked for the first in its own
partition's table, did not find it running, and started its plan while the first one's
step was still in flight (two plans acting on one incident together). Now the three
topics are keyed by incident id: one partition owns an incident's plans, and the later
plan waits (``plan.queued``) until the earlier one stopped (``plan.released``).

The first plan's step stays in flight deterministically: its verification waits for
the rollout to complete on the Kubernetes stand-in, which the test completes only after
it has seen what the approval manager did with the second plan.
"""

from __future__ import annotations

from typing import Any

import asyncio
from datetime import timedelta

import kmock
import pytest
from aiokafka.partitioner import murmur2

from sre_agent.schemas import ActionPlan, ActionStep, Approval, Target, utcnow
from tests.actions_support import deployment

pytestmark = pytest.mark.integration

DEPLOY = kmock.resource("apps", "v1", "deployments")
INCIDENT = "inc-one-at-a-time"


def partition_of(key: str, partitions: int = 2) -> int:
    """The default partitioner's choice (murmur2, as aiokafka and the Java client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def plan_ids() -> tuple[str, str]:
    """Two plan ids that a plan-id key would put on different partitions."""
    first = "plan-first"
    second = next(f"plan-second-{i}" for i in range(100)
                  if partition_of(f"plan-second-{i}") != partition_of(first))
    return first, second


def auto_plan(plan_id: str, service: str, verify: dict[str, Any] | None) -> ActionPlan:
    step = ActionStep(action="rollout_restart", risk=0.2, verify=verify,
                      target=Target(kind="deployment", name=service, namespace="shop",
                                    service=service))
    return ActionPlan(plan_id=plan_id, incident_id=INCIDENT, risk_score=0.25, risk_tier="LOW",
                      policy="AUTO", status="auto", steps=[step], service=service,
                      cause_type="crash_loop")


@pytest.mark.parametrize("workers", [1, 2])
async def test_two_plans_of_one_incident_on_two_partitions_run_one_at_a_time(
        worker_factory, kafka_io, wait_for, workers: int) -> None:
    """With one worker holding both partitions, and with two workers (one each)."""
    from tests.chaos.support import group_settled

    first, second = plan_ids()
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        rolling = deployment("svc-a", "shop", "uid-a", revision=1, image="a:v1")
        rolling["status"]["updatedReplicas"] = 1  # a rollout in progress: not verified yet
        km.objects[DEPLOY, "shop", "svc-a"] = rolling
        km.objects[DEPLOY, "shop", "svc-b"] = deployment("svc-b", "shop", "uid-b", 1, "b:v1")
        env = {
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__AUTO_REMEDIATION": "true",
            "SRE_AGENT_ACTIONS__REQUIRE_OPEN_INCIDENT": "false",
            "SRE_AGENT_ACTIONS__VERIFY_POLL_SECONDS": "0.2",
        }
        ws = [worker_factory(extra_env=env).start() for _ in range(workers)]
        w = ws[0]
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        try:
            if workers > 1:  # both in the group, the partitions shared, both ready
                group = w.env["SRE_AGENT_WORKER__APP_ID"]
                await wait_for(lambda: group_settled(kafka_io.bootstrap, group, workers),
                               timeout=120, every=1.0)
                await wait_for(lambda: all(x.status()["recovery"]["ready"] for x in ws),
                               timeout=120, every=1.0)
            await kafka_io.send_signed(pfx + "action-plans", auto_plan(
                first, "svc-a", {"check": "rollout_complete", "within": 600}))
            # the first plan's step is with the executor, waiting for its rollout
            await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
                m["action"] == "action.snapshot" and m["subject"] == f"{first}-s0" for m in ms))
            await kafka_io.send_signed(pfx + "action-plans", auto_plan(second, "svc-b", None))

            def decided(ms: list[dict[str, Any]]) -> bool:
                return any(m["subject"] in (second, f"{second}-s0") and m["action"] in (
                    "plan.queued", "action.requested") for m in ms)

            audit = await kafka_io.read(pfx + "audit", timeout=90, until=decided)
            what = [(m["action"], m["details"]) for m in audit
                    if m["subject"] in (second, f"{second}-s0")]
            assert ("plan.queued", INCIDENT, first) in [
                (a, d.get("incident_id"), d.get("waiting_for")) for a, d in what], what
            assert not any(a == "action.requested" for a, _ in what), \
                f"the second plan acted while the first one's step was in flight: {what}"

            # the rollout completes: the first plan's step is verified, the plan completes
            # and the second one starts
            km.objects[DEPLOY, "shop", "svc-a"] = deployment("svc-a", "shop", "uid-a", 1, "a:v1")
            results = await kafka_io.read(pfx + "action-results", timeout=90, until=lambda ms: {
                m["plan_id"] for m in ms} >= {first, second})
            assert [(r["plan_id"], r["status"]) for r in results] == [
                (first, "succeeded"), (second, "succeeded")], results  # one partition: in order
            audit = await kafka_io.read(pfx + "audit", timeout=30, until=lambda ms: any(
                m["action"] == "plan.released" and m["subject"] == second for m in ms))
            released = next(m for m in audit
                            if m["action"] == "plan.released" and m["subject"] == second)
            assert released["details"]["after"] == first
        except BaseException:
            for x in ws:
                print(x.tail(20000))
            raise
        finally:
            for x in ws:
                x.stop()


def manual_plan(plan_id: str, incident_id: str) -> ActionPlan:
    return ActionPlan(plan_id=plan_id, incident_id=incident_id, service="svc-m",
                      cause_type="memory_leak", risk_score=0.45, risk_tier="MEDIUM",
                      policy="ONE_APPROVAL", expires_at=utcnow() + timedelta(hours=1),
                      steps=[ActionStep(action="restart_pod", risk=0.3, target=Target(
                          kind="pod", name="svc-m-1", namespace="shop", service="svc-m"))])


def split(tag: str) -> tuple[str, str]:
    """A plan id and an incident id that land on different partitions."""
    return next((f"plan-{tag}-{i}", f"inc-{tag}-{i}") for i in range(100)
                if partition_of(f"plan-{tag}-{i}") != partition_of(f"inc-{tag}-{i}"))


async def test_a_vote_keyed_by_plan_reaches_the_partition_that_owns_the_incident(
        worker_factory, kafka_io) -> None:
    """A vote that does not name its incident (an older producer) is keyed by plan id and
    lands where the plan is not: the approval manager forwards it, unchanged and still
    signed, to the incident's partition (the read model tells the incident), at once when
    the plan is known there, or after it was held when the vote came first."""
    w = worker_factory(extra_env={
        "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice"}'}).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    known, early = split("known"), split("early")
    try:
        # the vote comes before its plan: held where it landed, then forwarded
        await kafka_io.send_signed(pfx + "approvals", Approval(
            plan_id=early[0], decision="approve", user="alice", source="api"))
        await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
            m["action"] == "vote.held" and m["subject"] == early[0] for m in ms))
        await kafka_io.send_signed(pfx + "action-plans", manual_plan(*early))
        # the plan comes first
        await kafka_io.send_signed(pfx + "action-plans", manual_plan(*known))
        await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
            m["action"] == "approval.requested" and m["subject"] == known[0] for m in ms))
        await kafka_io.send_signed(pfx + "approvals", Approval(
            plan_id=known[0], decision="approve", user="alice", source="api"))

        def approved(ms: list[dict[str, Any]]) -> bool:
            return {m["subject"] for m in ms if m["action"] == "plan.approved"} >= {
                known[0], early[0]}

        audit = await kafka_io.read(pfx + "audit", timeout=120, until=approved)
        forwarded = {m["subject"]: m["details"]["incident_id"] for m in audit
                     if m["action"] == "vote.forwarded"}
        assert forwarded == {known[0]: known[1], early[0]: early[1]}, forwarded
        cast = [m["subject"] for m in audit if m["action"] == "vote.cast"]
        assert sorted(cast) == sorted([known[0], early[0]]), cast  # each counted once
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()


async def test_a_held_vote_older_than_a_plans_lifetime_does_not_count(
        worker_factory, kafka_io) -> None:
    """A vote held for a plan that did not come within the approval TTL is dropped. The
    timer that dropped it wrote the table outside a stream (Faust refuses: no partition
    to write in), so the stale vote stayed and counted when its plan came late."""
    ttl = 2.0
    w = worker_factory(extra_env={
        "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice"}',
        "SRE_AGENT_ACTIONS__APPROVAL_TTL_SECONDS": str(ttl)}).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    try:
        stale = manual_plan("plan-stale", "inc-stale")
        await kafka_io.send_signed(pfx + "approvals", Approval(
            plan_id=stale.plan_id, decision="approve", user="alice", source="api",
            incident_id=stale.incident_id))
        await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
            m["action"] == "vote.held" and m["subject"] == stale.plan_id for m in ms))
        await asyncio.sleep(ttl + 6)  # the TTL itself, and a tick of the 5 s timer
        await kafka_io.send_signed(pfx + "action-plans", stale)
        await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
            m["action"] == "approval.requested" and m["subject"] == stale.plan_id for m in ms))
        # a marker after it: an unsigned vote, refused (audited under the plan's id, so in
        # order after whatever the plan's arrival released)
        await kafka_io.send(pfx + "approvals", Approval(
            plan_id=stale.plan_id, decision="approve", user="mallory", source="api",
            incident_id=stale.incident_id))
        audit = await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
            m["action"] == "vote.refused" and m["subject"] == stale.plan_id for m in ms))
        assert not [m for m in audit if m["action"] == "vote.cast"], audit
        assert w.proc is not None and w.proc.poll() is None, "the worker died"
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()


async def test_verification_does_not_credit_a_recovery_the_action_did_not_cause(
        worker_factory, kafka_io) -> None:
    """``anomaly_cleared`` passed whenever no anomaly was open on the metric, and the result
    said ``verified=True``: the learning loop credited the action (and its diagnosis) for
    a symptom that had already cleared when it ran, or that faded by itself before the
    action could take effect. Now both are ``succeeded`` but unverified (no credit)."""
    from sre_agent.schemas import Anomaly

    def anomaly(service: str, status: str) -> Anomaly:
        return Anomaly(anomaly_id=f"an-{service}", status=status, metric="http_error_ratio",
                       series=f"http_error_ratio{{{service}}}", service=service, observed=0.2,
                       expected=0.01, lower=0.0, upper=0.02, deviation=9.0, score=0.9)

    verify = {"check": "anomaly_cleared", "metric": "http_error_ratio", "within": 600}
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        for svc in ("svc-gone", "svc-fades"):
            km.objects[DEPLOY, "shop", svc] = deployment(svc, "shop", f"uid-{svc}", 1, "x:v1")
        w = worker_factory(extra_env={
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__AUTO_REMEDIATION": "true",
            "SRE_AGENT_ACTIONS__REQUIRE_OPEN_INCIDENT": "false",
            "SRE_AGENT_ACTIONS__VERIFY_POLL_SECONDS": "0.2",
        }).start()
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        gone = auto_plan("plan-gone", "svc-gone", verify).model_copy(
            update={"incident_id": "inc-gone"})
        fades = auto_plan("plan-fades", "svc-fades", verify).model_copy(
            update={"incident_id": "inc-fades"})
        try:
            # 1. the symptom cleared before the action ran
            await kafka_io.send(pfx + "anomalies", anomaly("svc-gone", "open"))
            await kafka_io.send(pfx + "anomalies", anomaly("svc-gone", "resolved"))
            # 2. the symptom is open when the action runs and clears seconds later
            await kafka_io.send(pfx + "anomalies", anomaly("svc-fades", "open"))
            await kafka_io.read(pfx + "anomalies", timeout=30, until=lambda ms: len(ms) >= 3)
            for p in (gone, fades):
                await kafka_io.send_signed(pfx + "action-plans", p)
            await kafka_io.read(pfx + "audit", timeout=90, until=lambda ms: any(
                m["action"] == "action.snapshot" and m["subject"] == "plan-fades-s0"
                for m in ms))
            await kafka_io.send(pfx + "anomalies", anomaly("svc-fades", "resolved"))
            results = await kafka_io.read(pfx + "action-results", timeout=90, until=lambda ms: {
                m["plan_id"] for m in ms} >= {"plan-gone", "plan-fades"})
            by = {r["plan_id"]: r for r in results}
            assert by["plan-gone"]["status"] == "succeeded", by
            assert by["plan-gone"]["verified"] is None, by["plan-gone"]
            assert "cleared before the action" in by["plan-gone"]["detail"]
            assert by["plan-fades"]["status"] == "succeeded", by
            assert by["plan-fades"]["verified"] is None, by["plan-fades"]
            # cleared seconds after the action (or, had the executor's anomaly watch not
            # read the open anomaly yet when it acted, before it): never credited
            assert "not credited" in by["plan-fades"]["detail"], by["plan-fades"]
        except BaseException:
            print(w.tail(20000))
            raise
        finally:
            w.stop()

"""Issue 15, findings 4-6: an answered vote is never lost, a restarted worker is ready
before it acts, and tickets written while PostgreSQL is down land later.

* Six API approvals answered ``202``, the worker SIGKILLed right after the last
  answer: all six votes are on ``approvals`` (the answer waits for the broker's ack).
* After the restart every approved action runs exactly once — none refused because
  the incident was "not known to be open" (the executor waits for PostgreSQL to be
  tried and the read model to catch up before judging anything).
* Incidents arriving while PostgreSQL is down get their tickets once it is back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import kmock
import pytest

from sre_agent.devstack import PostgresServer
from sre_agent.schemas import ActionPlan, ActionStep, Approval, Incident, Target, utcnow
from tests.actions_support import (
    audit_rows,
    decision_summary,
    decision_trail,
    fresh_database,
    http,
    partition_report,
    pod,
)

pytestmark = pytest.mark.integration

POD = kmock.resource("", "v1", "pods")
N = 6


def plan(i: int) -> ActionPlan:
    return ActionPlan(plan_id=f"plan-{i}", incident_id=f"inc-{i}", service=f"svc-{i}",
                      cause_type="memory_leak", risk_score=0.45, risk_tier="MEDIUM",
                      policy="ONE_APPROVAL", expires_at=utcnow() + timedelta(hours=1),
                      steps=[ActionStep(action="restart_pod", risk=0.3, target=Target(
                          kind="pod", name=f"api-{i}", namespace="shop", service=f"svc-{i}"))])


def deletes(km: Any) -> Counter[str]:
    return Counter(r.url.path.rsplit("/", 1)[-1] for r in list(km)
                   if str(r.method).upper().endswith("DELETE"))


async def test_votes_survive_a_kill_and_each_approved_action_runs_once(
        worker_factory, kafka_io, wait_for, pg_dsn) -> None:
    dsn = await fresh_database(pg_dsn)
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        for i in range(N):
            km.objects[POD, "shop", f"api-{i}"] = pod(f"api-{i}", "shop", f"uid-{i}", "api")
        w = worker_factory(extra_env={
            "SRE_AGENT_POSTGRES__DSN": dsn,
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice", "tok-vic": "viewer:vic"}',
            # the killed worker's session must expire before its restart gets the
            # partitions back: 60 s by default, most of this test's time
            "SRE_AGENT_WORKER__SESSION_TIMEOUT": "10",
            "SRE_AGENT_WORKER__HEARTBEAT_INTERVAL": "1",
        }).start()
        try:
            pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
            for i in range(N):
                await kafka_io.send(pfx + "incidents", Incident(
                    incident_id=f"inc-{i}", title="leak", services=[f"svc-{i}"],
                    fingerprint=f"fp-{i}", opened_at=utcnow()))
                await kafka_io.send_signed(pfx + "action-plans", plan(i))

            async def pending() -> bool:
                status, body = await http("GET", w.url + "/api/approvals/pending",
                                          headers={"Authorization": "Bearer tok-vic"})
                return status == 200 and body["count"] == N

            await wait_for(pending, timeout=60)
            answers = await asyncio.gather(*[
                http("POST", f"{w.url}/api/approvals/plan-{i}/approve", b"{}",
                     {"Authorization": "Bearer tok-alice"}) for i in range(N)])
            w.kill()  # right after the last answer
            assert [s for s, _ in answers] == [202] * N, answers

            votes = await kafka_io.read(pfx + "approvals", timeout=30,
                                        until=lambda ms: len(ms) >= N)
            assert sorted(v["plan_id"] for v in votes if v["user"] == "alice") == \
                sorted(f"plan-{i}" for i in range(N)), votes

            w.start()
            results = await kafka_io.read(pfx + "action-results", timeout=120,
                                          until=lambda ms: len({m["plan_id"] for m in ms}) >= N)
            by_plan = Counter(r["plan_id"] for r in results)
            assert all(n == 1 for n in by_plan.values()) and len(by_plan) == N, results
            assert {r["status"] for r in results} == {"succeeded"}, results
            assert deletes(km) == Counter({f"api-{i}": 1 for i in range(N)})

            async def tickets() -> bool:
                rows = await audit_rows(dsn)
                return len({r["subject"] for r in rows if r["action"] == "ticket.created"}) == N

            await wait_for(tickets, timeout=60)
        except BaseException:
            print(await decision_summary(dsn))  # first: a CI excerpt shows the head
            print("\n".join(line for line in w.log.read_text(errors="replace").splitlines()
                            if "approval-manager " in line or "no stream acknowledged" in line
                            or "flow control is suspended" in line or "start #" in line))
            print(w.tail(30000))
            print(await decision_trail(dsn))
            print("approvals:", await partition_report(kafka_io.bootstrap, pfx + "approvals",
                                                  w.env["SRE_AGENT_WORKER__APP_ID"]))
            raise
        finally:
            await asyncio.to_thread(w.stop)  # off the loop that serves the stand-in


async def test_a_vote_read_before_its_plan_still_counts(worker_factory, kafka_io) -> None:
    """``action-plans`` and ``approvals`` are separate topics: the API accepts a vote for a
    plan the read model already shows, and the approval manager may read the vote first.
    It refused it as "unknown plan" and the approved plan never ran (seen in the test
    above under load: 3 of 6 plans). Now the vote is held until its plan comes."""
    w = worker_factory(extra_env={
        "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice"}'}).start()
    try:
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        await kafka_io.send_signed(pfx + "approvals", Approval(
            plan_id="plan-9", decision="approve", user="alice", source="api"))
        await kafka_io.read(pfx + "audit", timeout=60, until=lambda ms: any(
            m["action"] == "vote.held" and m["subject"] == "plan-9" for m in ms))
        await kafka_io.send(pfx + "incidents", Incident(
            incident_id="inc-9", title="leak", services=["svc-9"], fingerprint="fp-9",
            opened_at=utcnow()))
        await kafka_io.send_signed(pfx + "action-plans", plan(9))
        results = await kafka_io.read(pfx + "action-results", timeout=60,
                                      until=lambda ms: bool(ms))
        # approved and handed to the executor (which has no Kubernetes back-end here)
        assert [r["plan_id"] for r in results] == ["plan-9"], results
        assert "no back-end enabled" in results[0]["detail"], results
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        await asyncio.to_thread(w.stop)


async def test_tickets_opened_during_a_postgres_outage_land(worker_factory, kafka_io,
                                                            wait_for) -> None:
    pg = PostgresServer()  # our own cluster: stopping it disturbs no other test
    await asyncio.to_thread(pg.start)
    w = worker_factory(extra_env={"SRE_AGENT_POSTGRES__DSN": pg.dsn})
    try:
        w.start()
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]

        async def tickets() -> set[str]:
            try:
                rows = await audit_rows(pg.dsn)
            except OSError:
                return set()
            return {r["subject"] for r in rows if r["action"] == "ticket.created"}

        async def send(ids: range) -> None:
            for i in ids:
                await kafka_io.send(pfx + "incidents", Incident(
                    incident_id=f"out-{i}", title="db down", services=["db"],
                    fingerprint=f"fp-out-{i}", opened_at=utcnow()))

        await send(range(0, 2))
        await wait_for(lambda: _has(tickets, 2), timeout=60)
        await asyncio.to_thread(pg.stop)  # down, same port and data kept
        await send(range(2, 6))  # opened while the database is away
        await wait_for(lambda: not w.status()["health"].get("tickets", {}).get("ok", True),
                       timeout=60)
        await asyncio.to_thread(pg.start_again)
        await wait_for(lambda: _has(tickets, 6), timeout=120)
        assert await tickets() == {f"out-{i}" for i in range(6)}
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()
        await asyncio.to_thread(pg.stop, True)


async def _has(get: Any, n: int) -> bool:
    return len(await get()) >= n

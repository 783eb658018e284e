"""A worker killed while an approved action is in flight: the action's durable claim
is taken over and finished, never lost and never repeated.

The claim in PostgreSQL is the executor's work log (``claimed`` -> ``acting`` ->
``executed`` -> result) under a lease its owner renews. Before this, a worker killed
between acting and reporting (verification runs in the background, and the
``sre-actions`` offset is committed meanwhile) left an executed action that never
reported a result: its plan stayed "approved" forever, and a redelivered action was
dropped as a duplicate of the dead worker's claim.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import kmock
import pytest

from sre_agent.schemas import ActionPlan, ActionStep, Anomaly, Incident, Target, utcnow
from tests.actions_support import audit_rows, decision_trail, fresh_database, http, pod

pytestmark = pytest.mark.integration

POD = kmock.resource("", "v1", "pods")
METRIC = "memory_working_set_bytes"


def plan() -> ActionPlan:
    # verification waits until the service's memory anomaly has cleared
    return ActionPlan(plan_id="plan-t", incident_id="inc-t", service="svc-t",
                      cause_type="memory_leak", risk_score=0.45, risk_tier="MEDIUM",
                      policy="ONE_APPROVAL", expires_at=utcnow() + timedelta(hours=1),
                      steps=[ActionStep(action="restart_pod", risk=0.3,
                                        verify={"check": "anomaly_cleared", "metric": METRIC,
                                                "within": 900},
                                        target=Target(kind="pod", name="api-t", namespace="shop",
                                                      service="svc-t"))])


def anomaly(status: str) -> Anomaly:
    return Anomaly(anomaly_id="an-t", status=status, series=f"{METRIC}{{service=svc-t}}",  # type: ignore[arg-type]
                   metric=METRIC, service="svc-t", observed=9e9, expected=1e9, lower=0.0,
                   upper=2e9, deviation=12.0, score=0.99)


async def test_an_action_in_verification_when_its_worker_dies_reports_once_after_takeover(
        worker_factory: Any, kafka_io: Any, wait_for: Any, pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn)
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        km.objects[POD, "shop", "api-t"] = pod("api-t", "shop", "uid-t", "api")
        w = worker_factory(extra_env={
            "SRE_AGENT_POSTGRES__DSN": dsn,
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__CLAIM_LEASE_SECONDS": "6",
            "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice"}',
            "SRE_AGENT_WORKER__SESSION_TIMEOUT": "10",
            "SRE_AGENT_WORKER__HEARTBEAT_INTERVAL": "1",
        }).start()
        try:
            pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
            await kafka_io.send(pfx + "anomalies", anomaly("open"))
            await kafka_io.send(pfx + "incidents", Incident(
                incident_id="inc-t", title="leak", services=["svc-t"], fingerprint="fp-t",
                opened_at=utcnow()))
            await kafka_io.send_signed(pfx + "action-plans", plan())

            async def approved() -> bool:
                status, _ = await http("POST", f"{w.url}/api/approvals/plan-t/approve", b"{}",
                                       {"Authorization": "Bearer tok-alice"})
                return status == 202

            await wait_for(approved, timeout=60)

            async def acted() -> bool:
                return any(r["action"] == "action.executed" for r in await audit_rows(dsn))

            await wait_for(acted, timeout=60)  # verification waits for the anomaly to clear
            w.kill()
            # the pod is gone but no result yet
            assert await kafka_io.read(pfx + "action-results", lambda ms: bool(ms), timeout=2) == []

            w.start()
            await kafka_io.send(pfx + "anomalies", anomaly("resolved"))
            results = await kafka_io.read(pfx + "action-results", timeout=90,
                                          until=lambda ms: len(ms) >= 1)
            assert [(r["plan_id"], r["status"]) for r in results] == [("plan-t", "succeeded")]

            async def taken_over() -> bool:
                return any(r["action"] == "action.taken_over" for r in await audit_rows(dsn))

            await wait_for(taken_over, timeout=30)
            assert Counter(r.url.path.rsplit("/", 1)[-1] for r in list(km)
                           if str(r.method).upper().endswith("DELETE")) == Counter({"api-t": 1})
            # and no second result behind the first
            again = await kafka_io.read(pfx + "action-results", lambda ms: len(ms) > 1, timeout=3)
            assert len(again) == 1, again
        except BaseException:
            print(w.tail(30000))
            print(await decision_trail(dsn))
            raise
        finally:
            await asyncio.to_thread(w.stop)  # off the loop that serves the stand-in

"""Through a real worker: a later RCA result of the incident with another cause
supersedes the pending plan of the earlier diagnosis; it can no longer be approved
(issue 14: a stale plan stayed approvable after the diagnosis changed)."""

from __future__ import annotations

import pytest

from sre_agent.schemas import Hypothesis, RcaResult
from tests.actions_support import http

pytestmark = pytest.mark.integration


def rca(cause: str, service: str) -> RcaResult:
    return RcaResult(incident_id="inc-sup", severity="critical", services=["api", "orders-db"],
                     hypotheses=[Hypothesis(cause_type=cause, service=service, confidence=0.85,
                                            summary=f"{cause} on {service}")])


async def test_changed_diagnosis_supersedes_the_pending_plan(worker_factory, kafka_io,
                                                             wait_for) -> None:
    w = worker_factory(extra_env={
        "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice"}'}).start()
    try:
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        await kafka_io.send(pfx + "rca-results", rca("bad_deploy", "api"))
        first = await kafka_io.read(pfx + "action-plans", until=lambda ms: len(ms) >= 1)
        old = first[0]
        assert old["status"] == "pending" and old["service"] == "api", old
        await kafka_io.send(pfx + "rca-results", rca("memory_leak", "orders-db"))

        def superseded(ms: list[dict]) -> bool:  # type: ignore[type-arg]
            # plans are keyed by plan id: the two may come from different partitions
            return any(m["plan_id"] == old["plan_id"] and m["status"] == "superseded"
                       for m in ms) and any(m["service"] == "orders-db" for m in ms)

        plans = await kafka_io.read(pfx + "action-plans", until=superseded)
        stale = next(m for m in plans if m["status"] == "superseded")
        new = next(m for m in plans if m["service"] == "orders-db" and m["status"] != "superseded")
        assert stale["superseded_by"] == new["plan_id"]
        assert "bad_deploy on api -> memory_leak on orders-db" in stale["superseded_reason"]

        # the approval manager has closed it (a vote sent before that would still have
        # counted: the poll that voted until it saw 409 approved the stale plan when the
        # manager lagged, and the test failed on a loaded machine)
        audit = await kafka_io.read(pfx + "audit", until=lambda ms: sum(
            1 for m in ms if m.get("action") == "plan.superseded") >= 2)
        actors = {m["actor"] for m in audit if m.get("action") == "plan.superseded"}
        assert actors == {"risk-planner", "approval-manager"}, actors
        async def not_pending() -> bool:  # its state saved (just after that audit record)
            status, body = await http("GET", f"{w.url}/api/approvals/pending",
                                      headers={"Authorization": "Bearer tok-alice"})
            return status == 200 and old["plan_id"] not in {i["plan_id"] for i in body["items"]}

        await wait_for(not_pending, timeout=30)
        status, body = await http("POST", f"{w.url}/api/approvals/{old['plan_id']}/approve",
                                  b"{}", {"Authorization": "Bearer tok-alice"})
        assert status == 409 and body.get("status") == "superseded", (status, body)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()

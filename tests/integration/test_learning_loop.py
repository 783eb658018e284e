"""The learning loop closed on the real broker: a verified outcome of an executed action
(signed by the agent) becomes verifier feedback and updates the shown cause's pattern;
a forged result (untrusted key), a dry run and a redelivery teach nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sre_agent.schemas import ActionResult, Anomaly
from tests.signing_support import ROGUE, signed_bytes

pytestmark = pytest.mark.integration


def anomaly(service: str, metric: str, when: datetime) -> Anomaly:
    return Anomaly(anomaly_id=f"{service}-{metric}", status="open", metric=metric,
                   service=service, series=f'{metric}{{service="{service}"}}', observed=0.95,
                   expected=0.4, lower=0.0, upper=0.6, deviation=9.0, score=0.98,
                   severity="critical", time=when, started_at=when)


def result(action_id: str, incident_id: str, status: str, verified: bool | None,
           dry_run: bool = False) -> ActionResult:
    return ActionResult(action_id=action_id, plan_id=f"plan-{action_id}", incident_id=incident_id,
                        status=status, verified=verified, dry_run=dry_run,  # type: ignore[arg-type]
                        action="scale", target="api", detail="test")


async def test_verified_outcomes_update_the_pattern(worker_factory, kafka_io) -> None:
    w = worker_factory(extra_env={"SRE_AGENT_CORRELATION__EDGES": '[["web", "api"]]',
                                  "SRE_AGENT_CORRELATION__TICK_INTERVAL": "1"}).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    try:
        await scenario(pfx, kafka_io)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()


async def scenario(pfx: str, kafka_io: Any) -> None:
    now = datetime.now(UTC)
    await kafka_io.send(pfx + "anomalies", anomaly("api", "cpu_usage", now - timedelta(seconds=30)))
    await kafka_io.send(pfx + "anomalies", anomaly("web", "latency_p99", now - timedelta(seconds=25)))
    # the RCA of the incident holding both services is what the knowledge base shows
    incs = await kafka_io.read(pfx + "incidents", until=lambda ms: any(
        set(m["services"]) == {"api", "web"} for m in ms), timeout=60)
    inc = next(m for m in incs if set(m["services"]) == {"api", "web"})
    inc_id, rev = inc["incident_id"], inc["revision"]
    rca = await kafka_io.read(pfx + "rca-results", until=lambda ms: any(
        m["incident_id"] == inc_id and m["incident_revision"] >= rev and m["hypotheses"]
        for m in ms), timeout=60)
    shown = [m for m in rca if m["incident_id"] == inc_id and m["hypotheses"]][-1]
    cause = shown["hypotheses"][0]["cause_type"]

    async def produce(r: ActionResult, raw: bytes) -> None:
        await kafka_io.send_raw(pfx + "action-results", raw, key=r.plan_id.encode())

    forged = result("forged-1", inc_id, "succeeded", True)
    await produce(forged, signed_bytes(forged, ROGUE))
    dry = result("dry-1", inc_id, "dry_run", None, dry_run=True)
    await produce(dry, signed_bytes(dry))
    healed = result("heal-1", inc_id, "succeeded", True)
    for _ in range(2):  # a redelivered result counts once
        await produce(healed, signed_bytes(healed))
    undone = result("undo-1", inc_id, "rolled_back", False)
    await produce(undone, signed_bytes(undone))

    def updates(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in ms if m["action"] == "knowledge.updated"
                and m["details"]["action_succeeded"] is not None]

    audit = await kafka_io.read(pfx + "audit", until=lambda ms: len(updates(ms)) >= 2,
                                timeout=60)
    outcomes = [m for m in audit if m["action"] == "feedback.outcome"]
    assert sorted(m["details"]["action_id"] for m in outcomes) == ["heal-1", "undo-1"]
    got = updates(audit)
    assert [u["actor"] for u in got] == ["feedback:verifier"] * 2
    assert all(u["details"]["cause_type"] == cause for u in got), (cause, got)
    assert sorted(u["details"]["action_succeeded"] for u in got) == [False, True]  # any order
    assert got[-1]["details"]["success_rate"] == 0.5
    feedback = await kafka_io.read(pfx + "feedback", until=lambda ms: len(ms) >= 2, timeout=10)
    assert {m["incident_id"] for m in feedback} == {inc_id}
    assert sorted(m["action_outcome"] for m in feedback) == ["failed", "succeeded"]

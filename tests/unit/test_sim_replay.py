"""The replayer's pure parts: the simulated on-call, batching, executor verdicts."""

from __future__ import annotations

from sre_agent.schemas import (
    ActionStep,
    MetricBatch,
    SreAction,
    Target,
    decode,
    encode,
    series_id,
    shard_of,
)
from sre_agent.sim import DEFAULT_EPOCH, Platform, plan
from sre_agent.sim.replay import Approver, Replayer


def test_on_call_approves_after_its_delay_with_the_roles_the_tier_needs() -> None:
    a = Approver(delay=300.0)
    a.consider({"plan_id": "p1", "policy": "ONE_APPROVAL", "status": "pending"}, 1000.0)
    a.consider({"plan_id": "p1", "policy": "ONE_APPROVAL", "status": "pending"}, 1010.0)
    a.consider({"plan_id": "p2", "policy": "TWO_SRE_ONE_LEAD", "status": "pending"}, 1000.0)
    a.consider({"plan_id": "p3", "policy": "BLOCKED", "status": "blocked"}, 1000.0)
    a.consider({"plan_id": "p4", "policy": "AUTO", "status": "auto"}, 1000.0)
    assert a.due(1200.0) == []
    first = a.due(1300.0)
    assert sorted((v.plan_id, v.role) for v in first) == [("p1", "oncall"), ("p2", "sre")]
    later = a.due(1600.0)
    assert sorted(v.role for v in later) == ["lead", "sre"]
    assert all(v.decision == "approve" and v.time.timestamp() <= 1600.0 for v in later)
    assert a.due(10_000.0) == []


def test_nobody_approves_when_disabled() -> None:
    a = Approver(enabled=False)
    a.consider({"plan_id": "p1", "policy": "ONE_APPROVAL", "status": "pending"}, 0.0)
    assert a.due(1e9) == []


def _replayer(p: Platform) -> Replayer:
    return Replayer("127.0.0.1:1", "x.", None, p, plan([], p.t, 3600.0, 0.0), shards=8)


def test_history_ticks_are_batched_per_shard_with_every_point() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    ticks = [p.step() for _ in range(5)]
    batches = _replayer(p)._batches(ticks)
    assert len(batches) <= 8
    assert sum(b.sample_count() for b in batches) == 5 * len(ticks[0].samples)
    for b in batches:
        assert decode(MetricBatch, encode(b)) == b
        for s in b.series:
            assert shard_of(series_id(s["name"], s["labels"]), 8) == b.shard
            assert [t for t, _ in s["points"]] == [tk.t for tk in ticks]


def _action(name: str = "rollout_undo") -> SreAction:
    return SreAction(action_id="a1", idempotency_key="a1", plan_id="p", incident_id="i",
                     step=ActionStep(action=name, target=Target(kind="deployment",
                                                                name="api-gateway")),
                     policy="AUTO")


def test_an_action_the_executor_refuses_is_not_applied() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    rep = _replayer(p)
    rep._readers = {"sre-actions"}  # an executor reads sre-actions: wait for its verdict
    rep._observe("sre-actions", encode(_action()))
    assert p._pending == [] and "a1" in rep._awaiting
    rep._observe("action-results", b'{"action_id": "a1", "status": "rate_limited", '
                                   b'"detail": "3 actions within the hour"}')
    assert [o.effect for o in p.ledger] == ["refused"]
    assert "rate_limited" in p.ledger[0].verdict


def test_an_action_the_executor_lets_through_is_applied() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    rep = _replayer(p)
    rep._readers = {"sre-actions"}
    rep._observe("sre-actions", encode(_action()))
    rep._observe("action-results", b'{"action_id": "a1", "status": "failed", '
                                   b'"detail": "no back-end enabled"}')
    assert len(p._pending) == 1


def test_without_an_executor_the_action_is_applied_directly() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    rep = _replayer(p)
    rep._observe("sre-actions", encode(_action()))
    assert len(p._pending) == 1
    assert [o.topic for o in rep.observations] == ["sre-actions"]


def test_with_a_simulated_cluster_only_what_the_executor_did_there_is_applied() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    p.deploy("api-gateway", p.t, "v9.9.9")
    rep = Replayer("127.0.0.1:1", "x.", None, p, plan([], p.t, 3600.0, 0.0), shards=8,
                   cluster_port=1)
    assert rep.cluster is not None
    rep._observe("sre-actions", encode(_action()))
    # no executor reads sre-actions yet, no verdict: nothing reaches the platform by itself
    assert p._pending == [] and "a1" in rep._awaiting
    # a result for a step the cluster never saw (the executor failed before acting)
    rep._observe("action-results", b'{"action_id": "a1", "status": "failed", '
                                   b'"detail": "cannot observe"}')
    assert p._pending == [] and [o.effect for o in p.ledger] == ["refused"]
    # the executor acts: the cluster applies the step, named after its sre-action
    b = _action().model_copy(update={"action_id": "a2", "idempotency_key": "a2"})
    rep._observe("sre-actions", encode(b))
    rep.cluster.act(b.step)
    assert rep.cluster.applied == {"a2"} and len(p._pending) == 1
    rep._observe("action-results", b'{"action_id": "a2", "status": "succeeded"}')
    assert len(p._pending) == 1 and len(p.ledger) == 1  # applied once, not again

"""The simulated cluster: the executor's back-end interface applied to the simulator's world.

An action that fixes the simulated fault heals the platform (its physics, not the
back-end, says so); one that does not fix it leaves the fault and the symptoms; the
calls have the Kubernetes back-end's semantics (factor scaling, missing objects,
stale pod uids, rollouts that take time); and the worker's client reaches it over HTTP.
"""

from __future__ import annotations

import pytest

from sre_agent.config import Settings
from sre_agent.devstack import free_port
from sre_agent.schemas import ActionStep, SreAction, Target
from sre_agent.sim import DEFAULT_EPOCH, Platform
from sre_agent.sim.cluster import ClusterServer, SimCluster, SimClusterError
from sre_agent.sim.fault_kinds import NodePressure, SlowUpstream, TrafficSurge
from sre_agent.sim.faults import BadDeploy
from sre_agent.sinks.simcluster import SimClusterActions
from sre_agent.sinks.simcluster import SimClusterError as ClientError
from sre_agent.sinks.targets import ActionTargets


def step(action: str, name: str, kind: str = "deployment", **params: object) -> ActionStep:
    return ActionStep(action=action, target=Target(kind=kind, name=name), params=params)


def run(p: Platform, minutes: int) -> dict[str, bool]:
    health: dict[str, bool] = {}
    for _ in range(minutes):
        health = p.step().health
    return health


def bad_deploy(p: Platform, svc: str = "api-gateway") -> BadDeploy:
    p.deploy(svc, p.t, "v9.9.9")
    f = BadDeploy(svc, p.t, error=0.2, version="v9.9.9")
    p.add_fault(f)
    return f


def test_an_action_that_fixes_the_fault_heals_the_platform() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    fault = bad_deploy(p)
    assert not run(p, 5)["api-gateway"]
    c = SimCluster(p)
    undo = step("rollout_undo", "api-gateway")
    assert c.observe(undo)["previous_revision"] is not None
    assert "back from revision" in c.act(undo)
    assert fault.active(p.t)  # nothing happens before the rollout
    assert run(p, 5)["api-gateway"] and not fault.active(p.t)
    assert [(o.action, o.effect) for o in p.ledger] == [("rollout_undo", "resolved")]


def test_an_action_that_does_not_fix_the_fault_does_not_heal() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    fault = bad_deploy(p)
    c = SimCluster(p)
    c.act(step("rollout_restart", "api-gateway"))
    c.act(step("scale", "api-gateway", factor=1.5, max_replicas=50))
    health = run(p, 8)
    assert fault.active(p.t) and not health["api-gateway"]
    assert {o.effect for o in p.ledger} == {"none"}
    assert p.replicas["api-gateway"] == 6  # the scale was applied; it just does not help


def test_scale_has_the_kubernetes_semantics_and_only_enough_capacity_absorbs_a_surge() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    # a read-heavy surge at the edge (its callees get a share of it, as in the scenario)
    p.add_fault(TrafficSurge("api-gateway", p.t, peak=15.0, ramp=60.0, mix={
        "order-service": 0.15, "wallet-service": 0.1, "user-service": 0.2}))
    assert not run(p, 4)["api-gateway"]
    c = SimCluster(p)
    assert c.act(step("scale", "api-gateway", factor=1.5, max_replicas=50)).endswith(
        "from 4 to 6 replicas")
    assert not run(p, 4)["api-gateway"]  # a 1.5x scale-out does not carry 15x the load
    assert c.act(step("scale", "api-gateway", replicas=80, max_replicas=24)).endswith(
        "from 6 to 24 replicas")  # capped like the Kubernetes back-end
    assert run(p, 4)["api-gateway"]


def test_a_multi_step_plan_heals_only_when_every_step_is_applied() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    node = p.topo.nodes["ip-10-0-2-41"]
    victims = {"market-data": 2 / 3, "user-service": 2 / 3}
    fault = NodePressure(node.name, p.t, instance_id=node.instance_id, victims=victims)
    p.add_fault(fault)
    run(p, 3)
    c = SimCluster(p)
    first = step("rollout_restart", "market-data", verify={"check": "rollout_complete"})
    c.act(first)
    obs = c.observe(first)
    assert obs["updated_replicas"] == 0 and obs["observed_generation"] < obs["generation"]
    run(p, 3)
    obs = c.observe(first)
    assert obs["updated_replicas"] == obs["replicas"] == obs["available_replicas"]
    assert fault.active(p.t) and [o.effect for o in p.ledger] == ["mitigated"]
    c.act(step("rollout_restart", "user-service"))
    run(p, 3)
    assert not fault.active(p.t) and [o.effect for o in p.ledger] == ["mitigated", "resolved"]


def test_missing_objects_and_stale_pods_are_refused_like_an_api_server() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    c = SimCluster(p)
    assert c.observe(step("scale", "no-such-service")) == {"exists": False}
    with pytest.raises(SimClusterError, match="404"):
        c.act(step("scale", "no-such-service", factor=2))
    with pytest.raises(SimClusterError, match="404"):  # no HPA in the simulated platform
        c.act(step("set_hpa_bounds", "api-gateway", kind="hpa", min_replicas=4))
    with pytest.raises(SimClusterError, match="no previous revision"):
        c.act(step("rollout_undo", "postgres"))
    pod = p.topo["risk-engine"].pods()[2]
    seen = c.observe(step("restart_pod", pod, kind="pod"))
    stale = ActionStep(action="restart_pod", target=Target(kind="pod", name=pod, uid=seen["uid"]))
    c.act(stale)
    assert c.observe(stale)["uid"] != seen["uid"]  # a new pod object
    with pytest.raises(SimClusterError, match="409"):
        c.act(stale)
    assert len(p._pending) == 1


def test_a_failed_scale_is_rolled_back_to_the_snapshot() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    c = SimCluster(p)
    s = step("scale", "user-service", factor=2.0)
    snap = c.snapshot(s)
    c.act(s)
    run(p, 3)
    assert p.replicas["user-service"] == 6
    assert c.restore(s, snap) == "restored deployment/default/user-service to 3 replicas"
    run(p, 3)
    assert p.replicas["user-service"] == 3
    assert [o.action for o in p.ledger] == ["scale", "scale (rolled back)"]


def test_the_ledger_names_the_sre_action_a_step_belongs_to() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    s = step("rollout_restart", "market-data")
    sre = SreAction(action_id="plan-1-s0", idempotency_key="k", plan_id="plan-1",
                    incident_id="inc-1", step=s, policy="AUTO", approved_by=["policy:AUTO"])
    c = SimCluster(p, lookup=lambda st: sre if st == s else None)
    p.add_fault(SlowUpstream("market-data", p.t))
    c.act(s)
    run(p, 3)
    o = p.ledger[0]
    assert (o.action_id, o.plan_id, o.incident_id, o.effect) == (
        "plan-1-s0", "plan-1", "inc-1", "resolved")
    assert c.applied == {"plan-1-s0"}


async def test_the_worker_back_end_acts_on_the_simulated_cluster_over_http() -> None:
    p = Platform(seed=1, start=DEFAULT_EPOCH)
    fault = bad_deploy(p)
    server = await ClusterServer(SimCluster(p), free_port()).start()
    targets = ActionTargets.from_settings(
        Settings(kubernetes={"simulator_url": server.url}))  # type: ignore[arg-type]
    try:
        undo = step("rollout_undo", "api-gateway")
        reboot = ActionStep(action="reboot_instance",
                            target=Target(kind="ec2", name="i-0a1b2c3d4e5f60117"))
        assert targets.available(undo) and targets.available(reboot)  # Kubernetes and AWS
        assert (await targets.observe(undo))["exists"] is True
        assert "back from revision" in await targets.act(undo)
        with pytest.raises(ClientError, match="404"):
            await targets.act(step("scale", "nope", factor=2))
        run(p, 4)
        assert not fault.active(p.t)
    finally:
        await targets.close()
        await server.stop()
    with pytest.raises(ClientError, match="unreachable"):
        await SimClusterActions(server.url, timeout=2).observe(undo)


async def test_an_act_waits_until_the_replay_knows_its_sre_action() -> None:
    """The executor acts as soon as it reads the sre-action; the replay's own consumer may
    read it a moment later. The call waits for it, so the ledger names the action (before:
    an unnamed change, and the executed action recorded as refused)."""
    import asyncio

    p = Platform(seed=1, start=DEFAULT_EPOCH)
    s = step("rollout_restart", "market-data")
    sre = SreAction(action_id="plan-1-s0", idempotency_key="k", plan_id="plan-1",
                    incident_id="inc-1", step=s, policy="AUTO", approved_by=["policy:AUTO"])
    seen: list[SreAction] = []
    c = SimCluster(p, lookup=lambda st: seen[0] if seen and st == s else None)
    server = await ClusterServer(c, free_port(), attribution_wait=5.0).start()
    targets = ActionTargets.from_settings(
        Settings(kubernetes={"simulator_url": server.url}))  # type: ignore[arg-type]
    p.add_fault(SlowUpstream("market-data", p.t))
    try:
        acting = asyncio.create_task(targets.act(s))
        await asyncio.sleep(0.2)  # the replay reads the sre-action after the executor
        seen.append(sre)
        await acting
    finally:
        await targets.close()
        await server.stop()
    run(p, 3)
    assert c.applied == {"plan-1-s0"}
    assert p.ledger[0].action_id == "plan-1-s0"

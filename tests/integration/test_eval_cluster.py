"""The eval's closed loop through the simulated cluster: the worker's executor acts.

A shortened bad-deploy window after 2 h of history through a real worker whose
executor's back-end is the simulated cluster the replay serves
(``kubernetes.simulator_url``, not dry-run). The agent's rollback (approved by the
simulated on-call) reaches the platform only because the executor executed it
there: the cluster saw the call, the ledger names the action, the fault cleared,
and the executor's own result says it succeeded.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sre_agent.commands.eval import cluster_env
from sre_agent.devstack import free_port
from sre_agent.sim import DEFAULT_EPOCH, SCENARIOS, Platform, Topology, plan
from sre_agent.sim.replay import Replayer
from sre_agent.sim.stack import agent_env

pytestmark = pytest.mark.integration


async def test_the_executor_heals_the_platform_through_the_simulated_cluster(
        kafka_broker, worker_factory, kafka_io) -> None:
    topo = Topology.default()
    port = free_port()
    w = worker_factory(extra_env={**agent_env(topo), **cluster_env(port)}).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    # the executor reports once its verification saw the anomaly cleared: ~5 sample-min
    # after the rollback, and it polls in wall time (0.05 s ~ 40 sample-s, more under
    # load); 25 min left 1-2 sample-min after the report, and a loaded CI run none
    sc = replace(SCENARIOS["bad_deploy_error_surge"], duration=40 * 60.0, onset=5 * 60.0)
    p = Platform(seed=7, start=DEFAULT_EPOCH, topology=topo)
    segments = plan([sc], p.t, history=2 * 3600.0, gap=0.0)
    rep = Replayer(kafka_broker.bootstrap, pfx, w.url + "/status", p, segments,
                   protected=["wallet*"], cluster_port=port)

    record = await rep.run()

    assert record.info["cluster"]["act"] >= 1, record.info["cluster"]
    healed = [o for o in record.outcomes if o["effect"] == "resolved"]
    assert healed and healed[0]["action"] == "rollout_undo", record.outcomes
    aid = healed[0]["action_id"]  # the ledger names the sre-action the executor executed
    results = [o.payload for o in record.observations if o.topic == "action-results"
               and o.payload.get("action_id") == aid]
    if not results:  # reported after the replay stopped recording: read it from the topic
        results = [r for r in await kafka_io.read(
            pfx + "action-results", timeout=60,
            until=lambda ms: any(m.get("action_id") == aid for m in ms))
            if r.get("action_id") == aid]
    assert results and results[-1]["status"] == "succeeded", results
    assert results[-1]["dry_run"] is False and "rolled deployment/" in results[-1]["detail"]
    assert not [o for o in record.outcomes if o["effect"] == "refused"], record.outcomes

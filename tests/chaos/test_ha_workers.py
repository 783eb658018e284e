"""Three workers side by side (the HA set-up), one killed half-way: every plan is posted
to Slack exactly once and every approved action runs exactly once.

Real broker, PostgreSQL (audit log and idempotency claims), the Slack Web API
stand-in (real slack-sdk client) and kmock (real kubernetes-asyncio client).
Several bad-deploy incidents spread over the partitions; each gets a plan
(MEDIUM, one approval) posted to Slack; one worker is SIGKILLed; the plans are
approved through the API of the survivors; each deployment is rolled back once.
Checked against the stand-ins' request logs and the audit log's idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from typing import Any

import kmock
import pytest

from sre_agent.schemas import EvidenceItem, Hypothesis, Incident, RcaResult, utcnow
from sre_agent.sinks.slack import APPROVE_ID
from tests.actions_support import (
    audit_rows,
    decision_trail,
    deployment,
    fresh_database,
    http,
    partition_report,
    replicaset,
)
from tests.standins.slack_server import SlackStandin, button_value

pytestmark = pytest.mark.integration

SERVICES = [f"svc-{c}" for c in "abcdef"]
DEPLOY = kmock.resource("apps", "v1", "deployments")
RS = kmock.resource("apps", "v1", "replicasets")
FAST_GROUP = {"SRE_AGENT_WORKER__SESSION_TIMEOUT": "8",
              "SRE_AGENT_WORKER__HEARTBEAT_INTERVAL": "1"}
#: how long the survivors may take to take over a dead worker's plans
HANDOVER = float(os.environ.get("SRE_AGENT_HA_HANDOVER_SECONDS", "90"))


def _rca(iid: str, service: str) -> RcaResult:
    return RcaResult(incident_id=iid, severity="critical", services=[service], hypotheses=[
        Hypothesis(cause_type="bad_deploy", service=service, confidence=0.85,
                   summary=f"{service} v2 failing after its deploy",
                   evidence=[EvidenceItem(kind="deploy", summary="deploy 3 min before",
                                          weight=0.9)])])


async def _kube_report(base: str) -> None:
    """Does the Kubernetes stand-in still answer, and what are its handlers waiting on?"""
    import sys
    import time

    t0 = time.monotonic()
    try:
        status, _ = await asyncio.wait_for(
            http("GET", f"{base}/apis/apps/v1/namespaces/shop/deployments/svc-a"), 5.0)
        print(f"kmock GET: {status} in {time.monotonic() - t0:.2f}s")
    except Exception as exc:  # noqa: BLE001 - a report
        print(f"kmock GET: {type(exc).__name__} after {time.monotonic() - t0:.2f}s")
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=30)
        if any("kmock" in f.f_code.co_filename for f in frames):
            task.print_stack(limit=12, file=sys.stdout)


def _patches(km: Any, service: str) -> int:
    path = f"/apis/apps/v1/namespaces/shop/deployments/{service}"
    return sum(1 for r in list(km) if str(r.method).upper().endswith("PATCH")
               and r.url.path == path)


# Fixed defects this test found: a vote sent to a replica that does not own the plan got
# 404 (votes and the pending list now fall back to the read model every replica builds);
# the executor saw no open incident on another replica's partition (incident status falls
# back to the read model); a survivor lost the first record of a taken-over partition that
# had no committed offset (Faust rewinds to the committed offset, and aiokafka does not
# seek when there is none: streams/faust_fixes.py).
async def test_three_workers_one_killed_post_and_act_exactly_once(
        worker_factory: Any, kafka_io: Any, wait_for: Any, pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn)
    slack = await SlackStandin().start()
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        for i, svc in enumerate(SERVICES):
            dep = deployment(svc, "shop", f"uid-{svc}", revision=2, image=f"{svc}:v2")
            km.objects[DEPLOY, "shop", svc] = dep
            km.objects[RS, "shop", f"{svc}-aaa"] = replicaset(dep, 1, f"{svc}:v1", "aaa")
            km.objects[RS, "shop", f"{svc}-bbb"] = replicaset(dep, 2, f"{svc}:v2", "bbb")
        env = {
            **FAST_GROUP,
            "SRE_AGENT_KAFKA__PARTITIONS": "4",
            "SRE_AGENT_POSTGRES__DSN": dsn,
            "SRE_AGENT_SLACK__BOT_TOKEN": slack.token,
            "SRE_AGENT_SLACK__SIGNING_SECRET": "ha-signing-secret",
            "SRE_AGENT_SLACK__BASE_URL": slack.base_url,
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__DEFAULT_NAMESPACE": "shop",
            "SRE_AGENT_ACTIONS__VERIFY_POLL_SECONDS": "0.2",
            "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice"}',
        }
        ws = [worker_factory(extra_env=env, name=f"ha{i}") for i in range(3)]
        try:
            await asyncio.gather(*(asyncio.to_thread(w.start) for w in ws))
            pfx = ws[0].env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
            for i, svc in enumerate(SERVICES):
                iid = f"inc-ha-{i}"
                await kafka_io.send(pfx + "incidents", Incident(
                    incident_id=iid, title=f"{svc} errors", severity="critical", services=[svc],
                    fingerprint=f"fp-{iid}", opened_at=utcnow()))
                await kafka_io.send(pfx + "rca-results", _rca(iid, svc))
            await wait_for(lambda: len(slack.plan_posts()) >= len(SERVICES), timeout=90)
            plan_ids = [button_value(m, APPROVE_ID) for m in slack.plan_posts()]

            # one of three dies: the one holding most partitions (with standby replicas
            # Faust's sticky assignor may leave a worker idle; killing that moves nothing)
            victim = max(ws, key=lambda w: sum(p.startswith(pfx) for p in
                                               w.status()["broker"]["assigned"]))
            victim.stop(signal.SIGKILL)
            alive = [w for w in ws if w is not victim]
            answers: dict[str, list[tuple[str, int, Any]]] = {}
            for n, plan_id in enumerate(plan_ids):
                w = alive[n % len(alive)]
                status, body = await http("POST", f"{w.url}/api/approvals/{plan_id}/approve",
                                          b"{}", {"Authorization": "Bearer tok-alice",
                                                  "Content-Type": "application/json"})
                answers.setdefault(plan_id, []).append((w.workdir.name, status, body))
                assert status in (202, 404), (status, body)  # 404: plan state not moved yet
                if status == 404:  # the plan's partition is being recovered: retry
                    async def accepted(w: Any = w, plan_id: str = plan_id) -> bool:
                        s, b = await http("POST", f"{w.url}/api/approvals/{plan_id}/approve",
                                          b"{}", {"Authorization": "Bearer tok-alice",
                                                  "Content-Type": "application/json"})
                        answers[plan_id].append((w.workdir.name, s, b))
                        return s in (202, 409)
                    await wait_for(accepted, timeout=HANDOVER, every=1.0)

            results = await kafka_io.read(pfx + "action-results", timeout=120,
                                          until=lambda ms: len({m["plan_id"] for m in ms})
                                          >= len(SERVICES))

            # the audit rows come through the audit topic and its sink on whichever
            # survivor owns that partition: wait for them, not a fixed time (3 s after the
            # last result was too short on a loaded machine: 5 of 6 rows, a flaky failure)
            async def executed_rows() -> bool:
                return len({r["idempotency_key"] for r in await audit_rows(dsn)
                            if r["action"] == "action.executed"}) >= len(SERVICES)

            with contextlib.suppress(AssertionError):  # the report below says what is missing
                await wait_for(executed_rows, timeout=60)
            await asyncio.sleep(3.0)  # a duplicate execution or post would show by now
            executed = Counter(m["plan_id"] for m in results if m["status"] == "succeeded")
            rows = await audit_rows(dsn)
            keys = Counter(r["idempotency_key"] for r in rows if r["action"] == "action.executed")
            posted = Counter(button_value(m, APPROVE_ID) for m in slack.plan_posts())
            # every incident's Slack thread opened once, across the three replicas
            threads = Counter(m["metadata"]["event_payload"]["incident_id"]
                              for m in slack.messages.values()
                              if (m.get("metadata") or {}).get("event_type") == "sre_agent_incident"
                              and str(m["metadata"]["event_payload"]["key"]).endswith(":open"))
            report = {
                "slack_posts_per_plan": dict(posted),
                "incident_threads": dict(threads),
                "patches_per_deployment": {s: _patches(km, s) for s in SERVICES},
                "executed_per_idempotency_key": dict(keys),
                "succeeded_results_per_plan": dict(executed),
                "results": [(m["plan_id"], m["status"], m.get("detail", "")[:160])
                            for m in results],
            }
            report["trail_of_plans_without_success"] = {
                pid: [(r["actor"], r["action"], r["subject"]) for r in rows
                      if str(r["subject"]).startswith(pid)]
                for pid in plan_ids if pid not in executed}
            print("HA report:", report)
            if (set(executed.values()) != {1} or len(executed) != len(SERVICES)
                    or len(keys) != len(SERVICES)):
                for w in alive:  # where is the missing one? lag per partition, task stacks
                    st = w.status()
                    print(w.workdir.name, "lag:", {k: v for k, v in st["lag"].items() if v},
                          "handover:", st.get("handover"),
                          "events_in:", st["events_in"], "assigned:", st["broker"]["assigned"])
                    os.kill(w.proc.pid, signal.SIGUSR1)  # mode.Worker logs every task's stack
                print("vote answers:", answers)
                for topic in ("action-plans", "approvals", "sre-actions"):
                    print(f"{topic}:", await partition_report(
                        kafka_io.bootstrap, pfx + topic, ws[0].env["SRE_AGENT_WORKER__APP_ID"]))
                await _kube_report(str(kserver.url).rstrip("/"))
                print("kmock requests:", [(str(r.method), r.url.path) for r in list(km)])
                import asyncpg
                con = await asyncpg.connect(dsn)
                try:
                    print("pg activity:", [dict(r) for r in await con.fetch(
                        "SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS q, "
                        "now() - state_change AS for FROM pg_stat_activity "
                        "WHERE datname = current_database()")])
                    print("pg locks waiting:", [dict(r) for r in await con.fetch(
                        "SELECT pid, locktype, mode, granted, objid FROM pg_locks "
                        "WHERE NOT granted OR locktype = 'advisory'")])
                finally:
                    await con.close()
                await asyncio.sleep(3.0)
            assert set(posted.values()) == {1} and len(posted) == len(SERVICES), report
            assert set(threads.values()) == {1} and len(threads) == len(SERVICES), report
            assert set(report["patches_per_deployment"].values()) == {1}, report
            assert len(keys) == len(SERVICES) and set(keys.values()) == {1}, report
            assert set(executed.values()) == {1} and len(executed) == len(SERVICES), report
        except BaseException:
            # every live worker logs its tasks' stacks (mode.Worker on SIGUSR1): a hung
            # send, commit or rebalance shows where it waits (a vote unacknowledged for
            # 15 s came with a survivor's revocation waiting on a commit for a minute)
            for w in ws:
                if w.proc is not None and w.proc.poll() is None:
                    with contextlib.suppress(OSError):
                        os.kill(w.proc.pid, signal.SIGUSR1)
            await asyncio.sleep(2.0)
            for w in ws:
                print(w.workdir, w.tail(6000))
            print("slack plan posts:", len(slack.plan_posts()))
            print(await decision_trail(dsn))
            raise
        finally:
            # stopped off the loop and side by side: a worker finishing an action on
            # SIGTERM calls the stand-ins this loop serves (a blocking stop() in the loop
            # made each one wait out its 60 s stop timeout)
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in ws))
            await slack.stop()

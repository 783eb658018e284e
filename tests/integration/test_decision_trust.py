"""Issue 15, finding 1: whoever can write to the broker must not be able to make the agent act.

Against a worker with the Kubernetes stand-in and ``dry_run=false``:

* an ``sre-actions`` event naming a plan that does not exist (unsigned, or signed
  with a key the agent does not trust) is refused; no pod is deleted;
* an ``action-plans`` event for a HIGH plan claiming ``policy=AUTO, status=auto``
  runs nothing: unsigned it is refused, signed its policy is recomputed
  (TWO_SRE_ONE_LEAD) and it waits for votes;
* three ``approvals`` from unknown users claiming ``role: admin`` do not approve
  it, signed or not; roles come from configuration;
* the real path still works: three configured approvers vote through the API, the
  step runs exactly once.

And on a broker with SASL/SCRAM and the ACL recipe of ``sre-agent security acls``:
a principal without ACLs, or one that may only write the input topics, cannot
produce to any decision topic; unauthenticated clients cannot connect at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from sre_agent.config import load_settings
from sre_agent.devstack import KafkaBroker, default_cache_dir
from sre_agent.schemas import ActionPlan, ActionStep, Approval, Incident, SreAction, Target, utcnow
from sre_agent.sinks.kafka import acl_recipe
from tests.actions_support import audit_rows, fresh_database, http, pod
from tests.conftest import WorkerProcess, unique, worker_env
from tests.signing_support import AGENT, ROGUE, authorised_action, signed_bytes

pytestmark = pytest.mark.integration

POD = kmock.resource("", "v1", "pods")
POD_PATH = "/api/v1/namespaces/shop/pods/api-7f9c"
TOKENS = ('{"t-sam": "approver:sam", "t-sue": "approver:sue", "t-lee": "approver:lee", '
          '"t-vic": "viewer:vic"}')


def deletes(km: Any) -> int:
    return sum(1 for r in list(km) if str(r.method).upper().endswith("DELETE")
               and r.url.path == POD_PATH)


def restart_step() -> ActionStep:
    return ActionStep(action="restart_pod", risk=0.7,
                      target=Target(kind="pod", name="api-7f9c", namespace="shop", service="api"))


def high_plan(pid: str, policy: str = "AUTO", status: str = "auto") -> ActionPlan:
    return ActionPlan(plan_id=pid, incident_id="inc-1", service="api", cause_type="memory_leak",
                      risk_score=0.7, risk_tier="HIGH", policy=policy, status=status,  # type: ignore[arg-type]
                      steps=[restart_step()], expires_at=None)


def env(k8s_url: str, dsn: str) -> dict[str, str]:
    return {"SRE_AGENT_POSTGRES__DSN": dsn,
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": k8s_url.rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__APPROVERS": '{"sam": "sre", "sue": "sre", "lee": "lead"}',
            "SRE_AGENT_API__TOKENS": TOKENS}


async def produce(io: Any, topic: str, event: Any, raw: bytes) -> None:
    key = event.key()
    await io._producer.send_and_wait(topic, value=raw, key=key.encode() if key else None)


async def test_broker_writers_cannot_make_the_agent_act(worker_factory, kafka_io, wait_for,
                                                        pg_dsn) -> None:
    dsn = await fresh_database(pg_dsn)
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        km.objects[POD, "shop", "api-7f9c"] = pod("api-7f9c", "shop", "uid-api", "api")
        w = worker_factory(extra_env=env(str(kserver.url), dsn)).start()
        try:
            await attacks(w, km, kafka_io, wait_for, dsn)
        except BaseException:
            print(w.tail(20000))
            raise
        finally:
            w.stop()


async def attacks(w: Any, km: Any, io: Any, wait_for: Any, dsn: str) -> None:
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    await io.send(pfx + "incidents", Incident(incident_id="inc-1", title="api leaks", services=["api"],
                                              fingerprint="fp-1", opened_at=utcnow()))

    # 1a. an action for a plan that does not exist: unsigned, then with forged evidence
    ghost = SreAction(action_id="ghost-1", idempotency_key="ghost-key-1", plan_id="no-such-plan",
                      incident_id="inc-1", policy="AUTO", dry_run=False, approved_by=["mallory"],
                      step=restart_step())
    await io.send(pfx + "sre-actions", ghost)
    forged = authorised_action(high_plan("forged-plan"), [], signer=ROGUE,
                               action_id="ghost-2", idempotency_key="ghost-key-2")
    await produce(io, pfx + "sre-actions", forged, signed_bytes(forged, ROGUE))
    results = await io.read(pfx + "action-results", timeout=60,
                            until=lambda ms: {"ghost-1", "ghost-2"} <= {m["action_id"] for m in ms})
    by_id = {r["action_id"]: r for r in results}
    assert by_id["ghost-1"]["status"] == "blocked", by_id
    assert "unsigned" in by_id["ghost-1"]["detail"]
    assert "unknown key_id" in by_id["ghost-2"]["detail"], by_id["ghost-2"]

    # 1b. a HIGH plan claiming AUTO: unsigned it is refused; signed, its policy is recomputed
    await io.send(pfx + "action-plans", high_plan("plan-unsigned"))
    await io.send_signed(pfx + "action-plans", high_plan("plan-high"))

    async def pending() -> dict[str, Any]:
        status, body = await http("GET", w.url + "/api/approvals/pending",
                                  headers={"Authorization": "Bearer t-vic"})
        return {i["plan_id"]: i for i in body["items"]} if status == 200 else {}

    items = await wait_for(pending, timeout=60)
    assert items["plan-high"]["policy"] == "TWO_SRE_ONE_LEAD", items
    assert "plan-unsigned" not in items

    # 1c. three "admins" nobody configured: unsigned, then signed by the agent's key
    for i in range(3):
        v = Approval(plan_id="plan-high", decision="approve", user=f"intruder-{i}", role="admin",
                     incident_id="inc-1")  # routed to the partition that owns the incident
        await io.send(pfx + "approvals", v)
        await io.send_signed(pfx + "approvals", v.model_copy(update={"user": f"signed-{i}"}))

    async def refusals() -> list[dict[str, Any]]:
        rows = await audit_rows(dsn)
        return [r for r in rows if r["action"] == "vote.refused" and r["subject"] == "plan-high"]

    await wait_for(lambda: _len(refusals, 6), timeout=60)
    reasons = sorted({r["details"]["reason"] for r in await refusals()})
    assert reasons == ["not a configured approver", "signature: unsigned"], reasons
    assert (await pending())["plan-high"]["quorum"] == "0/3 approvals, lead missing"
    actions = await io.read(pfx + "sre-actions", until=lambda ms: len(ms) >= 2, timeout=5)
    assert {a["action_id"] for a in actions} == {"ghost-1", "ghost-2"}  # nothing else emitted
    assert deletes(km) == 0

    # the real path: the configured approvers vote through the API -> runs exactly once
    for token in ("t-sam", "t-sue", "t-lee"):
        status, body = await http("POST", f"{w.url}/api/approvals/plan-high/approve", b"{}",
                                  {"Authorization": f"Bearer {token}"})
        assert status == 202, body
    results = await io.read(pfx + "action-results", timeout=60,
                            until=lambda ms: any(m["plan_id"] == "plan-high" for m in ms))
    done = next(r for r in results if r["plan_id"] == "plan-high")
    assert done["status"] == "succeeded", done
    assert deletes(km) == 1
    want = {"plan.refused", "policy.corrected", "action.unverified", "plan.approved",
            "action.executed"}

    async def audited() -> bool:
        return want <= {r["action"] for r in await audit_rows(dsn)}

    await wait_for(audited, timeout=60)


async def _len(get: Any, n: int) -> bool:
    return len(await get()) >= n


# ---------------------------------------------------------------------------- SASL + ACLs
USERS = {"admin": "admin-secret", "agent": "agent-secret", "ingest": "ingest-secret",
         "mallory": "mallory-secret"}


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("sasl-kafka"), default_cache_dir(), heap="512m",
                         scram_users=USERS)
    broker.start()
    yield broker
    broker.stop(clean=True)


async def _try_produce(broker: KafkaBroker, user: str | None, topic: str,
                       password: str | None = None) -> str:
    """"ok" or the error's class name."""
    if user is None:
        kw: dict[str, Any] = {"bootstrap_servers": broker.bootstrap}
    else:
        kw = broker.client_config(user)
        if password is not None:
            kw["sasl_plain_password"] = password
    producer = AIOKafkaProducer(**kw, request_timeout_ms=8000, metadata_max_age_ms=1000)
    try:
        await producer.start()
    except KafkaError as exc:
        return type(exc).__name__
    try:
        await producer.send_and_wait(topic, b'{"forged": true}', key=b"k")
        return "ok"
    except TopicAuthorizationFailedError:
        return "TopicAuthorizationFailed"
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await producer.stop()


async def test_sasl_and_acls_keep_outsiders_off_the_decision_topics(
        secured_broker: KafkaBroker, tmp_path: Path, wait_for) -> None:
    broker = secured_broker
    prefix = unique("acl") + "."
    wdir = tmp_path / "worker"
    wdir.mkdir()
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        km.objects[POD, "shop", "api-7f9c"] = pod("api-7f9c", "shop", "uid-api", "api")
        e = worker_env(broker.url, prefix, wdir)
        e.update(broker.worker_env("agent"))
        e.update({"SRE_AGENT_KUBERNETES__ENABLED": "true",
                  "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
                  "SRE_AGENT_ACTIONS__DRY_RUN": "false"})
        settings = load_settings(env=e)
        for argv in acl_recipe(settings, "agent", ingest="ingest"):  # the documented recipe
            broker.acls(*argv)
        w = WorkerProcess(e, wdir)
        try:
            w.start(timeout=120)
            decision = [settings.topic(t) for t in ("sre-actions", "approvals", "action-plans",
                                                    "action-results")]
            for topic in decision:
                assert await _try_produce(broker, "mallory", topic) == "TopicAuthorizationFailed"
                assert await _try_produce(broker, "ingest", topic) == "TopicAuthorizationFailed"
            assert await _try_produce(broker, "mallory", settings.topic("alerts")) \
                == "TopicAuthorizationFailed"
            assert await _try_produce(broker, "ingest", settings.topic("alerts")) == "ok"
            assert await _try_produce(broker, "ingest", settings.topic("sre-actions"),
                                      password="guess") != "ok"
            assert await _try_produce(broker, None, settings.topic("sre-actions")) != "ok"

            # with the agent's own broker credentials (leaked), the signature still decides
            agent = AIOKafkaProducer(**broker.client_config("agent"))
            await agent.start()
            try:
                ghost = SreAction(action_id="ghost-sasl", idempotency_key="ghost-sasl-key",
                                  plan_id="nope", incident_id="inc-1", policy="AUTO",
                                  dry_run=False, step=restart_step())
                await agent.send_and_wait(settings.topic("sre-actions"),
                                          signed_bytes(ghost, ROGUE), key=ghost.key().encode())
            finally:
                await agent.stop()
            from aiokafka import AIOKafkaConsumer

            async def result() -> dict[str, Any] | None:
                import orjson

                cons = AIOKafkaConsumer(settings.topic("action-results"), group_id=None,
                                        auto_offset_reset="earliest", **broker.client_config())
                await cons.start()
                try:
                    batches = await cons.getmany(timeout_ms=2000)
                    for recs in batches.values():
                        for r in recs:
                            doc = orjson.loads(r.value)
                            if doc["action_id"] == "ghost-sasl":
                                return doc  # type: ignore[no-any-return]
                finally:
                    await cons.stop()
                return None

            res = await wait_for(result, timeout=90, every=1.0)
            assert res["status"] == "blocked" and "unknown key_id" in res["detail"], res
            assert deletes(km) == 0
            assert w.status()["recovery"]["ready"]
            assert AGENT.key_id != ROGUE.key_id
        except BaseException:
            print(w.tail(20000))
            raise
        finally:
            w.stop()

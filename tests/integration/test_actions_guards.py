"""The executor's guards on the real broker, approvals through the REST API:

* a plan made for a pod that has since been replaced is skipped, never executed
  against the new healthy pod;
* a plan whose incident has since resolved is skipped;
* a failed post-action verification rolls the action back (scale restored);
* a plan nobody approves expires (and can no longer be approved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kmock
import pytest

from sre_agent.schemas import Anomaly, EvidenceItem, Hypothesis, Incident, RcaResult, utcnow
from tests.actions_support import audit_rows, deployment, fresh_database, http, pod

pytestmark = pytest.mark.integration

DEPLOY = kmock.resource("apps", "v1", "deployments")
POD = kmock.resource("", "v1", "pods")

# the packaged traffic-surge playbook, with a 2 s verification window for the test
FAST_SCALE = """
name: traffic-surge-scale
triggers:
  - on_root_cause: {cause_types: [traffic_surge]}
actions:
  - action: scale
    target: {kind: deployment, name: "{service}"}
    params: {factor: 1.5, max_replicas: 50}
    risk: 0.25
    verify: {check: anomaly_cleared, metric: http_latency_p99_seconds, within: 2}
    rollback: restore_snapshot
"""


def incident(iid: str, service: str, status: str = "open") -> Incident:
    return Incident(incident_id=iid, status=status, title=f"{service} trouble", services=[service],
                    fingerprint=f"fp-{iid}", opened_at=utcnow())


def rca(iid: str, cause: str, service: str, ref: str | None = None) -> RcaResult:
    ev = [EvidenceItem(kind="k8s", summary=f"{cause} signs", weight=1.0, ref=ref)]
    return RcaResult(incident_id=iid, services=[service], hypotheses=[
        Hypothesis(cause_type=cause, service=service, confidence=0.8, summary=f"{cause}",
                   evidence=ev)])


async def approve(w: Any, plan_id: str, token: str = "tok-alice") -> None:
    status, body = await http("POST", f"{w.url}/api/approvals/{plan_id}/approve",
                              b'{"comment": "go"}', {"Authorization": f"Bearer {token}"})
    assert status == 202 and body["role"] == "oncall", body


def calls(km: Any, method: str, path: str) -> int:
    return sum(1 for r in list(km) if str(r.method).upper().endswith(method) and r.url.path == path)


async def test_stale_plans_are_skipped_and_failed_verification_rolls_back(
        worker_factory, kafka_io, wait_for, pg_dsn, tmp_path: Path) -> None:
    dsn = await fresh_database(pg_dsn)
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "fast.yaml").write_text(FAST_SCALE, encoding="utf-8")
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as kserver:
        km.objects[DEPLOY, "shop", "cart"] = deployment("cart", "shop", "uid-cart", 3, "cart:v3", 4)
        km.objects[DEPLOY, "shop", "search"] = deployment("search", "shop", "uid-search", 1, "s:v1", 2)
        km.objects[POD, "shop", "search-abc"] = pod("search-abc", "shop", "uid-pod-1", "search")
        w = worker_factory(extra_env={
            "SRE_AGENT_POSTGRES__DSN": dsn,
            "SRE_AGENT_KUBERNETES__ENABLED": "true",
            "SRE_AGENT_KUBERNETES__HOST": str(kserver.url).rstrip("/"),
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__DEFAULT_NAMESPACE": "shop",
            "SRE_AGENT_ACTIONS__PLAYBOOKS_DIR": str(books),
            "SRE_AGENT_ACTIONS__VERIFY_POLL_SECONDS": "0.2",
            "SRE_AGENT_ACTIONS__APPROVAL_TTL_SECONDS": "20",
            "SRE_AGENT_API__TOKENS": '{"tok-alice": "approver:alice", "tok-vic": "viewer:vic"}',
        }).start()
        try:
            await scenario(w, km, kafka_io, wait_for, dsn)
        except BaseException:
            print(w.tail(20000))
            raise
        finally:
            w.stop()


async def scenario(w: Any, km: Any, kafka_io: Any, wait_for: Any, dsn: str) -> None:
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    for iid, svc in (("inc-cart", "cart"), ("inc-pod", "search"), ("inc-old", "search"),
                     ("inc-idle", "cart")):
        await kafka_io.send(pfx + "incidents", incident(iid, svc))
    await kafka_io.send(pfx + "anomalies", Anomaly(
        anomaly_id="an-cart", series="p99{cart}", metric="http_latency_p99_seconds", service="cart",
        observed=2.5, expected=0.3, lower=0.0, upper=0.6, deviation=9.0, score=0.9))
    await kafka_io.send(pfx + "rca-results", rca("inc-cart", "traffic_surge", "cart"))
    await kafka_io.send(pfx + "rca-results", rca("inc-pod", "memory_leak", "search",
                                                 ref="pod/shop/search-abc"))
    await kafka_io.send(pfx + "rca-results", rca("inc-old", "traffic_surge", "search"))
    await kafka_io.send(pfx + "rca-results", rca("inc-idle", "db_pool_exhaustion", "cart"))
    plans = await kafka_io.read(pfx + "action-plans", until=lambda ms: len(ms) >= 4, timeout=60)
    by_inc = {p["incident_id"]: p for p in plans}
    assert by_inc["inc-pod"]["steps"][0]["target"]["uid"] == "uid-pod-1"
    # LOW risk, but auto-remediation is off by default: each waits for one approval
    assert {p["risk_tier"] for p in plans} == {"LOW"}
    assert {p["policy"] for p in plans} == {"ONE_APPROVAL"}

    async def pending() -> int:
        status, body = await http("GET", w.url + "/api/approvals/pending",
                                  headers={"Authorization": "Bearer tok-vic"})
        return body["count"] if status == 200 else -1

    async def all_pending() -> bool:
        return await pending() == 4

    await wait_for(all_pending, timeout=30)
    status, body = await http("POST", f"{w.url}/api/approvals/{by_inc['inc-cart']['plan_id']}/approve",
                              b"{}", {"Authorization": "Bearer tok-vic"})
    assert status == 403, body  # a viewer may not vote
    status, body = await http("POST", f"{w.url}/api/approvals/nope/approve", b"{}",
                              {"Authorization": "Bearer tok-alice"})
    assert status == 404

    # the pod is replaced (new uid) before anyone approves; the incident inc-old resolves
    km.objects[POD, "shop", "search-abc"] = pod("search-abc", "shop", "uid-pod-2", "search")
    await kafka_io.send(pfx + "incidents", incident("inc-old", "search", status="resolved"))
    await wait_for(lambda: tickets_resolved(dsn, "inc-old"), timeout=30)
    for iid in ("inc-pod", "inc-old", "inc-cart"):
        await approve(w, by_inc[iid]["plan_id"])

    results = await kafka_io.read(pfx + "action-results", until=lambda ms: len(ms) >= 3, timeout=60)
    res = {r["incident_id"]: r for r in results}
    assert res["inc-pod"]["status"] == "skipped"
    assert "another object now (uid uid-pod-2, plan assumed uid-pod-1)" in res["inc-pod"]["detail"]
    assert calls(km, "DELETE", "/api/v1/namespaces/shop/pods/search-abc") == 0
    assert res["inc-old"]["status"] == "skipped" and "is resolved" in res["inc-old"]["detail"]
    assert km.objects[DEPLOY, "shop", "search"]["spec"]["replicas"] == 2  # untouched
    # scaled 4 -> 6, the latency anomaly did not clear within 2 s: rolled back to 4
    cart = res["inc-cart"]
    assert cart["status"] == "rolled_back" and cart["verified"] is False, cart
    assert "from 4 to 6 replicas" in cart["detail"] and "restored" in cart["detail"]
    # scale and its restore both use the scale subresource (least-privilege RBAC)
    assert calls(km, "PATCH", "/apis/apps/v1/namespaces/shop/deployments/cart/scale") == 2
    assert km.objects[DEPLOY, "shop", "cart"]["spec"]["replicas"] == 4

    async def audited() -> set[str]:
        return {r["action"] for r in await audit_rows(dsn)}

    want = {"action.skipped", "action.executed", "action.verification_failed",
            "action.rolled_back", "plan.failed", "ticket.resolved"}
    await wait_for(lambda: _superset(audited, want), timeout=60)

    # nobody approved inc-idle's plan: it expires (20 s TTL), and a late vote is refused
    idle = by_inc["inc-idle"]["plan_id"]
    await wait_for(lambda: _superset(audited, {"plan.expired"}), timeout=60)
    assert await pending() == 0
    status, body = await http("POST", f"{w.url}/api/approvals/{idle}/approve", b"",
                              {"Authorization": "Bearer tok-alice"})
    assert status == 409 and body["status"] == "expired", body


async def _superset(get: Any, want: set[str]) -> bool:
    return want <= await get()


async def tickets_resolved(dsn: str, iid: str) -> bool:
    return any(r["action"] == "ticket.resolved" and r["subject"] == iid
               for r in await audit_rows(dsn))

"""Helpers for the action/approval/audit integration tests (no fixtures here)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson

__all__ = ["audit_rows", "deployment", "fresh_database", "http", "pod", "replicaset",
           "verify_cli"]


async def fresh_database(pg_dsn: str) -> str:
    """Create an empty database on the session PostgreSQL; return its DSN.

    Each test gets its own audit chain, so tests never see each other's rows.
    """
    name = "audit_" + uuid.uuid4().hex[:10]
    con = await asyncpg.connect(pg_dsn)
    try:
        await con.execute(f'CREATE DATABASE "{name}"')
    finally:
        await con.close()
    base, _, _ = pg_dsn.rpartition("/")
    return f"{base}/{name}"


# ---------------------------------------------------------------- Kubernetes stand-in data
def deployment(name: str, ns: str, uid: str, revision: int, image: str,
               replicas: int = 3) -> dict[str, Any]:
    """A Deployment as the API server would return it (with its revision annotation)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "generation": revision,
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                         "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}},
            "status": {"replicas": replicas, "updatedReplicas": replicas,
                       "availableReplicas": replicas, "observedGeneration": revision}}


def replicaset(dep: dict[str, Any], revision: int, image: str, suffix: str) -> dict[str, Any]:
    """A ReplicaSet owned by ``dep`` holding the pod template of ``revision``."""
    name = dep["metadata"]["name"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-{suffix}", "namespace": dep["metadata"]["namespace"],
                         "uid": f"rs-{name}-{revision}",
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": name, "uid": dep["metadata"]["uid"],
                                              "controller": True}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "pod-template-hash": suffix}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}


def pod(name: str, ns: str, uid: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": {"app": app}},
            "spec": {"containers": [{"name": app, "image": "x"}], "nodeName": "node-1"},
            "status": {"phase": "Running"}}


# ---------------------------------------------------------------- HTTP and PostgreSQL reads
async def http(method: str, url: str, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request with aiohttp (never blocks the loop serving the stand-ins)."""
    async with aiohttp.ClientSession() as s, s.request(method, url, data=body,
                                                       headers=headers or {}) as r:
        text = await r.text()
        try:
            return r.status, orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            return r.status, text


async def audit_rows(dsn: str) -> list[dict[str, Any]]:
    """Rows of the audit log (empty while the worker has not migrated yet)."""
    con = await asyncpg.connect(dsn)
    try:
        if not await con.fetchval("SELECT to_regclass('audit_log') IS NOT NULL"):
            return []
        rows = await con.fetch("SELECT id, actor, action, subject, idempotency_key, "
                               "details::text AS details FROM audit_log ORDER BY id")
        return [{**dict(r), "details": orjson.loads(r["details"])} for r in rows]
    finally:
        await con.close()


async def decision_trail(dsn: str) -> str:
    """What a failing action test needs to see: the audit actions per subject and the
    executor's durable claims, from PostgreSQL."""
    out = []
    try:
        for r in await audit_rows(dsn):
            d = r["details"]
            out.append(f"audit {r['id']} {r['actor']} {r['action']} {r['subject']} "
                       f"{d.get('plan_id') or d.get('status') or ''} {str(d.get('reason') or '')[:80]}")
        con = await asyncpg.connect(dsn)
        try:
            if await con.fetchval("SELECT to_regclass('action_claims') IS NOT NULL"):
                for r in await con.fetch("SELECT * FROM action_claims ORDER BY claimed_at"):
                    out.append("claim " + " ".join(f"{k}={r[k]}" for k in (
                        "idempotency_key", "action_id", "status", "owner", "lease_until")
                        if k in r.keys()))
        finally:
            await con.close()
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        out.append(f"(trail unavailable: {exc})")
    return "\n".join(out)


async def decision_summary(dsn: str) -> str:
    """The decision trail in a few lines, one per plan (audit actions in order, then its
    claims' statuses): printed first by failing tests, so a CI log excerpt shows it."""
    per: dict[str, list[str]] = {}
    try:
        for r in await audit_rows(dsn):
            d = r["details"]
            key = str(d.get("plan_id") or r["subject"])
            per.setdefault(key, []).append(r["action"])
        con = await asyncpg.connect(dsn)
        try:
            if await con.fetchval("SELECT to_regclass('action_claims') IS NOT NULL"):
                for r in await con.fetch("SELECT * FROM action_claims ORDER BY claimed_at"):
                    per.setdefault(f"claim {r['target']}", []).append(
                        f"{r['status']} owner={r['owner']}")
        finally:
            await con.close()
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        return f"(decision summary unavailable: {exc})"
    return "\n".join(f"trail {k}: {' > '.join(v)}" for k, v in sorted(per.items()))


async def partition_report(bootstrap: str, topic: str, group: str) -> dict[int, Any]:
    """Per partition: (offset, key) of every message, end offset, the group's commit."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                            enable_auto_commit=False)
    await cons.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(cons.partitions_for_topic(topic) or [])]
        if not tps:
            await cons._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(cons.partitions_for_topic(topic) or [])]
        cons.assign(tps)
        await cons.seek_to_beginning(*tps)
        ends = await cons.end_offsets(tps)
        out: dict[int, Any] = {tp.partition: {"end": ends[tp], "committed": getattr(
            committed.get(tp), "offset", None), "messages": []} for tp in tps}
        async def behind() -> bool:
            return any([await cons.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for tp, recs in (await cons.getmany(timeout_ms=500)).items():
                out[tp.partition]["messages"] += [(r.offset, r.key) for r in recs]
        return out
    finally:
        await cons.stop()


def verify_cli(dsn: str) -> subprocess.CompletedProcess[str]:
    """``sre-agent audit verify`` against ``dsn`` as a separate process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
    env["SRE_AGENT_POSTGRES__DSN"] = dsn
    return subprocess.run([sys.executable, "-m", "sre_agent", "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=60)

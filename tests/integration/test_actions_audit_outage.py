"""The audit sink loses nothing when PostgreSQL is down, even across a worker restart.

The worker starts with its database down: records wait (health degraded, offsets
not committed); the worker is stopped; the database comes up; the restarted
worker writes every record exactly once and the chain verifies. A record
PostgreSQL refuses for good (a NUL character) goes to the DLQ, the next is written.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sre_agent.devstack import PostgresServer, free_port
from sre_agent.schemas import AuditRecord
from tests.actions_support import audit_rows, verify_cli

pytestmark = pytest.mark.integration


async def test_audit_survives_database_outage(worker_factory, kafka_io, wait_for) -> None:
    port = free_port()
    pg = PostgresServer(port=port)  # own cluster (a temp dir the postgres user can reach)
    w = worker_factory(extra_env={"SRE_AGENT_POSTGRES__DSN": pg.dsn})
    try:
        await scenario(w, pg, kafka_io, wait_for)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()
        pg.stop(clean=True)


async def scenario(w: Any, pg: PostgresServer, kafka_io: Any, wait_for: Any) -> None:
    w.start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    records = [AuditRecord(actor="test", action="outage.record", subject=f"s{i}", details={"i": i})
               for i in range(4)]
    for rec in records[:3]:
        await kafka_io.send(pfx + "audit", rec)

    def degraded() -> Any:
        h = w.status()["health"].get("audit", {})
        return h if h.get("ok") is False and h.get("pending") else None

    health = await wait_for(degraded, timeout=60)
    assert "onnect" in health["error"] or "refused" in health["error"].lower(), health
    assert w.status()["status"] == "degraded"
    assert w.stop() == 0, w.tail()  # clean stop while the write is being retried

    await asyncio.to_thread(pg.start)
    w.start()
    await kafka_io.send(pfx + "audit", records[3])

    async def written() -> list[str]:
        return [r["subject"] for r in await audit_rows(pg.dsn)]

    async def all_four() -> bool:
        return len(await written()) >= 4

    await wait_for(all_four, timeout=90)
    assert sorted(await written()) == ["s0", "s1", "s2", "s3"]  # each exactly once

    # a record PostgreSQL can never store goes to the DLQ; the stream moves on
    await kafka_io.send(pfx + "audit", AuditRecord(actor="x", action="bad", subject="nul",
                                                   details={"text": "a\u0000b"}))
    await kafka_io.send(pfx + "audit", AuditRecord(actor="test", action="after", subject="s4"))

    async def five() -> bool:
        return "s4" in await written()

    await wait_for(five, timeout=60)
    dlq = await kafka_io.read(pfx + "audit.dlq", until=lambda ms: len(ms) >= 1, timeout=30)
    assert "refused by PostgreSQL" in dlq[0]["error"], dlq
    assert "nul" not in await written()
    h = w.status()["health"]["audit"]
    assert h["ok"] and h["error"] is None
    out = verify_cli(pg.dsn)
    assert out.returncode == 0 and out.stdout.strip() == "ok 5 rows", out

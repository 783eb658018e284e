"""PostgreSQL audit log on the real database: migrations, hash chain, tamper detection,
``sre-agent audit verify``, idempotency claims and incident tickets."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from sre_agent.schemas import AuditRecord, Incident
from sre_agent.sinks.audit import MIGRATIONS, AuditStore
from sre_agent.sinks.tickets import PostgresTickets
from tests.actions_support import fresh_database, verify_cli

pytestmark = pytest.mark.integration


async def test_chain_verify_and_tamper(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn)
    store = AuditStore(dsn)
    await store.setup()
    try:
        again = AuditStore(dsn)
        await again.setup()  # migrations are applied once
        assert await AuditStore.migrate(again.pool) == []  # type: ignore[arg-type]
        await again.close()
        recs = [AuditRecord(actor="test", action=f"step.{i}", subject="plan-1",
                            details={"i": i, "f": 0.1 * i, "nested": {"k": [1, "x"]}, "zh": "审计"})
                for i in range(5)]
        assert [await store.add(r) for r in recs] == [True] * 5
        assert await store.add(recs[2]) is False  # redelivered record: not written twice
        report = await store.verify()
        assert report.ok and report.rows == 5 and str(report) == "ok 5 rows"
        out = verify_cli(dsn)
        assert out.returncode == 0 and out.stdout.strip() == "ok 5 rows", out

        async with store.pool.acquire() as con:  # type: ignore[union-attr]
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await con.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await con.execute("DELETE FROM audit_log WHERE id = 5")
            # an owner who bypasses the trigger is still caught by the chain
            await con.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
            await con.execute("UPDATE audit_log SET details = '{\"i\": 99}' WHERE id = 3")
            await con.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
        report = await store.verify()
        assert not report.ok and report.bad_row == 3 and "details" in report.reason
        out = verify_cli(dsn)
        assert out.returncode == 1 and "row id=3" in out.stderr, out
    finally:
        await store.close()


async def test_rewritten_body_breaks_the_chain(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn)
    store = AuditStore(dsn)
    await store.setup()
    try:
        for i in range(3):
            await store.add(AuditRecord(actor="a", action="x", subject=f"s{i}"))
        async with store.pool.acquire() as con:  # type: ignore[union-attr]
            await con.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
            body = await con.fetchval("SELECT body FROM audit_log WHERE id = 2")
            await con.execute("UPDATE audit_log SET body = $1, subject = 'forged' WHERE id = 2",
                              body.replace('"s1"', '"forged"'))
        report = await store.verify()
        assert (report.ok, report.bad_row) == (False, 2) and "hash mismatch" in report.reason
        async with store.pool.acquire() as con:  # type: ignore[union-attr]
            await con.execute("DELETE FROM audit_log WHERE id = 2")  # trigger still disabled
        report = await store.verify()
        assert (report.ok, report.bad_row) == (False, 3) and "prev_hash" in report.reason
    finally:
        await store.close()


async def test_claims_and_tickets(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn)
    store = AuditStore(dsn)
    await store.setup()
    try:
        assert await store.claim("k1", "a1", "pod/x/y") is True
        assert await store.claim("k1", "a1", "pod/x/y") is False
        await store.finish_claim("k1", "succeeded")
        assert await store.claim_status("k1") == "succeeded" and await store.claim_status("k2") is None

        t = PostgresTickets(store)
        t0 = datetime(2025, 11, 13, tzinfo=UTC)
        inc = Incident(incident_id="inc-1", title="checkout errors", fingerprint="f",
                       opened_at=t0, services=["checkout"])
        assert await t.upsert(inc) == "created"
        # redelivered (a worker killed after the write, before its audit record left):
        # the same revision says again what it did, and the history keeps one entry
        assert await t.upsert(inc) == "created"
        assert await t.upsert(inc.model_copy(update={"status": "updated", "revision": 2})) == "updated"
        assert await t.upsert(inc.model_copy(update={"status": "updated", "revision": 2})) == "updated"
        async with store.pool.acquire() as con:  # type: ignore[union-attr]
            history = orjson.loads(await con.fetchval(
                "SELECT history::text FROM incident_tickets WHERE incident_id = 'inc-1'"))
        assert [h["revision"] for h in history] == [1, 2]
        # a producer that resolves without a new revision still resolves the ticket
        other = inc.model_copy(update={"incident_id": "inc-2"})
        assert await t.upsert(other) == "created"
        assert await t.upsert(other.model_copy(update={"status": "resolved",
                                                       "resolved_at": t0})) == "resolved"
        assert await t.upsert(inc.model_copy(update={"status": "resolved", "revision": 3,
                                                     "resolved_at": t0})) == "resolved"
        assert await t.upsert(inc.model_copy(update={"status": "updated", "revision": 2})) == "stale"
        assert await t.status("inc-1") == "resolved" and await t.status("nope") is None
        async with store.pool.acquire() as con:  # type: ignore[union-attr]
            versions = [r["version"] for r in await con.fetch(
                "SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [m[0] for m in MIGRATIONS]
    finally:
        await store.close()

"""The audit log is tamper-evident: a modified, re-hashed or deleted row is found.

Rows are written by the real :class:`~sre_agent.sinks.audit.AuditStore` into a
database of their own; the tampering is done the way an insider with database
rights would (disabling the append-only trigger first), and both the library
``verify`` and the ``sre-agent audit verify`` command must name the first bad row.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from sre_agent.schemas import AuditRecord
from sre_agent.sinks.audit import AuditStore, canonical, chain_hash
from tests.actions_support import fresh_database, verify_cli

pytestmark = pytest.mark.integration


async def _chain(pg_dsn: str, n: int = 12) -> tuple[str, AuditStore, list[int]]:
    dsn = await fresh_database(pg_dsn)
    store = AuditStore(dsn)
    await store.setup()
    for i in range(n):
        await store.add(AuditRecord(actor="executor", action="action.executed", subject=f"x{i}",
                                    details={"i": i, "target": "deployment/prod/api"},
                                    idempotency_key=f"p{i}:0"))
    ids = [r["id"] for r in await store.rows(limit=100)]
    report = await store.verify()
    assert report.ok and report.rows == n, report
    return dsn, store, ids


async def _as_insider(dsn: str, *sql: tuple[Any, ...]) -> None:
    con = await asyncpg.connect(dsn)
    try:
        await con.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for stmt, *args in sql:
            await con.execute(stmt, *args)
        await con.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await con.close()


async def test_the_append_only_trigger_refuses_changes(pg_dsn: str) -> None:
    dsn, store, ids = await _chain(pg_dsn, 3)
    con = await asyncpg.connect(dsn)
    try:
        for stmt in ("UPDATE audit_log SET actor = 'eve' WHERE id = $1",
                     "DELETE FROM audit_log WHERE id = $1"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await con.execute(stmt, ids[1])
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await con.execute("TRUNCATE audit_log")
    finally:
        await con.close()
        await store.close()


@pytest.mark.parametrize("column", ["details", "actor", "subject", "idempotency_key", "time"])
async def test_a_modified_column_is_caught_at_its_row(pg_dsn: str, column: str) -> None:
    dsn, store, ids = await _chain(pg_dsn)
    victim = ids[5]
    value: Any = {"details": '{"i": 5, "target": "deployment/prod/wallet"}', "actor": "nobody",
                  "subject": "x-other", "idempotency_key": "p5:1",
                  "time": None}[column]
    if column == "time":
        stmt = "UPDATE audit_log SET time = time + interval '1 hour' WHERE id = $1"
        await _as_insider(dsn, (stmt, victim))
    else:
        cast = "::jsonb" if column == "details" else ""
        await _as_insider(dsn, (f"UPDATE audit_log SET {column} = $2{cast} WHERE id = $1",
                                victim, value))
    report = await store.verify()
    await store.close()
    assert not report.ok and report.bad_row == victim, report
    out = verify_cli(dsn)
    assert out.returncode != 0 and f"id={victim}" in out.stdout + out.stderr, out


async def test_a_rewritten_body_with_a_recomputed_hash_breaks_the_next_link(pg_dsn: str) -> None:
    """The insider knows the scheme and re-hashes the row: the next row no longer links."""
    dsn, store, ids = await _chain(pg_dsn)
    victim = ids[4]
    con = await asyncpg.connect(dsn)
    row = await con.fetchrow("SELECT body, prev_hash FROM audit_log WHERE id = $1", victim)
    await con.close()
    body = orjson.loads(row["body"])
    body["details"]["target"] = "deployment/prod/wallet"
    new_body = canonical(body)
    await _as_insider(dsn, (
        "UPDATE audit_log SET body = $2, details = $3::jsonb, hash = $4 WHERE id = $1", victim,
        new_body.decode(), orjson.dumps(body["details"]).decode(),
        chain_hash(row["prev_hash"], new_body)))
    report = await store.verify()
    await store.close()
    assert not report.ok and report.bad_row == ids[5] and "prev_hash" in report.reason, report


async def test_a_deleted_row_is_caught_at_the_next_one(pg_dsn: str) -> None:
    dsn, store, ids = await _chain(pg_dsn)
    await _as_insider(dsn, ("DELETE FROM audit_log WHERE id = $1", ids[7]))
    report = await store.verify()
    await store.close()
    assert not report.ok and report.bad_row == ids[8], report


async def test_cut_off_newest_rows_are_caught_against_the_kafka_copy(
        pg_dsn: str, kafka_io: Any) -> None:
    # a chain alone cannot show that its newest rows were cut off; the audit topic can
    import os
    import subprocess
    import sys

    from sre_agent.schemas import encode
    from tests.conftest import unique

    dsn = await fresh_database(pg_dsn)
    prefix = unique("audit") + "."
    store = AuditStore(dsn)
    await store.setup()
    for i in range(10):
        rec = AuditRecord(actor="executor", action="action.executed", subject=f"x{i}",
                          details={"i": i}, idempotency_key=f"p{i}:0")
        await store.add(rec)
        await kafka_io.send_raw(prefix + "audit", encode(rec), rec.subject.encode())
    ids = [r["id"] for r in await store.rows(limit=100)]

    def verify_against_kafka() -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
        env.update({"SRE_AGENT_POSTGRES__DSN": dsn, "SRE_AGENT_KAFKA__TOPIC_PREFIX": prefix,
                    "SRE_AGENT_KAFKA__BROKER": "kafka://" + kafka_io.bootstrap})
        return subprocess.run([sys.executable, "-m", "sre_agent", "audit", "verify",
                               "--against-kafka", "--grace", "0"], env=env,
                              capture_output=True, text=True, timeout=60)

    out = verify_against_kafka()
    assert out.returncode == 0 and "all 10 audit records" in out.stdout, out
    await _as_insider(dsn, ("DELETE FROM audit_log WHERE id = ANY($1)", ids[-2:]))
    assert (await store.verify()).ok  # the chain itself still links
    await store.close()
    out = verify_against_kafka()
    assert out.returncode == 1 and "2 of 10 audit records" in out.stderr, out

"""PostgreSQL goes down in the middle of a stream of audit records, and comes back.

Records keep arriving while the database is away: they wait in Kafka (offsets
not committed past an unwritten record), ``/status`` says the agent is degraded
and why, and when the database returns on the same port every record lands
exactly once and the hash chain verifies.

The outage lasts ``SRE_AGENT_PG_OUTAGE_SECONDS`` (default 20 s in the suite;
``bench`` runs it with 60)::

    SRE_AGENT_PG_OUTAGE_SECONDS=60 python -m pytest tests/chaos/test_postgres_outage.py -q
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from sre_agent.devstack import PostgresServer
from sre_agent.schemas import AuditRecord
from tests.actions_support import audit_rows, verify_cli
from tests.conftest import unique

pytestmark = pytest.mark.integration

OUTAGE = float(os.environ.get("SRE_AGENT_PG_OUTAGE_SECONDS", "20"))
REPORT: dict[str, Any] = {}


async def test_audit_records_wait_in_kafka_while_postgres_is_down(
        worker_factory: Any, kafka_io: Any, wait_for: Any) -> None:
    pg = PostgresServer()  # our own cluster: stopping it disturbs no other test
    await asyncio.to_thread(pg.start)
    run = unique("pgout")
    w = worker_factory(extra_env={"SRE_AGENT_POSTGRES__DSN": pg.dsn})
    try:
        w.start()
        pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        sent: list[str] = []

        async def send(n: int, phase: str) -> None:
            for _ in range(n):
                i = len(sent)
                rec = AuditRecord(actor="chaos", action=f"pg.{phase}", subject=f"{run}-{i}",
                                  details={"i": i, "phase": phase})
                await kafka_io.send(pfx + "audit", rec)
                sent.append(rec.subject)
                await asyncio.sleep(0.02)

        async def written() -> list[str]:
            return [r["subject"] for r in await audit_rows(pg.dsn) if r["subject"].startswith(run)]

        await send(30, "before")
        await wait_for(lambda: _n(written, 30), timeout=60)

        await asyncio.to_thread(pg.stop)  # down, same port and data kept
        down_at = time.monotonic()
        await send(30, "during")

        def degraded() -> Any:
            st = w.status()
            h = st["health"].get("audit", {})
            return st["status"] == "degraded" and h.get("ok") is False and h.get("pending") and h

        health = await wait_for(degraded, timeout=60)
        assert health["error"], health
        while time.monotonic() - down_at < OUTAGE:  # records keep coming while it is down
            await send(5, "during-late")
            await asyncio.sleep(0.5)
            assert w.status()["health"]["audit"]["ok"] is False
            assert w.proc is not None and w.proc.poll() is None, w.tail()

        await asyncio.to_thread(pg.start_again)
        await send(30, "after")

        async def all_in() -> bool:
            return len(await written()) >= len(sent)

        await wait_for(all_in, timeout=120)
        await asyncio.sleep(2.0)  # any duplicate would land now
        got = await written()
        assert len(set(sent)) == len(sent)
        assert sorted(got) == sorted(sent)  # every record, each exactly once
        REPORT.update(records=len(sent), outage_s=round(time.monotonic() - down_at, 1))
        print(f"\n[chaos] postgres outage: {REPORT['records']} audit records, "
              f"{len(got)} written exactly once after "
              f"{OUTAGE:.0f} s down; status degraded while down: {health['error'][:80]}")
        h = w.status()["health"]["audit"]
        assert h["ok"] and not h.get("error"), h
        assert w.status()["status"] == "ok"
        out = verify_cli(pg.dsn)
        assert out.returncode == 0 and out.stdout.startswith("ok "), out
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()
        pg.stop(clean=True)


async def _n(written: Any, n: int) -> bool:
    return len(await written()) >= n

"""``sre-agent audit verify|tail``: check and read the PostgreSQL audit log.

``verify`` checks the hash chain: it prints ``ok N rows`` and exits 0, or names
the first row that breaks the chain and exits 1.

``tail`` prints the newest rows as JSON lines, oldest first (``--limit``, default
50), optionally only those about one plan, incident or action id (``--subject``).

Exit codes: 0 ok, 1 the chain (or ``--against-kafka``) check failed, 2
``postgres.dsn`` not configured, 3 PostgreSQL or Kafka cannot be reached.

A hash chain cannot show that its newest rows were cut off. ``verify
--against-kafka`` also reads the ``audit`` topic (the sink's source, an
independent copy for as long as Kafka retains it) and fails when a record older
than ``--grace`` seconds (the sink's normal delay) has no row in PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from ..cli import SettingsFactory, Unavailable, UsageError, command, error

__all__: list[str] = []


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["verify", "tail"],
                   help="verify: check the hash chain; tail: print the newest rows as JSON lines")
    p.add_argument("--subject", help="tail: only rows about this plan/incident/action id")
    p.add_argument("--limit", type=int, default=50, help="tail: rows to print")
    p.add_argument("--against-kafka", action="store_true",
                   help="verify: also check every record on the audit topic has its row")
    p.add_argument("--grace", type=float, default=60.0,
                   help="--against-kafka: ignore records younger than this (seconds)")


async def _kafka_audit_ids(settings: Any, grace: float) -> list[str]:
    """Event ids of the decodable records on the audit topic older than ``grace``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from ..schemas import AuditRecord, DecodeError, decode
    from ..sinks.kafka import client_kwargs

    topic = settings.topic("audit")
    servers = client_kwargs(settings.kafka)
    admin = AIOKafkaAdminClient(**servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for d in described if d.get("error_code") == 0
           for p in d.get("partitions", [])]
    if not tps:
        return []
    cons = AIOKafkaConsumer(**servers, group_id=None, enable_auto_commit=False)
    await cons.start()
    try:
        cons.assign(tps)
        await cons.seek_to_beginning(*tps)
        ends = await cons.end_offsets(tps)
        cutoff_ms = (time.time() - grace) * 1000
        ids: list[str] = []
        while True:
            positions = [await cons.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                return ids
            for recs in (await cons.getmany(timeout_ms=1000)).values():
                for r in recs:
                    if r.offset >= ends[TopicPartition(r.topic, r.partition)] \
                            or r.timestamp > cutoff_ms:
                        continue
                    try:
                        ids.append(decode(AuditRecord, r.value).event_id)
                    except DecodeError:
                        continue  # dead-lettered by the sink, never meant to have a row
    finally:
        await cons.stop()


async def _run(dsn: str, args: argparse.Namespace, settings: Any) -> int:
    from ..sinks.audit import AuditStore

    store = AuditStore(dsn, min_size=1, max_size=1)
    try:
        await store.setup()
    except Exception as exc:  # noqa: BLE001 - asyncpg raises many kinds on connect
        raise Unavailable("PostgreSQL (the audit database)", None, exc) from None
    try:
        if args.action == "verify":
            report = await store.verify()
            if not report.ok:
                return error(str(report))
            print(report)
            if args.against_kafka:
                try:
                    ids = await _kafka_audit_ids(settings, args.grace)
                except Exception as exc:  # noqa: BLE001 - aiokafka raises many kinds
                    raise Unavailable("Kafka (the audit topic)", settings.kafka.broker,
                                      exc) from None
                gone = await store.missing(ids)
                if gone:
                    return error(f"{len(gone)} of {len(ids)} audit records on Kafka have no "
                                 f"row in PostgreSQL (deleted or never written); first: "
                                 f"{gone[0]}")
                print(f"ok: all {len(ids)} audit records on Kafka (older than {args.grace:g} s) "
                      f"have their row")
            return 0
        rows = await store.rows(subject=args.subject, limit=100_000)
        for r in rows[-args.limit:]:
            print(orjson.dumps({k: (str(v) if k == "time" else v) for k, v in r.items()}).decode())
        return 0
    finally:
        await store.close()


@command("audit", "verify the tamper-evident audit log, or tail its newest rows", _args)
def _audit(args: argparse.Namespace, settings: SettingsFactory) -> int:
    s = settings()
    if s.postgres.dsn is None:
        raise UsageError("postgres.dsn is not configured (SRE_AGENT_POSTGRES__DSN)")
    return asyncio.run(_run(s.postgres.dsn.get_secret_value(), args, s))

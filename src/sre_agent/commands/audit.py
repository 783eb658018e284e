"""``sre-agent audit verify|tail``: check the hash chain of the PostgreSQL audit log.

``verify`` prints ``ok N rows`` and exits 0, or names the first row that breaks
the chain and exits 1 (2 when the database cannot be reached or is not configured).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from ..cli import SettingsFactory, command

__all__: list[str] = []


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["verify", "tail"])
    p.add_argument("--subject", help="tail: only rows about this plan/incident/action id")
    p.add_argument("--limit", type=int, default=50, help="tail: rows to print")


async def _run(dsn: str, args: argparse.Namespace) -> int:
    from ..sinks.audit import AuditStore

    store = AuditStore(dsn, min_size=1, max_size=1)
    try:
        await store.setup()
    except (OSError, Exception) as exc:  # asyncpg raises many kinds on connect
        print(f"sre-agent: cannot open the audit database: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "verify":
            report = await store.verify()
            print(report, file=sys.stdout if report.ok else sys.stderr)
            return 0 if report.ok else 1
        rows = await store.rows(subject=args.subject, limit=100_000)
        for r in rows[-args.limit:]:
            print(orjson.dumps({k: (str(v) if k == "time" else v) for k, v in r.items()}).decode())
        return 0
    finally:
        await store.close()


@command("audit", "verify the tamper-evident audit log in PostgreSQL", _args)
def _audit(args: argparse.Namespace, settings: SettingsFactory) -> int:
    s = settings()
    if s.postgres.dsn is None:
        print("sre-agent: postgres.dsn is not configured (SRE_AGENT_POSTGRES__DSN)", file=sys.stderr)
        return 2
    return asyncio.run(_run(s.postgres.dsn.get_secret_value(), args))

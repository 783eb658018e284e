"""PostgreSQL audit log (asyncpg): append-only, hash-chained, verifiable.

Each :class:`~sre_agent.schemas.AuditRecord` becomes one row of ``audit_log``;
the row stores its canonical JSON ``body`` (sorted keys, orjson), the previous
row's hash and ``hash = sha256(prev_hash + body)``. Rows are written under a
transaction-scoped advisory lock, so several workers extend one chain; a record
already written (same ``event_id``, e.g. redelivered after a crash) is not
written twice. A trigger refuses UPDATE, DELETE and TRUNCATE, and
:meth:`AuditStore.verify` recomputes the chain and compares every column with
the body, so tampering — even by someone who disables the trigger — is found
and the first bad row named.

Schema migrations (:data:`MIGRATIONS`) are applied at :meth:`AuditStore.setup`,
once, under a lock; the same database holds the executor's idempotency claims
(``action_claims``) and the incident tickets (:mod:`sre_agent.sinks.tickets`).

>>> h1 = chain_hash(GENESIS, canonical({"b": 1, "a": "x"}))
>>> canonical({"b": 1, "a": "x"}), len(h1), h1 == chain_hash(GENESIS, b'{"a":"x","b":1}')
(b'{"a":"x","b":1}', 64, True)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from ..schemas import AuditRecord

__all__ = ["GENESIS", "MIGRATIONS", "OPEN_CLAIMS", "AuditStore", "ChainReport", "OpenClaim",
           "canonical", "chain_hash"]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_CHAIN_LOCK = 0x5EA0_A0D1  # advisory lock key of the chain head
_MIGRATE_LOCK = 0x5EA0_A0D0

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "audit log", """
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    event_id        text        NOT NULL UNIQUE,
    time            timestamptz NOT NULL,
    actor           text        NOT NULL,
    action          text        NOT NULL,
    subject         text        NOT NULL,
    idempotency_key text,
    details         jsonb       NOT NULL,
    body            text        NOT NULL,
    prev_hash       char(64)    NOT NULL,
    hash            char(64)    NOT NULL UNIQUE,
    written_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE INDEX audit_log_action ON audit_log (action);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""),
    (2, "executor idempotency claims", """
CREATE TABLE action_claims (
    idempotency_key text PRIMARY KEY,
    action_id       text        NOT NULL,
    target          text        NOT NULL,
    status          text        NOT NULL DEFAULT 'claimed',
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
"""),
    (3, "incident tickets", """
CREATE TABLE incident_tickets (
    incident_id  text PRIMARY KEY,
    status       text        NOT NULL,
    title        text        NOT NULL,
    severity     text        NOT NULL,
    services     jsonb       NOT NULL DEFAULT '[]',
    revision     integer     NOT NULL DEFAULT 1,
    opened_at    timestamptz NOT NULL,
    resolved_at  timestamptz,
    external_key text,
    history      jsonb       NOT NULL DEFAULT '[]',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
"""),
    (4, "executor claims as a durable work log: the signed action, progress, an owner's lease", """
ALTER TABLE action_claims
    ADD COLUMN action      jsonb,
    ADD COLUMN snapshot    jsonb,
    ADD COLUMN detail      text        NOT NULL DEFAULT '',
    ADD COLUMN owner       text        NOT NULL DEFAULT '',
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT now();
CREATE INDEX action_claims_open ON action_claims (lease_until)
    WHERE status IN ('claimed', 'acting', 'executed');
"""),
]

#: claim states that are not final: the action may still need its act, verification or result
OPEN_CLAIMS = ("claimed", "acting", "executed")


@dataclass(frozen=True)
class OpenClaim:
    """An unfinished claim taken over from an owner whose lease ran out."""
    idempotency_key: str
    status: str
    action: dict[str, Any]
    snapshot: dict[str, Any]
    detail: str


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTC ISO timestamps."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    bad_row: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok {self.rows} rows"
        return f"audit chain broken at row id={self.bad_row}: {self.reason} ({self.rows} rows checked)"


def _body_of(record: AuditRecord) -> bytes:
    return canonical(record.model_dump(mode="json"))


class AuditStore:
    """asyncpg pool owner: migrations, the audit chain, idempotency claims.

    ``setup`` may be called repeatedly (after a failure it retries).
    """

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 4) -> None:
        self._dsn = dsn
        self._sizes = (min_size, max_size)
        self.pool: asyncpg.Pool | None = None

    async def setup(self) -> None:
        if self.pool is not None:
            return
        pool = await asyncpg.create_pool(self._dsn, min_size=self._sizes[0],
                                         max_size=self._sizes[1], command_timeout=30)
        try:
            await self.migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self.pool = pool

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    @staticmethod
    async def migrate(pool: asyncpg.Pool) -> list[int]:
        """Apply missing migrations in order; return the versions applied."""
        applied: list[int] = []
        async with pool.acquire() as con:
            await con.execute("SELECT pg_advisory_lock($1)", _MIGRATE_LOCK)
            try:
                await con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY, name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())""")
                done = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
                for version, name, sql in MIGRATIONS:
                    if version in done:
                        continue
                    async with con.transaction():
                        await con.execute(sql)
                        await con.execute("INSERT INTO schema_migrations (version, name) "
                                          "VALUES ($1, $2)", version, name)
                    applied.append(version)
                    log.info("applied migration %d (%s)", version, name)
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", _MIGRATE_LOCK)
        return applied

    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("AuditStore.setup() has not succeeded")
        return self.pool

    # ------------------------------------------------------------ the chain
    async def add(self, record: AuditRecord) -> bool:
        """Append ``record`` to the chain; False if it was already there."""
        body = _body_of(record)
        async with self._pool().acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK)
            if await con.fetchval("SELECT 1 FROM audit_log WHERE event_id = $1", record.event_id):
                return False
            prev = await con.fetchval("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
            prev = prev or GENESIS
            await con.execute(
                "INSERT INTO audit_log (event_id, time, actor, action, subject, idempotency_key,"
                " details, body, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,$9,$10)",
                record.event_id, record.time, record.actor, record.action, record.subject,
                record.idempotency_key, orjson.dumps(record.details).decode(), body.decode(),
                prev, chain_hash(prev, body))
        return True

    async def rows(self, subject: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT id, event_id, time, actor, action, subject, idempotency_key, details, hash " \
              "FROM audit_log"
        args: list[Any] = []
        if subject:
            sql += " WHERE subject = $1"
            args.append(subject)
        sql += f" ORDER BY id LIMIT {int(limit)}"
        async with self._pool().acquire() as con:
            out = []
            for r in await con.fetch(sql, *args):
                d = dict(r)
                d["details"] = orjson.loads(d["details"])
                out.append(d)
            return out

    async def verify(self, batch: int = 5000) -> ChainReport:
        """Recompute the chain from the first row; name the first row that does not fit."""
        prev, last_id, n = GENESIS, 0, 0
        async with self._pool().acquire() as con:
            while True:
                rows = await con.fetch(
                    "SELECT id, event_id, time, actor, action, subject, idempotency_key, "
                    "details::text AS details, body, prev_hash, hash FROM audit_log "
                    "WHERE id > $1 ORDER BY id LIMIT $2", last_id, batch)
                if not rows:
                    return ChainReport(True, n)
                for r in rows:
                    n += 1
                    problem = _row_problem(r, prev)
                    if problem:
                        return ChainReport(False, n, r["id"], problem)
                    prev, last_id = r["hash"], r["id"]

    async def missing(self, event_ids: list[str], batch: int = 5000) -> list[str]:
        """Which of ``event_ids`` have no row (deleted, or never written)."""
        found: set[str] = set()
        async with self._pool().acquire() as con:
            for i in range(0, len(event_ids), batch):
                rows = await con.fetch("SELECT event_id FROM audit_log WHERE event_id = ANY($1)",
                                       event_ids[i:i + batch])
                found.update(r["event_id"] for r in rows)
        return [e for e in event_ids if e not in found]

    # ------------------------------------------------------------ idempotency claims
    # A claim is the executor's durable work log for one action: ``claimed`` (nothing
    # done yet) -> ``acting`` (the call to the target is under way) -> ``executed``
    # (done, verification pending) -> the final result status. Its owner holds a lease
    # and renews it while the action is in flight; a claim whose lease ran out is taken
    # over by another worker (or the owner's restart), which finishes it from the state
    # recorded here. Every step is conditional on still owning the claim, so two
    # workers never both act.
    async def claim(self, idempotency_key: str, action_id: str, target: str,
                    action: Mapping[str, Any] | None = None, owner: str = "",
                    lease_seconds: float = 30.0) -> bool:
        """Durably claim an action before acting; False if it was claimed before."""
        async with self._pool().acquire() as con:
            got = await con.fetchval(
                "INSERT INTO action_claims (idempotency_key, action_id, target, action, owner, "
                "lease_until) VALUES ($1, $2, $3, $4::jsonb, $5, "
                "now() + make_interval(secs => $6)) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
                idempotency_key, action_id, target,
                None if action is None else orjson.dumps(action).decode(), owner,
                float(lease_seconds))
            return bool(got)

    async def advance_claim(self, idempotency_key: str, owner: str, status: str, *,
                            expect: str, snapshot: Mapping[str, Any] | None = None,
                            detail: str | None = None) -> bool:
        """Move an owned claim from ``expect`` to ``status``; False if it is not ours
        in that state any more (taken over, or finished)."""
        async with self._pool().acquire() as con:
            got = await con.fetchval(
                "UPDATE action_claims SET status = $3, updated_at = now(), "
                "snapshot = COALESCE($5::jsonb, snapshot), detail = COALESCE($6, detail) "
                "WHERE idempotency_key = $1 AND owner = $2 AND status = $4 RETURNING 1",
                idempotency_key, owner, status, expect,
                None if snapshot is None else orjson.dumps(snapshot).decode(), detail)
            return bool(got)

    async def finish_claim(self, idempotency_key: str, status: str) -> None:
        async with self._pool().acquire() as con:
            await con.execute("UPDATE action_claims SET status = $2, updated_at = now() "
                              "WHERE idempotency_key = $1", idempotency_key, status)

    async def claim_status(self, idempotency_key: str) -> str | None:
        async with self._pool().acquire() as con:
            return await con.fetchval("SELECT status FROM action_claims WHERE idempotency_key = $1",
                                      idempotency_key)  # type: ignore[no-any-return]

    async def renew_claims(self, keys: list[str], owner: str, lease_seconds: float) -> int:
        """Extend the lease of the owner's unfinished claims among ``keys``."""
        if not keys:
            return 0
        async with self._pool().acquire() as con:
            done = await con.execute(
                "UPDATE action_claims SET lease_until = now() + make_interval(secs => $3) "
                "WHERE idempotency_key = ANY($1) AND owner = $2 AND status = ANY($4)",
                keys, owner, float(lease_seconds), list(OPEN_CLAIMS))
            return int(done.split()[-1])

    async def take_over_claims(self, owner: str, lease_seconds: float,
                               limit: int = 20) -> list[OpenClaim]:
        """Take unfinished claims whose owner's lease ran out (at most ``limit``)."""
        async with self._pool().acquire() as con:
            rows = await con.fetch(
                "UPDATE action_claims SET owner = $1, updated_at = now(), "
                "lease_until = now() + make_interval(secs => $2) WHERE idempotency_key IN ("
                "SELECT idempotency_key FROM action_claims WHERE status = ANY($4) "
                "AND lease_until < now() AND action IS NOT NULL ORDER BY claimed_at LIMIT $3 "
                "FOR UPDATE SKIP LOCKED) "
                "RETURNING idempotency_key, status, action::text AS action, "
                "snapshot::text AS snapshot, detail",
                owner, float(lease_seconds), int(limit), list(OPEN_CLAIMS))
        return [OpenClaim(r["idempotency_key"], r["status"], orjson.loads(r["action"]),
                          orjson.loads(r["snapshot"]) if r["snapshot"] else {}, r["detail"])
                for r in rows]


def _row_problem(r: Any, prev: str) -> str | None:
    if r["prev_hash"] != prev:
        return f"prev_hash does not link to the previous row (event_id {r['event_id']})"
    body = r["body"].encode()
    if chain_hash(prev, body) != r["hash"]:
        return f"hash mismatch: body was altered (event_id {r['event_id']})"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    cols = {"event_id": r["event_id"], "actor": r["actor"], "action": r["action"],
            "subject": r["subject"], "idempotency_key": r["idempotency_key"]}
    for key, value in cols.items():
        if doc.get(key) != value:
            return f"column {key} differs from the hashed body (event_id {r['event_id']})"
    if orjson.loads(r["details"]) != doc.get("details"):
        return f"column details differs from the hashed body (event_id {r['event_id']})"
    try:
        t = datetime.fromisoformat(str(doc.get("time")).replace("Z", "+00:00"))
    except ValueError:
        return "body time is not ISO-8601"
    if t != r["time"]:
        return f"column time differs from the hashed body (event_id {r['event_id']})"
    return None

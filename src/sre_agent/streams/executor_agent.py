"""sre-actions -> action-results: the guarded executor.

For each action, in order, and every refusal audited:

1. **idempotency** — an ``idempotency_key`` seen before (table ``executor_state``,
   keyed like ``sre-actions`` by target, and the durable ``action_claims`` row in
   PostgreSQL) is never executed again: a redelivery after a restart or a
   rebalance is only audited (``action.duplicate``);
2. **blocklist re-check** — a protected target (or a BLOCKED policy) is refused
   here too, whoever produced the action;
3. **rate limit** — at most ``max_actions_per_resource_per_hour`` per target;
4. **still needed?** — the incident must still be open (tickets table / incidents
   topic) and the live object must be the one the plan assumed (uid, revision);
   then the playbook's pre-checks;
5. **claim** (table + PostgreSQL) *before* acting, so a crash cannot lead to a
   second execution; **snapshot**; then **dry-run** (the default) or **act**;
6. **verify** in the background against the playbook's signal; on failure the
   snapshot is restored (``rolled_back``). The one final result goes to
   ``action-results``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from ..processors.policy import PolicyEngine, recent_actions
from ..processors.verify import identity_problem, precheck_problems, verdict
from ..schemas import ActionResult, Anomaly, SreAction
from .audit_agent import emit_audit, incident_status, pg_store
from .context import StreamContext
from .risk_agent import action_targets

__all__ = ["register"]

log = logging.getLogger(__name__)

MAX_DONE = 500  # idempotency keys remembered per target in the table


def register(ctx: StreamContext) -> None:
    app, settings = ctx.app, ctx.settings
    cfg = settings.actions
    table = ctx.tables.declare("executor_state", help="target ref -> recent actions, done keys")
    targets = action_targets(ctx)
    store = pg_store(ctx)
    policy = PolicyEngine(cfg)
    #: (service, metric) -> ids of its open anomalies (several series may share a metric)
    open_anomalies: dict[tuple[str, str], set[str]] = ctx.state.setdefault("open_anomalies", {})
    background: set[asyncio.Task[None]] = set()

    def load(ref: str) -> dict[str, Any]:
        raw = table.get(ref)
        return orjson.loads(raw) if raw else {"times": [], "done": {}}

    def save(ref: str, st: dict[str, Any]) -> None:
        done = st["done"]
        if len(done) > MAX_DONE:
            st["done"] = dict(list(done.items())[-MAX_DONE:])
        table[ref] = orjson.dumps(st)

    async def result(a: SreAction, status: str, detail: str, snapshot: dict[str, Any] | None = None,
                     verified: bool | None = None, dry_run: bool = False) -> None:
        res = ActionResult(action_id=a.action_id, plan_id=a.plan_id, incident_id=a.incident_id,
                           status=status, detail=detail[:2000], snapshot=snapshot or {},  # type: ignore[arg-type]
                           verified=verified, dry_run=dry_run, step_index=a.step_index,
                           action=a.step.action, target=a.step.target.ref(),
                           idempotency_key=a.idempotency_key)
        await ctx.send(res)
        await emit_audit(ctx, "executor", "action.result", a.action_id,
                         {"status": status, "detail": detail[:500], "verified": verified,
                          "dry_run": dry_run, "plan_id": a.plan_id},
                         idempotency_key=a.idempotency_key)
        if store is not None and store.pool is not None:
            try:
                await store.finish_claim(a.idempotency_key, status)
            except Exception as exc:  # noqa: BLE001 - the claim row stays "claimed"
                log.warning("claim update failed: %s", exc)

    async def refuse(a: SreAction, st: dict[str, Any], status: str, what: str, detail: str) -> None:
        st["done"][a.idempotency_key] = status
        save(a.step.target.ref(), st)
        await emit_audit(ctx, "executor", what, a.action_id,
                         {"reason": detail, "target": a.step.target.ref(), "plan_id": a.plan_id},
                         idempotency_key=a.idempotency_key)
        await result(a, status, detail)

    async def durable_claim(a: SreAction) -> bool | None:
        """True: claimed now; False: claimed before; None: no database."""
        if store is None:
            return None
        try:
            await store.setup()
            return await store.claim(a.idempotency_key, a.action_id, a.step.target.ref())
        except Exception as exc:  # noqa: BLE001
            log.warning("durable claim unavailable (%s); the table claim stands", exc)
            return None

    async def verify_then_report(a: SreAction, snapshot: dict[str, Any], detail: str) -> None:
        step, started = a.step, time.monotonic()
        service = step.target.service or step.target.name
        try:
            while True:
                signal: dict[str, Any] = {"open_anomalies": {k for k, v in open_anomalies.items() if v}}
                if (step.verify or {}).get("check") == "rollout_complete":
                    signal["observed"] = await targets.observe(step)
                v = verdict(step.verify, time.monotonic() - started, signal, service)
                if v != "wait":
                    break
                await asyncio.sleep(cfg.verify_poll_seconds)
            if v == "pass":
                await emit_audit(ctx, "executor", "action.verified", a.action_id,
                                 {"verify": step.verify}, idempotency_key=a.idempotency_key)
                await result(a, "succeeded", detail, snapshot, verified=True)
                return
            await emit_audit(ctx, "executor", "action.verification_failed", a.action_id,
                             {"verify": step.verify}, idempotency_key=a.idempotency_key)
            if step.rollback == "restore_snapshot" and snapshot:
                undone = await targets.restore(step, snapshot)
                await emit_audit(ctx, "executor", "action.rolled_back", a.action_id,
                                 {"detail": undone}, idempotency_key=a.idempotency_key)
                await result(a, "rolled_back", f"{detail}; verification failed; {undone}",
                             snapshot, verified=False)
            else:
                await result(a, "failed", f"{detail}; verification failed; no automatic rollback "
                             f"for {step.action}", snapshot, verified=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - report, never crash the worker
            log.exception("verification of %s failed", a.action_id)
            await result(a, "failed", f"{detail}; verification/rollback error: {exc}", snapshot,
                         verified=False)

    async def execute(a: SreAction) -> None:
        step, ref = a.step, a.step.target.ref()
        st = load(ref)
        key = a.idempotency_key
        if key in st["done"] or (store is not None and store.pool is not None
                                 and await store.claim_status(key) is not None):
            await emit_audit(ctx, "executor", "action.duplicate", a.action_id,
                             {"target": ref, "previous": st["done"].get(key)}, idempotency_key=key)
            return
        prot = policy.protected_match([step])
        if prot or a.policy == "BLOCKED":
            await refuse(a, st, "blocked", "action.blocked",
                         f"blocklist: {prot}" if prot else "policy BLOCKED: diagnosis only")
            return
        now = time.time()
        st["times"] = recent_actions(st["times"], now)
        if len(st["times"]) >= cfg.max_actions_per_resource_per_hour:
            await refuse(a, st, "rate_limited", "action.rate_limited",
                         f"{len(st['times'])} actions on {ref} within the hour "
                         f"(max {cfg.max_actions_per_resource_per_hour})")
            return
        status = await incident_status(ctx, a.incident_id)
        if status == "resolved" or (status is None and cfg.require_open_incident):
            await refuse(a, st, "skipped", "action.skipped",
                         f"incident {a.incident_id} is {status or 'not known to be open'}")
            return
        if not targets.available(step):
            await refuse(a, st, "failed", "action.failed", f"no back-end enabled for {ref}")
            return
        try:
            observed = await targets.observe(step)
        except Exception as exc:  # noqa: BLE001
            await refuse(a, st, "failed", "action.failed", f"cannot observe {ref}: {exc}")
            return
        problem = identity_problem(step, observed)
        if problem:
            await refuse(a, st, "skipped", "action.skipped", problem)
            return
        failed = precheck_problems(step, observed)
        if failed:
            await refuse(a, st, "skipped", "action.precheck_failed", "; ".join(failed))
            return
        # claim before acting: a crash from here on can never lead to a second execution
        st["done"][key] = "claimed"
        save(ref, st)
        if await durable_claim(a) is False:
            await emit_audit(ctx, "executor", "action.duplicate", a.action_id,
                             {"target": ref, "previous": "claimed in PostgreSQL"}, idempotency_key=key)
            return
        snapshot = await targets.snapshot(step)
        await emit_audit(ctx, "executor", "action.snapshot", a.action_id,
                         {"target": ref, "snapshot": snapshot}, idempotency_key=key)
        if cfg.dry_run or a.dry_run:
            st["done"][key] = "dry_run"
            save(ref, st)
            await emit_audit(ctx, "executor", "action.dry_run", a.action_id,
                             {"target": ref, "would": step.action, "params": step.params},
                             idempotency_key=key)
            await result(a, "dry_run", f"dry run: would {step.action} {ref}", snapshot, dry_run=True)
            return
        try:
            detail = await targets.act(step)
        except Exception as exc:  # noqa: BLE001
            st["done"][key] = "failed"
            save(ref, st)
            await emit_audit(ctx, "executor", "action.failed", a.action_id,
                             {"target": ref, "error": str(exc)[:500]}, idempotency_key=key)
            await result(a, "failed", f"{step.action} {ref} failed: {exc}", snapshot)
            return
        st["times"].append(now)
        st["done"][key] = "executed"
        save(ref, st)
        await emit_audit(ctx, "executor", "action.executed", a.action_id,
                         {"target": ref, "action": step.action, "detail": detail,
                          "approved_by": a.approved_by, "policy": a.policy}, idempotency_key=key)
        task = asyncio.ensure_future(verify_then_report(a, snapshot, detail))
        background.add(task)
        task.add_done_callback(background.discard)

    @app.agent(ctx.topics["sre-actions"], name="executor")
    async def executor(stream: Any) -> None:
        async for event in stream.events():
            action = await ctx.decode(SreAction, event, stage="executor")
            if action is None:
                continue
            try:
                await execute(action)
            except Exception as exc:  # noqa: BLE001 - one bad action must not stop the executor
                log.exception("executor failed on %s", action.action_id)
                await emit_audit(ctx, "executor", "action.error", action.action_id,
                                 {"error": f"{type(exc).__name__}: {exc}"[:500]},
                                 idempotency_key=action.idempotency_key)

    @app.agent(ctx.topics["anomalies"], name="executor-anomaly-watch")
    async def anomaly_watch(stream: Any) -> None:
        async for event in stream.events():
            an = await ctx.decode(Anomaly, event, stage="executor-anomaly-watch")
            if an is None:
                continue
            ids = open_anomalies.setdefault((an.service, an.metric), set())
            if an.status == "open":
                ids.add(an.anomaly_id)
            else:
                ids.discard(an.anomaly_id)
                if not ids:
                    open_anomalies.pop((an.service, an.metric), None)

    @app.on_before_shutdown.connect
    async def _stop(app: Any, **kw: Any) -> None:
        for task in list(background):
            task.cancel()

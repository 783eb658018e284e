"""sre-actions -> action-results: the guarded executor.

The decisions are the pure state machine :func:`sre_agent.processors.execution.step`
(verification of the signed action, plan and votes; idempotency; blocklist; rate
limit; incident and target re-checks; claim before acting). This agent feeds it
and carries out its effects:

* ``Inspect`` — the incident's status (tickets table, this worker's view, the read
  model) and the live object (uid, revision) with the playbook's pre-checks;
* ``Claim`` — the durable claim in PostgreSQL (after the table claim), holding the
  signed action; its lease is renewed while the action is in flight;
* ``Act`` — snapshot, the claim marked ``acting``, then dry-run (the default) or the
  real action, the claim marked ``executed``;
* ``Verify`` — in the background against the playbook's signal; on failure the
  snapshot is restored (``rolled_back``). The one final result goes to
  ``action-results`` (acknowledged by the broker before the claim is closed).

A timer takes over claims whose owner's lease ran out (a killed or hung worker, or
this worker before its restart) and finishes them (:class:`Resumed`): without it an
action approved and claimed just before a crash would never report a result.

It waits for :meth:`Services.ready_to_decide` before its first action, so after a
restart the incident status is known before any action is judged.

The rate limit (actions per resource per hour) counts in event time, like the
correlator's windows: the anomalies' clock (:class:`~sre_agent.processors.clock.EventClock`,
the wall clock when none came). Live, that is the wall clock; in an accelerated replay
(``sre-agent eval`` runs days of samples in minutes) a wall-clock hour would span the
whole replay and hold back every later action on a resource acted on three times.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections import deque
from typing import Any

import orjson

from ..processors.approvals import Audit, VoterRoles
from ..processors.clock import EventClock
from ..processors.execution import (
    Act,
    Acted,
    Claim,
    Claimed,
    ExecRules,
    Inspect,
    Inspected,
    Report,
    Requested,
    Resumed,
    TargetState,
    Verify,
    not_caused,
    step,
)
from ..processors.policy import PolicyEngine
from ..processors.verify import verdict
from ..schemas import ActionResult, Anomaly, SreAction
from .audit_agent import emit_audit, incident_status
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    app, settings, services = ctx.app, ctx.settings, ctx.services
    cfg = settings.actions
    table = ctx.tables.declare("executor_state", help="target ref -> recent actions, done keys")
    targets, store = services.targets, services.postgres
    #: (service, metric) -> ids of its open anomalies (several series may share a metric)
    open_anomalies: dict[tuple[str, str], set[str]] = {}
    #: (service, metric) -> event time its last open anomaly resolved (attribution)
    cleared_at: dict[tuple[str, str], float] = {}
    background: set[asyncio.Task[None]] = set()
    rules: ExecRules | None = None
    #: this process's name on the claims it owns; idempotency keys of its open claims
    owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    lease = cfg.claim_lease_seconds
    owned: set[str] = set()
    #: event time (the anomalies' clock) for the rate limit
    clock = EventClock()

    def durable() -> bool:
        return store is not None and store.pool is not None

    def rules_now() -> ExecRules:
        nonlocal rules
        if rules is None:  # the keyring is loaded when the services start
            rules = ExecRules(policy=PolicyEngine(cfg), roles=VoterRoles.from_settings(settings),
                              keyring=services.keys.keyring, dry_run=cfg.dry_run,
                              max_per_hour=cfg.max_actions_per_resource_per_hour,
                              require_open_incident=cfg.require_open_incident)
        return rules

    def load(ref: str) -> TargetState:
        raw = table.get(ref)
        return TargetState.from_json(orjson.loads(raw) if raw else None)

    def save(ref: str, st: TargetState) -> None:
        table[ref] = orjson.dumps(st.to_json())

    async def report(a: SreAction, status: str, detail: str,
                     snapshot: dict[str, Any] | None = None, verified: bool | None = None,
                     dry_run: bool = False) -> None:
        res = ActionResult(action_id=a.action_id, plan_id=a.plan_id, incident_id=a.incident_id,
                           status=status, detail=detail[:2000], snapshot=snapshot or {},  # type: ignore[arg-type]
                           verified=verified, dry_run=dry_run, step_index=a.step_index,
                           action=a.step.action, target=a.step.target.ref(),
                           idempotency_key=a.idempotency_key)
        # acknowledged before the claim is closed: a crash in between leaves the claim
        # open, and whoever takes it over reports again (at least once, never lost)
        await ctx.send_acked(res)
        await emit_audit(ctx, "executor", "action.result", a.action_id,
                         {"status": status, "detail": detail[:500], "verified": verified,
                          "dry_run": dry_run, "plan_id": a.plan_id},
                         idempotency_key=a.idempotency_key)
        if durable():
            try:
                await store.finish_claim(a.idempotency_key, status)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - the claim row stays open
                log.warning("claim update failed: %s", exc)
        owned.discard(a.idempotency_key)

    async def inspect(a: SreAction) -> Inspected:
        status = await incident_status(ctx, a.incident_id)
        if not targets.available(a.step):
            return Inspected(a, status, False)
        try:
            return Inspected(a, status, True, observed=await targets.observe(a.step))
        except Exception as exc:  # noqa: BLE001
            return Inspected(a, status, True, error=str(exc)[:500])

    async def claim(a: SreAction, raw: Any) -> Claimed:
        if store is None:
            return Claimed(a, None)
        try:
            await store.setup()
            got = await store.claim(a.idempotency_key, a.action_id, a.step.target.ref(),
                                    action=dict(raw), owner=owner, lease_seconds=lease)
        except Exception as exc:  # noqa: BLE001
            log.warning("durable claim unavailable (%s); the table claim stands", exc)
            return Claimed(a, None)
        if got:
            owned.add(a.idempotency_key)
        return Claimed(a, got)

    async def advance(a: SreAction, status: str, expect: str, **kw: Any) -> bool:
        """Record progress on an owned durable claim; False if it is no longer ours."""
        if a.idempotency_key not in owned or not durable():
            return True  # no durable claim (no database): the table claim stands
        try:
            return await store.advance_claim(a.idempotency_key, owner, status,  # type: ignore[union-attr]
                                             expect=expect, **kw)
        except Exception as exc:  # noqa: BLE001 - the lease still guards the claim
            log.warning("claim progress not recorded (%s)", exc)
            return True

    async def act(a: SreAction, dry_run: bool) -> Acted | None:
        snapshot = await targets.snapshot(a.step)
        await emit_audit(ctx, "executor", "action.snapshot", a.action_id,
                         {"target": a.step.target.ref(), "snapshot": snapshot},
                         idempotency_key=a.idempotency_key)
        if dry_run:
            return Acted(a, snapshot, True)
        if not await advance(a, "acting", "claimed", snapshot=snapshot):
            log.warning("claim of %s was taken over before acting; not acting", a.action_id)
            owned.discard(a.idempotency_key)
            return None
        try:
            detail = await targets.act(a.step)
        except Exception as exc:  # noqa: BLE001
            return Acted(a, snapshot, False, error=str(exc) or type(exc).__name__)
        await advance(a, "executed", "acting", detail=detail[:2000])
        return Acted(a, snapshot, False, detail=detail)

    async def verify_then_report(a: SreAction, snapshot: dict[str, Any], detail: str) -> None:
        step_, started = a.step, time.monotonic()
        service = step_.target.service or step_.target.name
        symptom = (service, str((step_.verify or {}).get("metric")))
        acted_at, open_at_act = clock.now(time.time()), bool(open_anomalies.get(symptom))
        try:
            while True:
                signal: dict[str, Any] = {"open_anomalies": {k for k, v in open_anomalies.items() if v}}
                if (step_.verify or {}).get("check") == "rollout_complete":
                    signal["observed"] = await targets.observe(step_)
                v = verdict(step_.verify, time.monotonic() - started, signal, service)
                if v != "wait":
                    break
                await asyncio.sleep(cfg.verify_poll_seconds)
            if v == "pass":
                why = not_caused(step_.action, open_at_act, acted_at, cleared_at.get(symptom)) \
                    if (step_.verify or {}).get("check", "anomaly_cleared") == "anomaly_cleared" \
                    else None
                if why is not None:  # it cleared, but not because of the action
                    await emit_audit(ctx, "executor", "action.unattributed", a.action_id,
                                     {"verify": step_.verify, "reason": why},
                                     idempotency_key=a.idempotency_key)
                    await report(a, "succeeded", f"{detail}; {why}", snapshot, verified=None)
                    return
                await emit_audit(ctx, "executor", "action.verified", a.action_id,
                                 {"verify": step_.verify}, idempotency_key=a.idempotency_key)
                await report(a, "succeeded", detail, snapshot, verified=True)
                return
            await emit_audit(ctx, "executor", "action.verification_failed", a.action_id,
                             {"verify": step_.verify}, idempotency_key=a.idempotency_key)
            if step_.rollback == "restore_snapshot" and snapshot:
                undone = await targets.restore(step_, snapshot)
                await emit_audit(ctx, "executor", "action.rolled_back", a.action_id,
                                 {"detail": undone}, idempotency_key=a.idempotency_key)
                await report(a, "rolled_back", f"{detail}; verification failed; {undone}",
                             snapshot, verified=False)
            else:
                await report(a, "failed", f"{detail}; verification failed; no automatic "
                             f"rollback for {step_.action}", snapshot, verified=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - report, never crash the worker
            log.exception("verification of %s failed", a.action_id)
            await report(a, "failed", f"{detail}; verification/rollback error: {exc}", snapshot,
                         verified=False)

    async def run(first: Requested | Resumed, persist: bool = True) -> None:
        """Feed the machine until it has nothing left to ask; save after each step
        (``persist``: a taken-over claim's target may be another worker's partition)."""
        ref = first.action.step.target.ref()
        st = load(ref) if persist else TargetState()
        events: deque[Any] = deque([first])
        while events:
            st, effects = step(st, events.popleft(), clock.now(time.time()), rules_now())
            if persist:
                save(ref, st)
            for eff in effects:
                if isinstance(eff, Audit):
                    await emit_audit(ctx, eff.actor, eff.action, eff.subject, eff.details,
                                     idempotency_key=eff.idempotency_key)
                elif isinstance(eff, Report):
                    await report(eff.action, eff.status, eff.detail, eff.snapshot, eff.verified,
                                 eff.dry_run)
                elif isinstance(eff, Inspect):
                    seen = await inspect(eff.action)
                    events.append(seen if eff.resumed is None else dataclasses.replace(
                        seen, resumed=eff.resumed, snapshot=eff.snapshot))
                elif isinstance(eff, Claim):
                    events.append(await claim(eff.action, first.raw))
                elif isinstance(eff, Act):
                    acted = await act(eff.action, eff.dry_run)
                    if acted is not None:
                        events.append(acted)
                elif isinstance(eff, Verify):
                    task = asyncio.ensure_future(
                        verify_then_report(eff.action, eff.snapshot, eff.detail))
                    background.add(task)
                    task.add_done_callback(background.discard)

    @app.agent(ctx.topics["sre-actions"], name="executor")
    async def executor(stream: Any) -> None:
        await services.ready_to_decide()
        async for event in stream.events():
            action, check, raw = await ctx.decode_signed(SreAction, event, stage="executor")
            if action is None:
                continue
            m = event.message
            log.info("executor %s[%d]@%d %s", m.topic, m.partition, m.offset, action.action_id)
            try:
                before = None
                if store is not None and store.pool is not None:
                    try:
                        before = await store.claim_status(action.idempotency_key)
                    except Exception as exc:  # noqa: BLE001 - the table still dedups
                        log.warning("claim lookup failed: %s", exc)
                await run(Requested(action, check, raw, claimed_before=before))
            except Exception as exc:  # noqa: BLE001 - one bad action must not stop the executor
                log.exception("executor failed on %s", action.action_id)
                await emit_audit(ctx, "executor", "action.error", action.action_id,
                                 {"error": f"{type(exc).__name__}: {exc}"[:500]},
                                 idempotency_key=action.idempotency_key)

    @app.timer(max(1.0, lease / 3))
    async def keep_claims() -> None:
        """Renew the leases of this worker's open claims; take over orphaned ones."""
        if not durable() or not services.decisions_ready():
            return
        try:
            if owned:
                await store.renew_claims(sorted(owned), owner, lease)  # type: ignore[union-attr]
            taken = await store.take_over_claims(owner, lease)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - tried again at the next tick
            log.warning("claim leases: %s", exc)
            return
        for c in taken:
            try:
                action = SreAction.model_validate(c.action)
            except ValueError as exc:
                log.error("claim %s holds no valid action (%s); left for a human",
                          c.idempotency_key, exc)
                continue
            owned.add(c.idempotency_key)
            log.warning("took over the %s claim of %s (%s on %s)", c.status, action.action_id,
                        action.step.action, action.step.target.ref())
            try:
                await run(Resumed(action, services.keys.keyring.verify(c.action), c.action,
                                  c.status, c.snapshot, c.detail), persist=False)
            except Exception as exc:  # noqa: BLE001 - the lease runs out, tried again
                log.exception("taking over %s failed", action.action_id)
                owned.discard(c.idempotency_key)
                await emit_audit(ctx, "executor", "action.error", action.action_id,
                                 {"error": f"takeover: {type(exc).__name__}: {exc}"[:500]},
                                 idempotency_key=action.idempotency_key)

    @app.agent(ctx.topics["anomalies"], name="executor-anomaly-watch")
    async def anomaly_watch(stream: Any) -> None:
        async for event in stream.events():
            an = await ctx.decode(Anomaly, event, stage="executor-anomaly-watch")
            if an is None:
                continue
            clock.observe(an.time.timestamp(), time.time())
            ids = open_anomalies.setdefault((an.service, an.metric), set())
            if an.status == "open":
                ids.add(an.anomaly_id)
            else:
                ids.discard(an.anomaly_id)
                if not ids:
                    open_anomalies.pop((an.service, an.metric), None)
                    cleared_at[(an.service, an.metric)] = an.time.timestamp()

    @app.on_before_shutdown.connect
    async def _stop(app: Any, **kw: Any) -> None:
        for task in list(background):
            task.cancel()

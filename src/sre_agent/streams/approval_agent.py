"""action-plans + approvals + action-results -> sre-actions: the approval manager.

One agent reads the three topics, all keyed by incident id: one partition owns every
plan of an incident, with its votes and step results, so the worker that owns it sees
the incident's plans in order and runs one at a time across workers. Its tables are
co-partitioned with them (``approval_state`` by plan id, ``approval_incidents`` by
incident id, both written in the incident's partition). It checks each event's
signature and feeds it to the
pure state machine :func:`sre_agent.processors.approvals.decide`; then it carries
out the effects: audit records, a step handed to the executor on ``sre-actions``
(signed, with the signed plan and votes attached), the Slack request and its
updates, WeCom/PagerDuty notices. It waits for :meth:`Services.ready_to_decide`
before its first event. A timer marks overdue plans expired by sending the plan
with ``status=expired`` back through ``action-plans``.

Its web views (Slack buttons, the approvals REST API) are in :mod:`sre_agent.web.approvals`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from ..processors.approvals import (
    Audit,
    Effect,
    Emit,
    Hold,
    Notify,
    PlanIn,
    PlanState,
    Post,
    ResultIn,
    Rules,
    UpdateSlack,
    VoteIn,
    VoterRoles,
    decide,
    running_sibling,
)
from ..processors.policy import PolicyEngine
from ..schemas import ActionPlan, ActionResult, Approval, utcnow
from ..sinks.breakers import breaker_health
from ..sinks.notify import Notice
from .audit_agent import emit_audit
from .context import StreamContext

__all__ = ["register", "rules_of"]

log = logging.getLogger(__name__)

#: votes kept per plan that has not reached the approval manager yet
MAX_HELD_VOTES = 20

#: seconds a vote stays held before it is forwarded to its plan's incident partition
#: (its plan may still be on the way to this partition)
FORWARD_HELD = 10.0

#: seconds subtracted from the pre-post mark: the history lookup tolerates this much
#: clock difference between the worker and Slack
POST_CLOCK_SLACK = 300.0


def rules_of(ctx: StreamContext) -> Rules:
    s = ctx.settings
    return Rules(policy=PolicyEngine(s.actions), roles=VoterRoles.from_settings(s),
                 dry_run=s.actions.dry_run, slack=ctx.services.slack is not None)


def register(ctx: StreamContext) -> None:
    app, settings, services = ctx.app, ctx.settings, ctx.services
    table = ctx.tables.declare("approval_state", help="plan id -> approval state (JSON)")
    held = ctx.tables.declare("approval_held",
                              help="plan id -> signed votes that came before their plan (JSON)")
    rules = rules_of(ctx)
    slack, notifier = services.slack, services.notifier
    channel = app.topic(*(settings.topic(n) for n in ("action-plans", "approvals", "action-results")),
                        key_serializer="raw", value_serializer="raw")
    results_topic = settings.topic("action-results")
    approvals_topic = settings.topic("approvals")
    expiring: set[str] = set()
    #: waiting plans re-sent by the timer (once each)
    waiting_woken: set[str] = set()
    if slack is not None:
        ctx.stats.health["slack"] = breaker_health(slack.guard)
    #: plans re-offered for posting once; cleared when a post attempt was made
    reposting: set[str] = set()

    #: incident id -> ids of its plans (JSON list), in the partition that owns the
    #: incident: a worker taking the partition over restores it with the plans' states
    incidents = ctx.tables.declare("approval_incidents",
                                   help="incident id -> ids of its plans (JSON)")
    #: held votes (plan ids) already forwarded to their incident's partition
    forwarded: set[str] = set()

    def load(plan_id: str) -> PlanState | None:
        raw = table.get(plan_id)
        return PlanState.model_validate_json(raw) if raw else None

    def save(state: PlanState) -> None:
        table[state.plan.plan_id] = state.model_dump_json().encode()
        inc, pid = state.plan.incident_id, state.plan.plan_id
        known = siblings(inc)
        if pid not in known:
            incidents[inc] = orjson.dumps(sorted({*known, pid}))

    def siblings(incident_id: str) -> set[str]:
        """Plan ids of the incident (all in the partition of the event being handled)."""
        raw = incidents.get(incident_id)
        return set(orjson.loads(raw)) if raw else set()

    def incident_of(plan_id: str) -> str | None:
        """The incident of a plan this partition has not seen, from the read model
        (fed by ``action-plans``, every partition), for a vote that did not say it."""
        rec = services.readmodel.find_plan(plan_id)
        return rec.plan.incident_id if rec is not None and rec.plan.plan_id == plan_id else None

    async def forward(raw: bytes, incident_id: str, plan_id: str, user: str) -> None:
        """Send a vote (its signed bytes unchanged) to the partition that owns its plan."""
        fut = await ctx.topics["approvals"].send(key=incident_id.encode(), value=raw)
        await fut  # acknowledged before this partition's offset moves past the vote
        await emit_audit(ctx, "approval-manager", "vote.forwarded", plan_id,
                         {"user": user, "incident_id": incident_id,
                          "reason": "the vote came keyed by plan; the incident's partition "
                                    "owns the plan"})

    def busy_for(incident_id: str, plan_id: str) -> str | None:
        """Another plan of the incident that is running (one plan runs at a time)."""
        return running_sibling((load(pid) for pid in sorted(siblings(incident_id))),
                               incident_id, plan_id)

    async def release_waiting(incident_id: str) -> None:
        """Wake the plans of the incident that wait for one that stopped running: each
        goes round ``action-plans`` again, so its own partition's event starts it (or
        queues it behind the one started first)."""
        for pid in sorted(siblings(incident_id)):
            st = load(pid)
            if st is not None and st.waiting_for is not None:
                await ctx.send(st.plan)

    async def post_request(state: PlanState) -> None:
        """Post the plan to Slack once, also across a crash mid-post.

        Before posting, ``{"posting": t}`` is saved and flushed to the changelog; the
        ts is saved after. A worker taking over a plan still marked ``posting`` (the
        previous owner died, outcome unknown) looks the message up by its metadata in
        the channel history and posts only if it is not there.
        """
        assert slack is not None
        plan = state.plan
        if state.slack.get("posting"):
            try:
                found = await slack.find(plan.plan_id, oldest=float(state.slack["posting"]))
            except Exception as exc:  # noqa: BLE001 - cannot tell: post (at least once)
                log.warning("slack history lookup for %s failed: %s", plan.plan_id, exc)
                found = None
            if found is not None:
                state.slack = found
                save(state)
                await emit_audit(ctx, "approval-manager", "slack.reconciled", plan.plan_id,
                                 {"channel": found["channel"], "ts": found["ts"]})
                return
        reposting.discard(plan.plan_id)
        state.slack = {"posting": f"{time.time() - POST_CLOCK_SLACK:.6f}"}
        save(state)
        await app.producer.flush()  # the marker is in the changelog before Slack sees a post
        try:
            state.slack = await slack.post(plan)
            await emit_audit(ctx, "approval-manager", "slack.posted", plan.plan_id,
                             {"channel": state.slack.get("channel"), "ts": state.slack.get("ts"),
                              "status": state.status})
        except Exception as exc:  # noqa: BLE001 - the plan still waits for API votes
            # the marker stays: a timed-out post may have landed, the next try looks first
            log.warning("slack post of %s failed: %s", plan.plan_id, exc)
            await emit_audit(ctx, "approval-manager", "slack.failed", plan.plan_id,
                             {"error": str(exc)[:300]})
        ctx.stats.health["slack"] = breaker_health(slack.guard)
        save(state)

    def fresh(raw_held: bytes | None) -> list[dict[str, Any]]:
        """Held votes younger than a plan's lifetime (older ones are dropped when the
        entry is next written: a timer has no partition to write the table in)."""
        ttl = settings.actions.approval_ttl_seconds
        return [v for v in orjson.loads(raw_held) if time.time() - v["at"] <= ttl] \
            if raw_held else []

    def hold(ev: VoteIn) -> None:
        """Keep a vote for a plan not seen yet (bounded; dropped with the plan's TTL)."""
        plan_id = ev.vote.plan_id
        kept = fresh(held.get(plan_id))
        if len(kept) < MAX_HELD_VOTES:
            kept.append({"at": time.time(), "raw": dict(ev.raw)})
            held[plan_id] = orjson.dumps(kept)

    async def release(plan_id: str) -> None:
        """Feed the votes that came before their plan, now that it is here."""
        raw_held = held.get(plan_id)
        if not raw_held:
            return
        for item in fresh(raw_held):
            raw = item["raw"]
            try:
                vote = Approval.model_validate(raw)
            except ValueError:
                continue
            state, effects = decide(load(plan_id), VoteIn(vote, services.keys.keyring.verify(raw),
                                                          raw), utcnow(), rules)
            await carry_out(state, effects)
        held[plan_id] = b""  # after the votes' effects: a crash before replays them

    async def carry_out(state: PlanState | None, effects: list[Effect]) -> None:
        """Apply the machine's effects in order; the state is saved at the end (and by
        a Slack post before it calls Slack). A step is marked requested once sent."""
        for eff in effects:
            if isinstance(eff, Audit):
                await emit_audit(ctx, eff.actor, eff.action, eff.subject, eff.details,
                                 idempotency_key=eff.idempotency_key)
            elif isinstance(eff, Hold):
                hold(eff.vote)
            elif isinstance(eff, Emit) and state is not None:
                # acknowledged before the state says "requested": the table's local
                # RocksDB copy is written at once, so a kill after a buffered send left
                # a restarted owner believing a step was handed over that never was
                await ctx.send_acked(eff.action)
                state.requested.append(eff.action.step_index)
            elif isinstance(eff, Post) and state is not None and slack is not None:
                await post_request(state)
            elif isinstance(eff, UpdateSlack) and state is not None:
                if slack is not None and "ts" in state.slack:
                    try:
                        await slack.update(state.slack, state.plan, state.status, eff.note)
                    except Exception as exc:  # noqa: BLE001 - the decision stands anyway
                        log.warning("slack update of %s failed: %s", state.plan.plan_id, exc)
            elif isinstance(eff, Notify) and state is not None and notifier.enabled:
                p = state.plan
                sent = await notifier.add(Notice(
                    title=eff.title, text=eff.text, dedup_key=p.plan_id, resolve=eff.resolve,
                    severity="critical" if state.status == "blocked" else p.severity,
                    details={"incident": p.incident_id, "policy": p.policy}))
                await emit_audit(ctx, "notifier", "notify.sent", p.plan_id,
                                 {"channels": sent, "title": eff.title})
        if state is not None:
            save(state)

    @app.agent(channel, name="approval-manager")
    async def approval_manager(stream: Any) -> None:
        await services.ready_to_decide()
        async for event in stream.events():
            topic = event.message.topic
            if topic == approvals_topic:
                vote, check, raw = await ctx.decode_signed(Approval, event, "approval-manager")
                if vote is None:
                    continue
                plan_id, ev = vote.plan_id, VoteIn(vote, check, raw)
                if vote.incident_id is None and check.ok and load(plan_id) is None:
                    # keyed by plan (a producer that did not know the incident): the
                    # plan's incident partition decides it, if the read model knows it
                    inc = incident_of(plan_id)
                    if inc is not None and event.message.key != inc.encode():
                        await forward(event.message.value, inc, plan_id, vote.user)
                        continue
            elif topic == results_topic:
                res, check, _ = await ctx.decode_signed(ActionResult, event, "approval-manager")
                if res is None:
                    continue
                plan_id, ev = res.plan_id, ResultIn(res, check)  # type: ignore[assignment]
            else:
                plan, check, raw = await ctx.decode_signed(ActionPlan, event, "approval-manager")
                if plan is None:
                    continue
                plan_id, ev = plan.plan_id, PlanIn(plan, check, raw)  # type: ignore[assignment]
                reposting.discard(plan_id)
            before = load(plan_id)
            incident = before.plan.incident_id if before is not None else \
                ev.plan.incident_id if isinstance(ev, PlanIn) else None
            busy = busy_for(incident, plan_id) if incident is not None else None
            state, effects = decide(before, ev, utcnow(), rules, busy=busy)
            msg = event.message
            # one line per decision event (they are few): where it came from, what it did
            log.info("approval-manager %s[%d]@%d %s: %s", topic, msg.partition, msg.offset,
                     plan_id, ", ".join(e.action if isinstance(e, Audit) else type(e).__name__
                                        for e in effects) or "no effect")
            await carry_out(state, effects)
            if before is not None and before.running and state is not None \
                    and not state.running:
                await release_waiting(state.plan.incident_id)  # it stopped: the next starts
            if state is not None and held.get(plan_id):
                # not only on the plan's first arrival: a worker killed after saving the
                # plan's state and before releasing its held votes restarts with the
                # state restored, and the redelivered plan is not new any more
                await release(plan_id)

    @app.timer(5.0)
    async def expire_overdue() -> None:
        now = utcnow()
        for plan_id, raw_held in list(held.items()):
            votes = fresh(raw_held)
            if not votes or plan_id in forwarded or time.time() - votes[0]["at"] < FORWARD_HELD:
                continue
            # held where the plan never comes: a vote that named no incident, read before
            # the read model knew its plan. The plan's incident partition decides it.
            inc = incident_of(plan_id)
            if inc is not None:
                forwarded.add(plan_id)
                for v in votes:
                    if not v["raw"].get("incident_id"):
                        await forward(orjson.dumps(v["raw"]), inc, plan_id, str(v["raw"].get("user")))
        for plan_id, raw in list(table.items()):
            if plan_id in expiring or not raw:
                continue
            state = PlanState.model_validate_json(raw)
            exp = state.plan.expires_at
            if state.status == "pending" and exp is not None and now >= exp:
                expiring.add(plan_id)
                await ctx.send(state.plan.model_copy(update={"status": "expired"}))
            elif state.waiting_for is not None and plan_id not in waiting_woken:
                # the plan it waits for stopped without waking it (a crash in between)
                other = load(state.waiting_for)
                if other is None or not other.running:
                    waiting_woken.add(plan_id)
                    await ctx.send(state.plan)

    @app.timer(30.0)
    async def repost_unposted() -> None:
        """Plans whose Slack post failed go round again (through ``action-plans``, so
        their owner's stream handles them) once the breaker lets calls through; the
        retry first looks for the message, in case the failed post landed after all."""
        if slack is None or slack.guard.breaker.state == "open":
            return
        now = utcnow()
        for plan_id, raw in list(table.items()):
            if not raw:
                continue
            state = PlanState.model_validate_json(raw)
            exp = state.plan.expires_at
            if (state.status == "pending" and "ts" not in state.slack
                    and plan_id not in reposting and (exp is None or exp > now)):
                reposting.add(plan_id)
                await ctx.send(state.plan)

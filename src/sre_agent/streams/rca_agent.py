"""incidents -> rca-results: the RCA engine over buffered windows, rules, similar cases, Claude.

For each new or changed (``open``/``updated``) incident:

1. the **engine** (:func:`~sre_agent.processors.rca_engine.rank_window`, the
   one ``sre-agent rca offline`` runs) ranks every service from the metric
   and log windows around the incident's first signal, which every worker
   buffers (:mod:`.rca_windows`; off with ``rca.windows=false``);
2. :class:`~sre_agent.processors.rca.RootCauseAnalyzer` types the causes
   (deploys, pools, OOMs ...) with its rules, weighted by that ranking, and
   adds similar cases from the knowledge base (``ctx.services.knowledge``);
3. when an Anthropic API key is configured and the incident's token budget
   (``rca_budget`` table) allows, Claude's structured opinion is merged.

The first result waits for the incident's first ``rca.first_seconds`` of
event time (its first signal's minute: the other signals of that moment, which
reach the correlator one by one, are in the incident and the windows by then;
later revisions meanwhile replace the held one), bounded by as many wall
seconds and by a stalled feed, so a diagnosis and the plan that follows it (an
AUTO plan executes at once) are not made on whichever lone signal came first.
Once the windows' event time has passed the end of the judged window
(``rca.after_seconds`` after the start) the incident is analysed again, and
the result is published when its top hypothesis changed (a refined RCA; at
most one per incident revision). Any failure of the knowledge base, the
engine or the LLM leaves the rest of the result, which is always published.
Every step is audited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..processors.rca import RootCauseAnalyzer, incident_text, merge_llm
from ..processors.rca_engine import Candidate, ChangeEvent, rank_window
from ..processors.rca_evidence import WindowSpec
from ..processors.rca_windows import WindowStore
from ..processors.redact import redact_obj
from ..processors.topology import ServiceGraph
from ..schemas import AuditRecord, Incident, RcaResult, SimilarCase
from ..sinks.breakers import breaker_health
from .context import StreamContext
from .rca_windows import WindowFeed

__all__ = ["due_first", "due_refinements", "first_clock", "first_moment", "hold_first",
           "incident_window_args", "register"]

log = logging.getLogger(__name__)

KB_TIMEOUT = 5.0
#: incidents waiting for their refined RCA (bounded: the oldest are dropped)
MAX_PENDING = 1000
#: wall seconds a pending refinement waits for event time to pass its window
PENDING_WALL = 1800.0
#: incidents remembered as analysed (bounded: the oldest are forgotten)
MAX_ANALYSED = 10_000
#: wall seconds without newer data after which pending refinements run with what is there
STALLED_WALL = 30.0
#: wall seconds between checks of the held first analyses (short: the first RCA is what
#: pages and plans, and an accelerated replay moves a sample-minute in a fraction of this)
FIRST_TICK = 0.1


def incident_window_args(inc: Incident, after: float | None = None) -> dict[str, Any]:
    """Start, symptom and changes of an incident, as the engine wants them.

    * start: the incident's first signal (deploys excluded: a change is a
      candidate cause, not a symptom) — unless that is more than ``after`` (the
      judged window, ``rca.after_seconds``) before the first alert: a window judged
      from there would not even reach the symptom that paged, so the page is the
      start (what was already going on before it is the reference it is judged
      against, as it would be for a person paged then);
    * symptom: the service of the first alert, the user-facing signal (none:
      no call-path factor);
    * changes: the correlator's candidate changes and the Kubernetes signals.
    """
    sigs = sorted((s for s in inc.signals if s.kind != "deploy"), key=lambda s: s.time)
    start = sigs[0].time.timestamp() if sigs else inc.opened_at.timestamp()
    alerts = [s for s in sigs if s.kind == "alert"]
    if alerts and after is not None:
        page = alerts[0].time.timestamp()
        if page - start > after:
            start = page
    symptom = {"service": alerts[0].service, "metric": alerts[0].metric} if alerts else None
    events = []
    for ch in inc.candidate_changes:
        try:
            t = float(ch["ts"]) if "ts" in ch else datetime.fromisoformat(
                str(ch["time"])).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        kind = "config" if ch.get("change_type") == "config" else "deploy"
        detail = " ".join(str(ch.get(k)) for k in ("revision", "author") if ch.get(k))
        events.append(ChangeEvent(t, str(ch.get("service", "")), kind, detail))
    for s in sigs:
        if s.kind == "k8s" and s.metric:
            events.append(ChangeEvent(s.time.timestamp(), s.service, s.metric, s.summary))
    return {"start": start, "symptom": symptom, "events": events}


def due_refinements(pending: OrderedDict[str, tuple[Incident, float, tuple[str, str] | None,
                                              float]],
                    clock: float, after: float, stalled: bool,
                    now: float) -> list[tuple[Incident, tuple[str, str] | None]]:
    """Take the pending refinements that are due (their judged window has passed in event
    time, or the feed stalled) out of ``pending``, and drop the ones that waited longer
    than :data:`PENDING_WALL`; synchronously, so nothing else changes ``pending`` meanwhile.

    >>> from datetime import UTC, datetime
    >>> inc = Incident(incident_id="i", title="x", fingerprint="f", opened_at=datetime.now(UTC))
    >>> p = OrderedDict(a=(inc, 0.0, None, 10.0), b=(inc, 500.0, None, 10.0))
    >>> [i.incident_id for i, _ in due_refinements(p, 400.0, 300.0, False, 20.0)], list(p)
    (['i'], ['b'])
    """
    due = []
    for iid, (inc, start, shown, queued) in list(pending.items()):
        if clock >= start + after or stalled:
            del pending[iid]
            due.append((inc, shown))
        elif now - queued > PENDING_WALL:
            del pending[iid]
    return due


def hold_first(held: OrderedDict[str, tuple[Incident, float, float]],
               analysed: Mapping[str, int], inc: Incident, start: float, clock: float,
               wait: float, now: float) -> bool:
    """Whether ``inc``'s analysis waits (it is then in ``held``): its first analysis
    (since it was last reopened: ``analysed`` holds the reopen count it was analysed at)
    has not gone out and the windows' event time has not reached ``start + wait``, or
    an earlier revision is held already (this newer one, which knows more, replaces it
    and keeps its place in time).

    >>> from datetime import UTC, datetime
    >>> inc = Incident(incident_id="i", title="x", fingerprint="f", opened_at=datetime.now(UTC))
    >>> h = OrderedDict()
    >>> hold_first(h, {}, inc, 0.0, 0.0, 60.0, 5.0), hold_first(h, {}, inc, 0.0, 60.0, 60.0, 6.0)
    (True, True)
    >>> h["i"][2], hold_first(OrderedDict(), {"i": 0}, inc, 0.0, 0.0, 60.0, 5.0)
    (5.0, False)
    """
    was = held.get(inc.incident_id)
    if was is None and (analysed.get(inc.incident_id, -1) >= inc.reopen_count
                        or clock >= start + wait):
        return False
    held[inc.incident_id] = (inc, start if was is None else min(start, was[1]),
                             now if was is None else was[2])
    return True


def first_moment(inc: Incident, analysed: Mapping[str, int], after: float) -> float:
    """Event time the first analysis of ``inc`` waits from: its start, or, when it was
    reopened since its last analysis, the moment it reopened (a new occurrence: the
    correlator reopens an incident whose signal fires again soon after it resolved, and
    that moment's other signals are not in it yet)."""
    start = float(incident_window_args(inc, after)["start"])
    seen = analysed.get(inc.incident_id)
    if seen is not None and inc.reopen_count > seen:
        return max(start, inc.time.timestamp())
    return start


def first_clock(store: WindowStore) -> float:
    """Event time up to which the windows hold the evidence of a moment: the metric
    series' clock when there are series (their partials come a flush interval after the
    log lines, which arrive directly), else the log lines' clock."""
    return min(store.clock, store.metric_clock) if len(store) else store.clock


def due_first(held: OrderedDict[str, tuple[Incident, float, float]], clock: float,
              wait: float, stalled: bool, now: float) -> list[tuple[Incident, float]]:
    """Take the held first analyses that are due out of ``held``: the windows' event time
    reached the incident's start + ``wait`` (its first moment's signals are in), the feed
    stalled, or the incident waited ``wait`` wall seconds (event time lagging). Synchronous,
    like :func:`due_refinements`.

    >>> from datetime import UTC, datetime
    >>> inc = Incident(incident_id="i", title="x", fingerprint="f", opened_at=datetime.now(UTC))
    >>> h = OrderedDict(a=(inc, 0.0, 10.0), b=(inc, 500.0, 10.0))
    >>> len(due_first(h, 60.0, 60.0, False, 20.0)), list(h)
    (1, ['b'])
    """
    due = []
    for iid, (inc, start, queued) in list(held.items()):
        if clock >= start + wait or stalled or now - queued >= wait:
            del held[iid]
            due.append((inc, start))
    return due


def register(ctx: StreamContext) -> None:
    cfg = ctx.settings.rca
    graph = ServiceGraph(ctx.settings.correlation.edges)
    analyzer = RootCauseAnalyzer(graph)
    spec = WindowSpec(reference=cfg.reference_seconds, after=cfg.after_seconds)
    store = WindowStore(horizon=cfg.reference_seconds + cfg.after_seconds + 600.0,
                        bucket=cfg.bucket_seconds, max_series=cfg.max_series,
                        max_log_lines=cfg.max_log_lines) if cfg.windows else None
    feed = WindowFeed(ctx.settings, store) if store is not None else None
    llm = ctx.services.llm
    if llm.enabled:
        ctx.stats.health["anthropic"] = breaker_health(llm.guard)
    budget_total = ctx.settings.anthropic.max_tokens_per_incident
    budget = ctx.tables.declare("rca_budget", help="LLM tokens spent per incident")
    ctx.stages.rca_analyzer = analyzer
    ctx.stages.rca_windows = store
    #: incident id -> (incident, start, top shown, wall time queued)
    pending: OrderedDict[str, tuple[Incident, float, tuple[str, str] | None, float]] = \
        OrderedDict()
    #: incident id -> (latest revision, start, wall time held): first analyses waiting for
    #: the incident's first ``rca.first_seconds`` of event time
    held: OrderedDict[str, tuple[Incident, float, float]] = OrderedDict()
    #: incidents whose first analysis went out (a later revision is not held again)
    analysed: OrderedDict[str, int] = OrderedDict()
    #: one analysis at a time, in the order taken: a held revision released by the timer
    #: and a newer one from the stream must not publish out of order (latest RCA wins)
    order = asyncio.Lock()

    if feed is not None:
        @ctx.app.task
        async def rca_window_feed() -> None:
            ctx.stats.health["rca_windows"] = feed.health()
            await feed.run()

    async def similar_to(inc: Incident) -> list[SimilarCase]:
        kb = ctx.services.knowledge
        if kb is None:
            return []
        try:
            found: list[SimilarCase] = await asyncio.wait_for(kb.search(incident_text(inc), 5),
                                                              KB_TIMEOUT)
            ctx.stats.health["knowledge"] = {"ok": True}
            return found
        except Exception as exc:
            ctx.stats.health["knowledge"] = {"ok": False, "error": str(exc)[:300]}
            log.warning("knowledge search failed for %s: %s", inc.incident_id, exc)
            return []

    #: incident id -> (inputs, ranking): a revision that changes neither the incident's
    #: start, symptom and changes nor the windows (same bucket of event time) reuses it
    rankings: OrderedDict[str, tuple[Any, list[Candidate]]] = OrderedDict()

    async def engine_ranking(inc: Incident) -> list[Candidate] | None:
        if store is None or len(store) == 0 and store.log_lines == 0:
            return None
        args = incident_window_args(inc, cfg.after_seconds)
        key = (args["start"], str(args["symptom"]), tuple(args["events"]),
               tuple(sorted(inc.services)), store.clock // cfg.bucket_seconds)
        cached = rankings.get(inc.incident_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        w = store.window(args["start"], graph.edges, args["symptom"], args["events"],
                         inc.services)
        try:  # numpy work: off the event loop
            ranking = await asyncio.to_thread(rank_window, w, spec)
        except Exception:  # noqa: BLE001 - the rules still answer
            log.exception("RCA engine failed for %s", inc.incident_id)
            return None
        rankings[inc.incident_id] = (key, ranking)
        rankings.move_to_end(inc.incident_id)
        while len(rankings) > MAX_PENDING:
            rankings.popitem(last=False)
        return ranking

    async def analyze(inc: Incident, refined: bool = False,
                      as_of: float | None = None) -> RcaResult:
        ranking = await engine_ranking(inc)
        result = analyzer.analyze(inc, await similar_to(inc), ranking)
        if as_of is not None and as_of > result.time.timestamp():
            # a held first analysis is as of the event time it waited for
            result = result.model_copy(update={"time": datetime.fromtimestamp(as_of, UTC)})
        if llm.enabled:
            used = int(budget.get(inc.incident_id) or b"0")
            outcome = await llm.analyze(inc, result, graph.edges, budget_total - used)
            ctx.stats.health["anthropic"] = breaker_health(llm.guard)
            if outcome.tokens:
                budget[inc.incident_id] = str(used + outcome.tokens).encode()
            if outcome.hypotheses:
                result = merge_llm(result, outcome.hypotheses, outcome.tokens,
                                   set(inc.services) | set(graph.services))
            await ctx.send(AuditRecord(
                actor="rca", action="llm.called" if outcome.error is None else "llm.fallback",
                subject=inc.incident_id,
                details={"tokens": outcome.tokens, "tokens_total": used + outcome.tokens,
                         "error": outcome.error, "model": ctx.settings.anthropic.model}))
        # what leaves the RCA (Slack, tickets, knowledge base) carries no secrets either
        result = RcaResult.model_validate(redact_obj(result.model_dump(mode="json")))
        top = result.hypotheses[0] if result.hypotheses else None
        ctx.stats.health["rca_engine"] = {
            "ok": True, "last_incident": inc.incident_id, "pending": len(pending),
            "pending_ids": list(pending)[-50:], "ranked": len(ranking or []),
            "windows": ranking is not None}
        await ctx.send(result)
        await ctx.send(AuditRecord(
            actor="rca", action="rca.refined" if refined else "rca.completed",
            subject=inc.incident_id,
            details={"revision": inc.revision, "method": result.method,
                     "engine": ranking is not None,
                     "top": {"cause_type": top.cause_type, "service": top.service,
                             "confidence": round(top.confidence, 3)} if top else None,
                     "similar": [c.id for c in result.similar]}))
        log.info("rca %s r%d%s: %s", inc.incident_id, inc.revision, " (refined)" if refined else "",
                 f"{top.cause_type} on {top.service} ({top.confidence:.2f})" if top else "-",
                 extra={"incident_id": inc.incident_id})
        return result

    def top_of(result: RcaResult) -> tuple[str, str] | None:
        h = result.hypotheses[0] if result.hypotheses else None
        return (h.cause_type, h.service) if h else None

    async def first_or_next(inc: Incident, held_from: float | None = None) -> None:
        """Analyse ``inc`` now and queue its refinement if its judged window is ahead.

        ``held_from``: the start of a held first analysis (its result is as of the
        event time it waited for, at most start + ``rca.first_seconds``)."""
        start = incident_window_args(inc, cfg.after_seconds)["start"]
        as_of = None if held_from is None or store is None else min(
            first_clock(store), held_from + cfg.first_seconds)
        async with order:
            result = await analyze(inc, as_of=as_of)
        analysed[inc.incident_id] = inc.reopen_count
        analysed.move_to_end(inc.incident_id)
        while len(analysed) > MAX_ANALYSED:
            analysed.popitem(last=False)
        if store is not None:
            if store.clock < start + cfg.after_seconds:
                pending[inc.incident_id] = (inc, start, top_of(result), time.monotonic())
                pending.move_to_end(inc.incident_id)
                while len(pending) > MAX_PENDING:
                    pending.popitem(last=False)
            else:
                pending.pop(inc.incident_id, None)

    @ctx.app.agent(ctx.topics["incidents"], name="rca")
    async def rca(stream: Any) -> None:
        async for event in stream.events():
            inc = await ctx.decode(Incident, event, stage="rca")
            if inc is None or inc.status == "resolved":
                if inc is not None:
                    pending.pop(inc.incident_id, None)
                    held.pop(inc.incident_id, None)
                continue
            # nothing buffered at all (windows without sources): nothing to wait for
            if store is not None and cfg.first_seconds > 0 and (
                    len(store) or store.log_lines) and hold_first(
                    held, analysed, inc, first_moment(inc, analysed, cfg.after_seconds),
                    first_clock(store), cfg.first_seconds, time.monotonic()):
                while len(held) > MAX_PENDING:
                    _, (old, old_start, _) = held.popitem(last=False)
                    await first_or_next(old, old_start)
                continue
            await first_or_next(inc)

    if store is not None:
        clock_seen = [store.clock, time.monotonic()]

        @ctx.app.timer(cfg.refine_interval)
        async def rca_refine() -> None:
            """Analyse again the incidents whose judged window has passed (event time).

            When no newer data arrived for :data:`STALLED_WALL` seconds (the feed
            caught up, the sources went quiet) the pending ones run with what is
            there rather than wait for a window that will not fill.
            """
            now = time.monotonic()
            if store.clock != clock_seen[0]:
                clock_seen[:] = [store.clock, now]
            stalled = (feed is None or feed.caught_up) and now - clock_seen[1] >= STALLED_WALL
            # taken out before any await: the rca agent drops entries meanwhile (resolved
            # incidents), which crashed the worker when this loop looked them up later
            for inc, start in due_first(held, first_clock(store), cfg.first_seconds, stalled,
                                        now):
                await first_or_next(inc, start)
            for inc, shown in due_refinements(pending, store.clock, cfg.after_seconds,
                                              stalled, now):
                await _refined(inc, shown)
            if feed is not None:
                ctx.stats.health["rca_windows"] = feed.health()
            ctx.stats.health.setdefault("rca_engine", {"ok": True}).update(
                pending=len(pending), pending_ids=list(pending)[-50:])

        if cfg.first_seconds > 0:
            @ctx.app.timer(min(cfg.refine_interval, FIRST_TICK))
            async def rca_first() -> None:
                """Release the held first analyses whose first moment has passed."""
                now = time.monotonic()
                stalled = (feed is None or feed.caught_up) \
                    and now - clock_seen[1] >= STALLED_WALL and store.clock == clock_seen[0]
                for inc, start in due_first(held, first_clock(store), cfg.first_seconds, stalled,
                                            now):
                    await first_or_next(inc, start)

        async def _refined(inc: Incident, shown: tuple[str, str] | None) -> RcaResult | None:
            ranking = await engine_ranking(inc)
            preview = analyzer.analyze(inc, (), ranking)
            if top_of(preview) == shown:
                return None
            async with order:
                return await analyze(inc, refined=True)

"""metrics -> per-series baselines (table) -> anomalies; saturation series -> predictions.

Wiring only: the detector (:class:`~sre_agent.processors.detect.MetricDetector`)
and the early warning (:class:`~sre_agent.processors.predict.EarlyWarning`) keep
their models in memory; state that changed is checkpointed to the ``baselines``
and ``forecasts`` tables per partition at most every ``checkpoint_interval``,
less often when checkpoints take more than :data:`CHECKPOINT_SHARE` of the time
from their start to the broker's acknowledgement of their last record, never while
the previous one's records are unacknowledged (:mod:`~sre_agent.streams.checkpoints`),
at once for a series with an anomaly transition; dropped from memory on revoke.
Table values are leaves of series' states that never pass
``worker.state_record_bytes`` (:class:`~sre_agent.processors.blobs.BlobStore`, keys
``"<partition>/t<depth>.<bucket>"``), read back when a leaf's first series shows up;
what checkpoints write is in ``/status`` (``health.state``). Each checkpoint ends with
the partition's position (``"<partition>/position"``: the first offset its saved state
has not learned); after a rebalance a partition resumes there when the group's commit
is ahead of it (:func:`~sre_agent.streams.faust_fixes.resume_from_state`).

Views: ``POST /api/baseline/learn`` (operator) starts a history bootstrap run,
``GET /api/baseline/metrics`` (viewer) shows what is learned and the runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections import defaultdict
from typing import Any

import orjson
from faust.streams import _current_event
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field

from ..processors import MetricDetector
from ..processors.blobs import BlobStore
from ..processors.predict import EarlyWarning
from ..schemas import MetricBatch, encode
from ..schemas.series_refs import SeriesDirectory
from ..schemas.windows import MAX_ROWS
from .checkpoints import ChangelogAcks, CheckpointClock
from .context import StreamContext
from .faust_fixes import REWINDS, before_wait_empty, resume_from_state
from .rca_windows import WindowRollup, window_horizon

__all__ = ["register"]

log = logging.getLogger(__name__)

#: A checkpoint rewrites every leaf holding a changed series, so when few samples
#: per series arrive between checkpoints it writes much more than it learned. A
#: checkpoint that took ``t`` seconds, from its start to the broker's acknowledgement
#: of its last record, makes its partition's next one wait at least
#: ``t / CHECKPOINT_SHARE`` (up to ``worker.checkpoint_max_interval``): writing state
#: keeps the producer and the broker busy for at most this share of the time, whatever
#: the number of series, the interval and the broker's speed. (It counted the stage's
#: CPU only, and the broker's time to take the records was the larger cost: 2026-12-07)
CHECKPOINT_SHARE = 0.1

#: seconds a metrics partition waits for a skipped offset it reads again before the
#: jump is taken as offsets that do not exist
RESYNC_SECONDS = 30.0


class LearnRequest(BaseModel):
    """Body of ``POST /api/baseline/learn``."""

    model_config = ConfigDict(extra="forbid")
    days: float = Field(default=7.0, ge=1, le=30)
    step: float = Field(default=60.0, ge=1, le=3600)
    queries: list[str] | None = None


def register(ctx: StreamContext) -> None:
    table = ctx.tables.baselines
    forecasts = ctx.tables.declare("forecasts", help="per-series trend forecaster state")
    # many series per table value (a leaf, split before it passes the record budget):
    # a checkpoint writes a few hundred values, not one per series
    budget = ctx.settings.worker.state_record_bytes
    blobs, fblobs = BlobStore(budget), BlobStore(budget)
    current = [-1]  # the partition being processed: where a new series' group is read
    detector = MetricDetector(ctx.settings.anomaly_detection,
                              load=lambda sid: blobs.activate(current[0], sid, table.get))
    early = EarlyWarning(ctx.settings.prediction,
                         load=lambda sid: fblobs.activate(current[0], sid, forecasts.get))
    # schema v2 refs: key -> name and labels, saved with the state (same checkpoint)
    labels_table = ctx.tables.declare("series-labels", help="metrics series key -> labels")
    directory = SeriesDirectory(load=lambda key: labels_table.get(key))
    ctx.stages.series_directory = directory
    ctx.stages.metric_detector = detector
    ctx.stages.early_warning = early
    ctx.stages.baseline_band = detector.band
    runs: dict[str, Any] = {}
    metrics_topic = ctx.topics["metrics"].get_topic_name()
    interval = ctx.settings.worker.checkpoint_interval
    # the table writes of this stage and the broker's acknowledgements of them, per
    # partition: a checkpoint is not queued behind the previous one's records
    acks = ChangelogAcks(t.changelog_topic.get_topic_name()
                         for t in (table, forecasts, labels_table))
    ctx.app.sensors.add(acks)
    clock = CheckpointClock(interval, CHECKPOINT_SHARE,
                            ctx.settings.worker.checkpoint_max_interval)
    #: what checkpoints cost: CPU, records and bytes per table, the samples they saved
    state_health: dict[str, Any] = {"ok": True, "checkpoints": 0, "cpu_seconds": 0.0,
                                    "samples_saved": 0, "label_bytes": 0, "input_bytes": 0,
                                    "held": 0, "unacked": 0, "last_took": None,
                                    "baselines": blobs.stats.as_dict(),
                                    "forecasts": fblobs.stats.as_dict()}
    #: per partition: samples learned since its last checkpoint
    samples_unsaved: dict[int, int] = defaultdict(int)
    ctx.stats.health["state"] = state_health
    #: what the stage awaits while it handles a batch (None between batches)
    waiting: dict[str, Any] = {"on": None, "since": None}
    state_health["waiting"] = waiting
    # the stream RCA's windows: bucket partials of what this stage decoded, for every
    # worker (streams/rca_windows.py); no worker decodes the whole metrics topic twice
    rcs = ctx.settings.rca
    rollup = WindowRollup(rcs.bucket_seconds, window_horizon(ctx.settings)) \
        if rcs.windows else None
    source = f"{ctx.settings.worker.app_id}/{ctx.settings.worker.web_port}"

    # the console's charts of anomalous series: fed from the decoded batch (a second
    # agent on `metrics` parsed every message again)
    charts = ctx.services.readmodel.series

    def chart_band(sid: str, t: float, v: float) -> Any:
        from ..web.api import band_of

        return band_of(ctx, sid, t, v)

    rollup_health: dict[str, Any] = {"ok": True, "messages": 0, "rows": 0, "errors": 0}
    if rollup is not None:
        ctx.stats.health["rca_window_rollup"] = rollup_health

    async def flush_windows() -> None:
        """Publish the waiting partials; a failed send loses them (the RCA's evidence
        lacks them), counted and logged, never stopping the stage."""
        if rollup is None:
            return
        for w in rollup.flush(source):
            try:
                await ctx.send(w)
            except Exception as exc:  # noqa: BLE001 - broker away: counted, go on
                rollup_health.update(ok=False, errors=rollup_health["errors"] + 1,
                                     last_error=f"{type(exc).__name__}: {exc}"[:300])
                log.warning("RCA window partials not sent: %s", rollup_health["last_error"])
            else:
                rollup_health["ok"] = True
                rollup_health["messages"] += 1
                rollup_health["rows"] += len(w.service)

    def write(partition: int, sids: list[str]) -> None:
        """Write the leaves holding ``sids`` (whole) to the baselines table."""
        acks.issue(partition, _apply(table, blobs.write(partition, sids, detector.take,
                                                        table.get)))

    def checkpoint(partition: int, force: bool) -> bool:
        """Write the partition's changed state when due (``force``: now); True if done."""
        now = time.monotonic()
        if not force and not clock.due(partition, now, acks):
            state_health["held"] = clock.held
            return False
        cpu = time.process_time()
        took = acks.settled(partition)
        if took is not None:
            state_health["last_took"] = round(took, 3)
        for key, value in directory.take_new(partition).items():
            labels_table[key] = value
            acks.issue(partition)
            state_health["label_bytes"] += len(value)
        write(partition, detector.dirty_sids(tag=partition))
        acks.issue(partition, _apply(forecasts, fblobs.write(
            partition, early.dirty_sids(tag=partition), early.take, forecasts.get)))
        # last, after the leaves in the same changelog partition: a restore that has
        # this record has the state it covers (see resume_from_state below)
        position = seen[partition] + 1 if partition in seen else None
        if position is not None and position != saved_position.get(partition):
            table[position_key(partition)] = b"%d" % position
            acks.issue(partition)
            saved_position[partition] = position
        state_health["checkpoints"] += 1
        state_health["samples_saved"] += samples_unsaved.pop(partition, 0)
        state_health["cpu_seconds"] += time.process_time() - cpu
        state_health["baselines"] = blobs.stats.as_dict()
        state_health["forecasts"] = fblobs.stats.as_dict()
        # partitions that resumed at their state's position, behind the group's commit
        state_health["resumed_behind_commit"] = REWINDS.get(metrics_topic, 0)
        state_health["unacked"] = sum(acks.pending(p) for p in list(acks.issued))
        clock.started(partition, now, acks, cpu=time.process_time() - cpu)
        return True

    #: per partition, the messages whose samples are learned but not checkpointed yet.
    #: They are acked only after the checkpoint wrote their state, and Faust flushes the
    #: changelog before it commits: a committed offset never runs ahead of the saved
    #: state, so a worker killed between checkpoints replays exactly what it lost (the
    #: detector skips samples its restored state already holds). Their payload is
    #: dropped once learned: a checkpoint interval of input is held as offsets, not bytes.
    unsaved: dict[int, list[Any]] = defaultdict(list)
    #: per partition, the last event learned (table writes outside the stream need one)
    last_event: dict[int, Any] = {}
    #: per partition: the offset of the last message learned (or dead-lettered), and
    #: the position last saved with the state: the first offset the state lacks
    seen: dict[int, int] = {}
    saved_position: dict[int, int] = {}
    #: a rebalance or shutdown waits for every fetched event to be acked: save and ack
    release = [False]

    def ack_saved(partition: int) -> None:
        consumer = ctx.app.consumer
        for message in unsaved.pop(partition, []):
            message.ack(consumer)

    async def release_unsaved() -> None:
        """Faust is about to wait for every fetched event to be acked (rebalance,
        shutdown): checkpoint the partitions holding unacked events and ack them now,
        outside the stream's iteration; events still in processing do it themselves."""
        release[0] = True
        for partition, messages in list(unsaved.items()):
            if not messages or partition not in last_event:
                continue
            token = _current_event.set(weakref.ref(last_event[partition]))
            try:
                checkpoint(partition, force=True)
            finally:
                _current_event.reset(token)
            ack_saved(partition)

    # No timer saves quiet partitions: writing a table outside the stream can race a
    # rebalance (a run stalled a taken-over partition); a quiet partition's last events
    # are saved with its next event, or at the next rebalance or shutdown.
    before_wait_empty(ctx.app, release_unsaved)

    @ctx.app.agent(ctx.topics["metrics"], name="metrics-baseline")
    async def metrics_baseline(stream: Any) -> None:
        async for event in stream.noack().events():
            partition = event.message.partition
            if await _out_of_order(partition, event):
                continue
            state_health["input_bytes"] += event.message.serialized_value_size or 0
            batch = await ctx.decode(MetricBatch, event, stage="metrics-baseline")
            if batch is None:  # dead-lettered: nothing to learn, acked with the others
                _learned(partition, event)
                continue
            current[0] = partition
            batch = await _resolve(ctx, directory, batch, event)
            n = batch.sample_count()
            ctx.stats.samples_in += n
            samples_unsaved[partition] += n
            if charts.metrics:  # points with the band they are judged against
                charts.add_series(batch.series, chart_band)
            anomalies = detector.update(batch, tag=partition)
            predictions = early.update(batch, tag=partition)
            if rollup is not None:
                rollup.add_series(batch.series)
                if rollup.pending >= MAX_ROWS:
                    await flush_windows()
            waiting["on"], waiting["since"] = "send", time.time()
            for anomaly in anomalies:
                await ctx.send(anomaly)
            for prediction in predictions:
                await ctx.send(prediction)
            waiting["on"] = None
            if anomalies:
                # a transition (open/resolve) is checkpointed at once, right behind its
                # event in the producer: they leave together. Without transactions a kill
                # between the two acknowledgements can still send the event again on
                # replay (consumers are idempotent on anomaly_id and status); waiting
                # for the event's acknowledgement first made that window wide enough
                # for the chaos test to see duplicates (2026-12-07)
                write(partition, [a.series for a in anomalies])
            _learned(partition, event)

    #: per partition: (the offset read again after a skip, since when) until it comes
    resync: dict[int, tuple[int, float]] = {}

    async def _out_of_order(partition: int, event: Any) -> bool:
        """True if ``event`` must not be learned now: a record past the next offset of
        its partition means the stream skipped one (Faust does within one generation
        now and then), and the detector drops samples older than what it learned, so
        the partition is read again from the skipped offset and the records after it
        wait for their turn (acknowledged now; read again). A jump still there after
        ``RESYNC_SECONDS`` is offsets that do not exist (compaction, transactions)."""
        last = seen.get(partition)
        if last is None:
            return False
        offset, target = event.message.offset, last + 1
        if offset <= target:
            resync.pop(partition, None)
            return False
        pending = resync.get(partition)
        now = time.monotonic()
        if pending is None or pending[0] != target:
            resync[partition] = (target, now)
            state_health["read_again"] = state_health.get("read_again", 0) + 1
            log.warning("metrics partition %d: offset %d came where %d was next: reading "
                        "again from %d", partition, offset, target, target)
            await ctx.app.consumer.seek(event.message.tp, target)
        elif now - pending[1] > RESYNC_SECONDS:
            resync.pop(partition, None)
            return False  # the offsets in between do not exist
        event.message.value = None
        event.ack()
        return True

    def _learned(partition: int, event: Any) -> None:
        """``event`` is learned: acked once a checkpoint saved what it taught."""
        event.message.value = None  # kept as an offset to ack, not as bytes
        unsaved[partition].append(event.message)
        seen[partition] = max(seen.get(partition, -1), event.message.offset)
        last_event[partition] = event
        if checkpoint(partition, force=release[0]):
            ack_saved(partition)

    def saved_position_of(partition: int) -> int | None:
        raw = table.get(position_key(partition))
        return int(raw) if raw else None

    # after a rebalance a partition resumes where its restored state stops learning,
    # if that is behind the group's commit (faust_fixes.resume_from_state)
    resume_from_state(ctx.app, metrics_topic, saved_position_of)

    @ctx.app.on_partitions_assigned.connect
    async def on_assigned(app: Any, assigned: Any, **kw: Any) -> None:
        release[0] = False  # the rebalance is over: back to interval checkpoints

    @ctx.app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kw: Any) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == ctx.topics["metrics"].get_topic_name()}
        if parts:
            dropped = detector.forget(parts)
            directory.forget(parts)
            early.forget(parts)
            blobs.forget(parts)
            fblobs.forget(parts)
            for p in parts:
                clock.forget(p)
                unsaved.pop(p, None)  # the next owner replays them from the commit
                last_event.pop(p, None)
                seen.pop(p, None)
                saved_position.pop(p, None)
                samples_unsaved.pop(p, None)
            log.info("partitions %s revoked: dropped %d in-memory series", sorted(parts), dropped)

    if rollup is not None:
        @ctx.app.timer(interval=rcs.flush_seconds)
        async def rca_window_flush() -> None:
            await flush_windows()

    @ctx.app.task
    async def freeze_startup_heap() -> None:
        """Move everything allocated while starting (modules, app, clients: ~1 M
        objects) out of the cyclic GC's reach, so the full collections that decoding
        batches triggers scan only what the stream keeps, not the whole heap."""
        gc.collect()
        gc.freeze()

    _register_views(ctx, detector, early, runs)


def position_key(partition: int) -> str:
    """The ``baselines`` key of ``partition``'s saved position (beside its leaves)."""
    return f"{partition}/position"


_MISSING = object()


def _apply(table: Any, writes: list[tuple[str, bytes | None]]) -> int:
    """Table writes in order (the changelog keeps it): a value, or None to delete.
    Returns the number of changelog records they make."""
    n = 0
    for key, value in writes:
        if value is None:
            n += table.pop(key, _MISSING) is not _MISSING
        else:
            table[key] = value
            n += 1
    return n


async def _resolve(ctx: StreamContext, directory: SeriesDirectory, batch: MetricBatch,
                   event: Any) -> MetricBatch:
    """The batch with its refs (schema v2) turned into full series; what cannot be
    resolved or trusted goes to the DLQ, one dead letter per message."""
    msg = event.message
    got = directory.expand(batch, tag=msg.partition)
    if got.unresolved or got.mismatched:
        reason = (f"{len(got.unresolved)} refs name no known series; "
                  f"{len(got.mismatched)} series ids do not match their labels")
        await ctx.dead_letter("metrics", orjson.dumps({"unresolved": got.unresolved[:1000],
                                                       "mismatched": got.mismatched[:1000]}),
                              reason, stage="metrics-baseline", partition=msg.partition,
                              offset=msg.offset)
    if not batch.refs:
        return batch
    return batch.model_copy(update={"series": got.series, "refs": []})


def summary(detector: MetricDetector, early: EarlyWarning, metric: str | None = None,
            limit: int = 100) -> dict[str, Any]:
    """What this worker has learned: per metric name, or one metric's series."""
    if metric:
        items = [d for d in detector.find(None, limit=100_000) if d["metric"] == metric][:limit]
        return {"metric": metric, "series": items, "count": len(items)}
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"series": 0, "warm": 0, "samples": 0, "open": 0})
    S = detector.bank.S
    warmup = detector.bank.warmup
    for sid, slot in detector.slot_of.items():
        name = detector._name[slot]
        n = int(S[slot, 0])
        m = per[name]
        m["series"] += 1
        m["warm"] += int(n >= warmup)
        m["samples"] += n
        m["open"] += int(detector.describe_open(slot))
    metrics = [{"metric": k, **v} for k, v in sorted(per.items())]
    return {"metrics": metrics, "series_count": len(detector), "forecasts": len(early.tracked),
            "threshold": detector.settings.threshold, "warmup_samples": warmup}


def _register_views(ctx: StreamContext, detector: MetricDetector, early: EarlyWarning,
                    runs: dict[str, Any]) -> None:
    from ..collectors.history import HistoryRun, auth_headers, learn_history, select_queries
    from ..sinks.prometheus import PrometheusClient
    from ..web.http import BadRequest, json_body

    api = ctx.stages.api
    if api is None:  # the API stage is not wired: nothing to authenticate with
        log.warning("no API stage: /api/baseline views not registered")
        return
    settings = ctx.settings
    tasks: set[asyncio.Task[Any]] = set()

    async def send(batch: MetricBatch) -> None:
        ctx.stats.events_out["metrics"] += 1
        await ctx.topics["metrics"].send(key=batch.key().encode(), value=encode(batch))

    async def run_learn(run: HistoryRun, queries: list[Any]) -> None:
        clients = ctx.stages.collector_clients
        try:
            import aiohttp

            session = await clients.session() if clients is not None else aiohttp.ClientSession()
            ps = settings.collectors.prometheus
            client = PrometheusClient(ps.url, session, timeout=ps.timeout,
                                      headers=auth_headers(settings))
            await learn_history(client, queries, run, time.time(), settings.collectors.shards,
                                send, settings.collectors.max_message_bytes)
            if clients is None:
                await session.close()
        except Exception as exc:  # noqa: BLE001 - reported in the run
            run.status, run.finished = "failed", time.time()
            run.errors.append(str(exc))
            log.exception("baseline learn run %s failed", run.run_id)
        log.info("baseline learn run %s %s: %d series, %d samples", run.run_id, run.status,
                 run.series, run.samples)

    @ctx.app.page("/api/baseline/learn")
    class BaselineLearn(View):
        """Start learning baselines from Prometheus history (runs in the background)."""

        @api.endpoint("baseline_learn", "operator")
        async def post(self, request: Request, principal: Any) -> Response:
            body = (await json_body(request, LearnRequest)
                    if (request.headers.get("Content-Length") or "0") != "0" else LearnRequest())
            if any(r.status == "running" for r in runs.values()):
                raise BadRequest("a baseline learn run is already running", status=409)
            try:
                queries = select_queries(settings, body.queries)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            if not queries:
                raise BadRequest("no PromQL queries configured (collectors.prometheus.queries)")
            run = HistoryRun(body.days, body.step, [q.name for q in queries])
            runs[run.run_id] = run
            task = asyncio.ensure_future(run_learn(run, queries))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            user = principal.user if principal is not None else "anonymous"
            from .audit_agent import emit_audit

            await emit_audit(ctx, user, "baseline.learn", run.run_id, run.as_dict())
            return self.json({**run.as_dict(), "url": settings.collectors.prometheus.url},
                             status=202)

    @ctx.app.page("/api/baseline/metrics")
    class BaselineMetrics(View):
        """Learned baselines on this worker (``?metric=`` for its series), forecasts, runs."""

        @api.endpoint("baseline_metrics", "viewer")
        async def get(self, request: Request, principal: Any) -> Response:
            q = request.query
            try:
                limit = min(int(q.get("limit", "100")), 1000)
            except ValueError:
                raise BadRequest("limit must be an integer") from None
            out = summary(detector, early, q.get("metric"), limit)
            out["runs"] = [r.as_dict() for r in list(runs.values())[-10:]]
            if q.get("forecasts"):
                out["forecast_series"] = early.describe()[:limit]
            return self.json(out)

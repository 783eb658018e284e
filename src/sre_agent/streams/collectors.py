"""Stage wiring: collectors (Prometheus/Mimir, Loki, CloudWatch) and the remote-write receiver.

Pollers run on the leader worker only: one Faust timer per collector ticks at
its shortest job interval and runs the jobs that are due (each job has its own
interval and exponential backoff, see :mod:`sre_agent.collectors.runner`).
Events are produced and their delivery awaited before a job's cursor moves,
so a Kafka outage delays data instead of losing it. ``/status`` shows each
collector under ``health["collector.<name>"]``.

The remote-write receiver (``POST /api/v1/write``,
:class:`~sre_agent.collectors.receiver.RemoteWriteReceiver`) runs on every
worker, so a Kubernetes Service can spread Prometheus's pushes over replicas.
Its samples and the pollers' go through one
:class:`~sre_agent.collectors.coalesce.Coalescer` per worker, which produces
one ``metrics`` message per shard per ``collectors.linger``. It answers 204
once the samples are acknowledged by Kafka, 4xx with a JSON error for a bad
payload (one dead letter per request on ``metrics.dlq``), and 503 with
``Retry-After`` when the ingest buffer is full or Kafka is unavailable, so
Prometheus retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import yaml
from faust.web import Request, Response, View
from pydantic import TypeAdapter, ValidationError

from ..collectors.coalesce import Coalescer, SeriesCache
from ..collectors.receiver import RemoteWriteReceiver
from ..collectors import (
    Backoff,
    CloudWatchJob,
    Collected,
    CollectorRunner,
    Job,
    LokiClient,
    LokiQueryJob,
    PromQueryJob,
)
from ..config import ConfigError, PromQuerySettings, Settings
from ..schemas import Event, MetricBatch, encode
from ..sinks.prometheus import PrometheusClient
from ..web.auth import Denied, Gate
from .context import StreamContext

__all__ = ["load_prom_queries", "register"]

log = logging.getLogger(__name__)


def load_prom_queries(settings: Settings) -> list[PromQuerySettings]:
    """The configured PromQL queries, or those of ``queries_file`` when set."""
    ps = settings.collectors.prometheus
    if ps.queries_file is None:
        return list(ps.queries)
    try:
        data = yaml.safe_load(ps.queries_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"invalid configuration: collectors.prometheus.queries_file: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("queries", data)
    try:
        return TypeAdapter(list[PromQuerySettings]).validate_python(data)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors(include_url=False)[:3])
        raise ConfigError(f"invalid configuration: {ps.queries_file}: {detail}") from None


async def produce(ctx: StreamContext, events: list[Event]) -> None:
    """Produce ``events`` and wait until Kafka acknowledged every one.

    ``metrics`` batches go through the worker's coalescer (one message per shard
    per linger, labels once per series); the other events are produced as they are.
    """
    futures = []
    coalescer: Coalescer | None = ctx.stages.metrics_coalescer
    cache: SeriesCache | None = ctx.stages.metrics_series_cache
    coalesced = []
    for ev in events:
        if coalescer is not None and cache is not None and isinstance(ev, MetricBatch):
            coalesced.append(coalescer.submit(
                [(cache.of(s["name"], s["labels"]), s["points"]) for s in ev.series],
                ev.source))
            continue
        key = ev.key()
        fut = await ctx.topics[ev.TOPIC].send(key=key.encode() if key is not None else None,
                                              value=encode(ev))
        futures.append(fut)
        ctx.stats.events_out[ev.TOPIC] += 1
    if futures or coalesced:
        await asyncio.gather(*futures, *coalesced)


def _coalescer(ctx: StreamContext) -> tuple[Coalescer, SeriesCache]:
    """The worker's one coalescer for ``metrics`` (and its series cache)."""
    cs = ctx.settings.collectors
    topic = ctx.topics["metrics"]

    async def send(key: bytes, value: bytes) -> None:
        fut = await topic.send(key=key, value=value)
        await fut
        ctx.stats.events_out["metrics"] += 1

    def route(shard: int) -> int | None:
        """The partition the producer sends key ``str(shard)`` to (its metadata)."""
        name = topic.get_topic_name()
        return ctx.app.producer.key_partition(name, str(shard).encode()).partition

    # the shards of one partition share messages (coalesce.py): 16x fewer at 64 / 4
    coalescer = Coalescer(send, cs.shards, linger=cs.linger, route=route,
                          max_series_per_message=cs.max_series_per_message,
                          min_series_per_message=cs.min_series_per_message,
                          max_linger=cs.max_linger,
                          max_message_bytes=cs.max_message_bytes,
                          max_buffered_samples=cs.max_buffered_samples,
                          label_refresh=cs.label_refresh)
    cache = SeriesCache(cs.shards)
    ctx.stages.metrics_coalescer, ctx.stages.metrics_series_cache = coalescer, cache
    return coalescer, cache


class CollectorClients:
    """Clients of the pollers, opened on first use inside the worker's loop, closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack: AsyncExitStack | None = None
        self._session: aiohttp.ClientSession | None = None
        self._cloudwatch: Any = None

    async def _ensure_stack(self) -> AsyncExitStack:
        if self._stack is None:
            self._stack = AsyncExitStack()
        return self._stack

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            stack = await self._ensure_stack()
            self._session = await stack.enter_async_context(aiohttp.ClientSession())
        return self._session

    async def cloudwatch(self) -> Any:
        if self._cloudwatch is None:
            from aiobotocore.session import get_session

            aws = self.settings.aws
            kw: dict[str, Any] = {"region_name": aws.region}
            if aws.endpoint_url:
                kw["endpoint_url"] = aws.endpoint_url
            if aws.access_key_id and aws.secret_access_key:
                kw["aws_access_key_id"] = aws.access_key_id.get_secret_value()
                kw["aws_secret_access_key"] = aws.secret_access_key.get_secret_value()
            stack = await self._ensure_stack()
            self._cloudwatch = await stack.enter_async_context(
                get_session().create_client("cloudwatch", **kw))
        return self._cloudwatch

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            self._session = self._cloudwatch = None
            await stack.aclose()


def _auth_headers(headers: dict[str, str], token: Any) -> dict[str, str]:
    out = dict(headers)
    if token is not None:
        out["Authorization"] = f"Bearer {token.get_secret_value()}"
    return out


def _builders(ctx: StreamContext, clients: CollectorClients) -> dict[str, tuple[float, Callable[[], Awaitable[list[Job]]]]]:
    """name -> (tick interval, coroutine building the jobs) of each enabled poller."""
    s = ctx.settings
    cs = s.collectors
    out: dict[str, tuple[float, Callable[[], Awaitable[list[Job]]]]] = {}
    if cs.prometheus.enabled:
        ps = cs.prometheus
        queries = load_prom_queries(s)

        async def prom_jobs() -> list[Job]:
            client = PrometheusClient(ps.url, await clients.session(), timeout=ps.timeout,
                                      headers=_auth_headers(ps.headers, ps.bearer_token))
            return [PromQueryJob(client, q, ps.interval, ps.max_catchup, cs.shards,
                                 cs.max_message_bytes) for q in queries]

        tick = min([q.interval or ps.interval for q in queries] or [ps.interval])
        out["prometheus"] = (tick, prom_jobs)
    if cs.loki.enabled:
        ls = cs.loki

        async def loki_jobs() -> list[Job]:
            client = LokiClient(ls.url, await clients.session(), timeout=ls.timeout,
                                headers=_auth_headers(ls.headers, ls.bearer_token))
            return [LokiQueryJob(client, q, ls.interval, ls.limit, ls.max_pages, ls.max_catchup,
                                 ls.delay) for q in ls.queries]

        out["loki"] = (min([q.interval or ls.interval for q in ls.queries] or [ls.interval]), loki_jobs)
    if cs.cloudwatch.enabled:
        cw = cs.cloudwatch

        async def cw_jobs() -> list[Job]:
            return [CloudWatchJob(await clients.cloudwatch(), cw, s.aws.region, cs.shards,
                                  cs.max_message_bytes)]

        out["cloudwatch"] = (cw.interval, cw_jobs)
    return out


def _register_poller(ctx: StreamContext, name: str, tick: float,
                     build: Callable[[], Awaitable[list[Job]]]) -> None:
    cs = ctx.settings.collectors
    key = f"collector.{name}"
    ctx.stats.health[key] = {"ok": True, "state": "starting", "interval": tick}
    holder: dict[str, CollectorRunner] = {}

    async def emit(got: Collected) -> None:
        await produce(ctx, got.events)
        for r in got.rejected:
            await ctx.dead_letter("metrics", r.payload, r.reason, stage=key)

    @ctx.app.timer(interval=tick, name=key)
    async def _collect() -> None:
        if not ctx.app.is_leader():
            ctx.stats.health[key] = {"ok": True, "state": "standby (runs on the leader)",
                                     "interval": tick}
            return
        runner = holder.get("runner")
        if runner is None:
            try:
                runner = CollectorRunner(name, await build(), emit,
                                         Backoff(cs.backoff_factor, cs.backoff_max))
            except Exception as exc:
                log.warning("collector %s cannot start: %s", name, exc)
                ctx.stats.health[key] = {"ok": False, "state": "not started", "interval": tick,
                                         "last_success": None, "last_error_at": time.time(),
                                         "last_error": f"{type(exc).__name__}: {exc}"[:500]}
                return
            holder["runner"] = runner
        await runner.tick(time.time(), clock=time.time)
        ctx.stats.health[key] = {**runner.health(), "state": "running", "interval": tick}


def _register_remote_write(ctx: StreamContext, coalescer: Coalescer, cache: SeriesCache) -> None:
    cs = ctx.settings.collectors
    rw = cs.remote_write
    key = "collector.remote_write"
    # the web layer's one gate, as for the other webhooks (the API stage registers first)
    api = ctx.stages.api
    gate = api.gate if api is not None and api.gate is not None else Gate(ctx.settings)

    async def dead_letter(payload: bytes, reason: str) -> None:
        await ctx.dead_letter("metrics", payload, reason, stage="remote-write")

    receiver = RemoteWriteReceiver(coalescer, cache, dead_letter,
                                   max_decompressed_bytes=rw.max_decompressed_bytes,
                                   max_series=rw.max_series_per_request,
                                   max_samples=rw.max_samples_per_request,
                                   ack_timeout=rw.ack_timeout)
    health = receiver.health
    ctx.stats.health[key] = health
    ctx.stages.remote_write_receiver = receiver

    @ctx.app.page("/api/v1/write")
    class RemoteWrite(View):
        """Prometheus remote-write 1.0 receiver: samples go to the ``metrics`` topic."""

        async def post(self, request: Request) -> Response:
            try:  # no token configured: 503, none or a wrong one: 401 (never anonymous)
                gate.webhook(request.headers, "remote-write")
            except Denied as exc:
                receiver.refused(exc.reason or exc.message)
                return self.json({"error": exc.message}, status=exc.status, headers=exc.headers)
            body = await request.read()
            status, headers, answer = await receiver.handle(
                body, request.headers.get("Content-Encoding"), request.headers.get("Content-Type"))
            health["coalescer"] = coalescer.health()
            if answer is None:
                return self.bytes(b"", status=status, headers=headers)
            return self.json(answer, status=status, headers=headers)


def register(ctx: StreamContext) -> None:
    """Declare the pollers' timers and the remote-write view on ctx.app."""
    cs = ctx.settings.collectors
    coalescer, cache = _coalescer(ctx)
    if cs.remote_write.enabled:
        _register_remote_write(ctx, coalescer, cache)
    clients = CollectorClients(ctx.settings)
    ctx.stages.collector_clients = clients
    for name, (tick, build) in _builders(ctx, clients).items():
        _register_poller(ctx, name, tick, build)

    @ctx.app.on_before_shutdown.connect
    async def _close_clients(app: Any, **kw: Any) -> None:
        await coalescer.close()  # what is held goes out before the producer stops
        await clients.close()

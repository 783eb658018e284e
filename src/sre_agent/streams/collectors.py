"""Stage wiring: collectors (Prometheus/Mimir, Loki, CloudWatch) and the remote-write receiver.

Pollers run on the leader worker only: one Faust timer per collector ticks at
its shortest job interval and runs the jobs that are due (each job has its own
interval and exponential backoff, see :mod:`sre_agent.collectors.runner`).
Events are produced and their delivery awaited before a job's cursor moves,
so a Kafka outage delays data instead of losing it. ``/status`` shows each
collector under ``health["collector.<name>"]``.

The remote-write receiver (``POST /api/v1/write``) runs on every worker, so a
Kubernetes Service can spread Prometheus's pushes over replicas. It answers
204 once the samples are acknowledged by Kafka, 4xx with a JSON error for a bad
payload (whose bytes also go to ``metrics.dlq``), and 503 when Kafka is
unavailable so Prometheus retries.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import yaml
from faust.web import Request, Response, View
from pydantic import TypeAdapter, ValidationError

from ..collectors import (
    Backoff,
    CloudWatchJob,
    Collected,
    CollectorRunner,
    Job,
    LokiClient,
    LokiQueryJob,
    PromQueryJob,
    RemoteWriteError,
    decode_write_request,
    to_batches,
)
from ..config import ConfigError, PromQuerySettings, Settings
from ..schemas import Event, encode
from ..sinks.prometheus import PrometheusClient
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
    """Produce ``events`` and wait until Kafka acknowledged every one."""
    futures = []
    for ev in events:
        key = ev.key()
        fut = await ctx.topics[ev.TOPIC].send(key=key.encode() if key is not None else None,
                                              value=encode(ev))
        futures.append(fut)
        ctx.stats.events_out[ev.TOPIC] += 1
    if futures:
        await asyncio.gather(*futures)


class _Clients:
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


def _builders(ctx: StreamContext, clients: _Clients) -> dict[str, tuple[float, Callable[[], Awaitable[list[Job]]]]]:
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


def _register_remote_write(ctx: StreamContext) -> None:
    cs = ctx.settings.collectors
    token = ctx.settings.api.webhook_token
    key = "collector.remote_write"
    health: dict[str, Any] = {"ok": True, "requests": 0, "samples": 0, "dropped_samples": 0,
                              "rejected_requests": 0, "last_success": None, "last_error": None,
                              "last_error_at": None}
    ctx.stats.health[key] = health

    def refused(error: str) -> None:
        health["rejected_requests"] += 1
        health["last_error"], health["last_error_at"] = error[:500], time.time()

    @ctx.app.page("/api/v1/write")
    class RemoteWrite(View):
        """Prometheus remote-write 1.0 receiver: samples go to the ``metrics`` topic."""

        async def post(self, request: Request) -> Response:
            if token is None:  # like the webhooks: no anonymous writes into the pipeline
                refused("disabled: no webhook token")
                return self.json({"error": "remote write is disabled: set "
                                           "SRE_AGENT_API__WEBHOOK_TOKEN and send it as "
                                           "Authorization: Bearer <token>"}, status=503)
            given = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
                refused("unauthorized")
                return self.json({"error": "unauthorized: send Authorization: Bearer "
                                           "<webhook token>"}, status=401)
            body = await request.read()
            health["requests"] += 1
            try:
                result = decode_write_request(
                    body, request.headers.get("Content-Encoding"),
                    request.headers.get("Content-Type"),
                    cs.remote_write.max_decompressed_bytes)
            except RemoteWriteError as exc:
                refused(str(exc))
                if exc.status in (400, 415):
                    await ctx.dead_letter("metrics", body, f"remote-write: {exc}",
                                          stage="remote-write")
                return self.json({"error": str(exc)}, status=exc.status)
            norm = to_batches(result.series, cs.shards, "remote-write", cs.max_message_bytes)
            try:
                await produce(ctx, list(norm.batches))
                for r in [*result.rejected, *norm.rejected]:
                    await ctx.dead_letter("metrics", r.payload, r.reason, stage="remote-write")
            except Exception as exc:  # Kafka unavailable: let the sender retry
                health["ok"] = False
                health["last_error"], health["last_error_at"] = f"produce failed: {exc}"[:500], time.time()
                log.warning("remote-write: produce failed: %s", exc)
                return self.json({"error": f"could not store samples: {exc}"}, status=503)
            health.update(ok=True, last_success=time.time())
            health["samples"] += norm.samples
            health["dropped_samples"] += result.dropped_samples
            return self.bytes(b"", status=204)


def register(ctx: StreamContext) -> None:
    """Declare the pollers' timers and the remote-write view on ctx.app."""
    cs = ctx.settings.collectors
    if cs.remote_write.enabled:
        _register_remote_write(ctx)
    clients = _Clients(ctx.settings)
    ctx.state["collector_clients"] = clients
    for name, (tick, build) in _builders(ctx, clients).items():
        _register_poller(ctx, name, tick, build)

    @ctx.app.on_before_shutdown.connect
    async def _close_clients(app: Any, **kw: Any) -> None:
        await clients.close()

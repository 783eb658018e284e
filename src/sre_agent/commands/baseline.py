"""``sre-agent baseline learn``: bootstrap baselines from 7-30 days of Prometheus history.

The configured PromQL queries (``collectors.prometheus.queries``) are fetched
with ``query_range`` over the last ``--days`` in chunks of a few hours, renamed
exactly as the live poller names them, and produced to ``metrics`` as batches
whose ``source`` is ``history:<run id>``. The worker owning each series then
*replaces* that series' model with one learned from the history (same code as
the stream, nothing emitted), so the agent is useful on day one. The same run
is started by ``POST /api/baseline/learn`` on a worker.

Usage::

    sre-agent baseline learn [--days 7] [--step 60] [--query NAME ...] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..cli import SettingsFactory, command
from ..config import PromQuerySettings, Settings
from ..schemas import MetricBatch, encode

__all__ = ["HistoryRun", "learn_history"]

log = logging.getLogger(__name__)

#: hours of history per range query: keeps messages to many series x a few hundred points
CHUNK_HOURS = 6.0


class HistoryRun:
    """Progress of one history-learning run (shown by ``GET /api/baseline/metrics``)."""

    def __init__(self, days: float, step: float, queries: Sequence[str]) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.days, self.step, self.queries = days, step, list(queries)
        self.status = "running"
        self.started = time.time()
        self.finished: float | None = None
        self.query = ""
        self.series = 0
        self.samples = 0
        self.messages = 0
        self.errors: list[str] = []
        self.empty: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "days": self.days,
                "step": self.step, "queries": self.queries, "current_query": self.query,
                "series": self.series, "samples": self.samples, "messages": self.messages,
                "errors": self.errors[-20:], "empty_queries": self.empty,
                "started": self.started, "finished": self.finished}


async def learn_history(client: Any, queries: Sequence[PromQuerySettings], run: HistoryRun,
                        end: float, shards: int,
                        send: Callable[[MetricBatch], Awaitable[None]],
                        max_message_bytes: int = 512 * 1024) -> HistoryRun:
    """Fetch ``run.days`` of every query up to ``end`` and ``send`` it as history batches.

    A failing query is recorded in ``run.errors`` and the next one proceeds.
    """
    from ..collectors.normalize import to_batches
    from ..collectors.prometheus import rename_series

    step = run.step
    end = math.floor(end / step) * step
    start = end - run.days * 86400.0
    chunk = max(step, math.floor(CHUNK_HOURS * 3600.0 / step) * step)
    source = f"history:{run.run_id}"
    for q in queries:
        run.query = q.name
        seen: set[str] = set()
        a = start
        try:
            while a <= end:
                b = min(end, a + chunk - step)
                series = await client.query_range(q.expr, a, b, step)
                norm = to_batches(rename_series(list(series), q), shards, source,
                                  max_message_bytes)
                for batch in norm.batches:
                    await send(batch)
                    run.messages += 1
                    run.samples += batch.sample_count()
                    for s in batch.series:
                        seen.add(f"{s['name']}{sorted(s['labels'].items())}")
                a = b + step
        except Exception as exc:  # noqa: BLE001 - recorded; the other queries go on
            run.errors.append(f"{q.name}: {exc}")
            log.warning("history of %s failed: %s", q.name, exc)
        if not seen:
            run.empty.append(q.name)
        run.series += len(seen)
    run.query = ""
    run.status = "failed" if run.errors and not run.samples else "done"
    run.finished = time.time()
    return run


def select_queries(settings: Settings, names: Sequence[str] | None) -> list[PromQuerySettings]:
    from ..streams.collectors import load_prom_queries

    queries = load_prom_queries(settings)
    if names:
        unknown = sorted(set(names) - {q.name for q in queries})
        if unknown:
            raise ValueError(f"unknown query name(s): {', '.join(unknown)}; configured: "
                             + ", ".join(q.name for q in queries))
        queries = [q for q in queries if q.name in set(names)]
    return queries


def auth_headers(settings: Settings) -> dict[str, str]:
    ps = settings.collectors.prometheus
    out = dict(ps.headers)
    if ps.bearer_token is not None:
        out["Authorization"] = f"Bearer {ps.bearer_token.get_secret_value()}"
    return out


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["learn"], help="learn: bootstrap from Prometheus history")
    p.add_argument("--days", type=float, default=7.0, help="days of history, 1-30 (default 7)")
    p.add_argument("--step", type=float, default=60.0, help="seconds between points (default 60)")
    p.add_argument("--query", action="append", default=[],
                   help="only this configured query name (repeatable)")
    p.add_argument("--url", default=None, help="Prometheus URL (default collectors.prometheus.url)")


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp
    from aiokafka import AIOKafkaProducer

    from ..sinks.prometheus import PrometheusClient
    from ..streams.admin import bootstrap_servers

    queries = select_queries(settings, args.query)
    url = args.url or settings.collectors.prometheus.url
    run = HistoryRun(args.days, args.step, [q.name for q in queries])
    topic = settings.topic("metrics")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings.kafka.broker),
                                linger_ms=20, max_request_size=4 * 1024 * 1024)
    await producer.start()
    last = [0.0]

    async def send(batch: MetricBatch) -> None:
        await producer.send(topic, value=encode(batch), key=batch.key().encode())
        now = time.monotonic()
        if now - last[0] > 2.0:
            last[0] = now
            print(f"  {run.query}: {run.series} series, {run.samples} samples sent", flush=True)

    try:
        async with aiohttp.ClientSession() as session:
            client = PrometheusClient(url, session, timeout=settings.collectors.prometheus.timeout,
                                      headers=auth_headers(settings))
            print(f"run {run.run_id}: {len(queries)} queries, {args.days:g} days at "
                  f"{args.step:g}s from {url}", flush=True)
            await learn_history(client, queries, run, time.time(), settings.collectors.shards,
                                send, settings.collectors.max_message_bytes)
        await producer.flush()
    finally:
        await producer.stop()
    for e in run.errors:
        print(f"error: {e}")
    for q in run.empty:
        print(f"warning: no data for {q} (needs history; see collectors.prometheus.queries)")
    print(f"run {run.run_id} {run.status}: {run.series} series, {run.samples} samples in "
          f"{run.messages} messages; workers learn them from '{topic}'")
    return 0 if run.status == "done" else 1


@command("baseline", "learn baselines from 7-30 days of Prometheus history (baseline learn)", _args)
def _baseline(args: argparse.Namespace, settings: SettingsFactory) -> int:
    if not 1 <= args.days <= 30:
        print("error: --days must be between 1 and 30")
        return 2
    if args.step <= 0:
        print("error: --step must be > 0")
        return 2
    try:
        return asyncio.run(_run(settings(), args))
    except ValueError as exc:
        print(f"error: {exc}")
        return 2

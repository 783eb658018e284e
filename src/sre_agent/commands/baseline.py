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
import time

from ..cli import SettingsFactory, UsageError, command, error, warn
from ..collectors.history import HistoryRun, auth_headers, learn_history, select_queries
from ..config import Settings
from ..schemas import MetricBatch, encode

__all__: list[str] = []

log = logging.getLogger(__name__)


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
    from ..sinks.kafka import client_kwargs

    queries = select_queries(settings, args.query)
    url = args.url or settings.collectors.prometheus.url
    run = HistoryRun(args.days, args.step, [q.name for q in queries])
    topic = settings.topic("metrics")
    producer = AIOKafkaProducer(**client_kwargs(settings.kafka),
                                linger_ms=20, max_request_size=4 * 1024 * 1024)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # a failed start leaves its client open
        raise
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
        error(str(e))
    for q in run.empty:
        warn(f"no data for {q} (needs history; see collectors.prometheus.queries)")
    print(f"run {run.run_id} {run.status}: {run.series} series, {run.samples} samples in "
          f"{run.messages} messages; workers learn them from '{topic}'")
    return 0 if run.status == "done" else 1


@command("baseline", "learn baselines from 7-30 days of Prometheus history (baseline learn)", _args)
def _baseline(args: argparse.Namespace, settings: SettingsFactory) -> int:
    if not 1 <= args.days <= 30:
        raise UsageError("--days must be between 1 and 30")
    if args.step <= 0:
        raise UsageError("--step must be > 0")
    s = settings()
    try:
        return asyncio.run(_run(s, args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None

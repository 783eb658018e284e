"""Learning baselines from Prometheus history: the run, its queries and their fetch.

Used by ``sre-agent baseline learn`` (:mod:`sre_agent.commands.baseline`) and by
the worker's ``POST /api/baseline/learn``. It lives here, not beside the CLI
command, so the worker does not import the CLI (that was an import cycle:
streams -> commands.baseline -> cli -> streams).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..config import PromQuerySettings, Settings
from ..schemas import MetricBatch

__all__ = ["CHUNK_HOURS", "HistoryRun", "auth_headers", "learn_history", "select_queries"]

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

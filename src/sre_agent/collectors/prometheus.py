"""Prometheus/Mimir poller: one job per configured PromQL query.

Each poll evaluates the query on a grid aligned to the query's ``step``
(timestamps ``k * step``), so consecutive polls never repeat or skip a point:
the first poll is an instant query at the last grid time; later polls are a
range query from the point after the last one committed up to now, which also
fills the gap after an outage (at most ``max_catchup`` seconds back).

Every result series is renamed to the query's ``name`` (``rate(...)`` results
have no ``__name__``); an original ``__name__`` that differs is kept in a
``metric`` label. Series become ``MetricBatch`` events keyed by series shard.

Examples
--------
>>> window(now=125.0, step=30.0, last_end=None, max_catchup=3600)
(120.0, 120.0)
>>> window(now=200.0, step=30.0, last_end=120.0, max_catchup=3600)
(150.0, 180.0)
>>> window(now=130.0, step=30.0, last_end=120.0, max_catchup=3600) is None
True
>>> window(now=10_000.0, step=30.0, last_end=120.0, max_catchup=300)
(9690.0, 9990.0)
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..config import PromQuerySettings
from ..sinks.prometheus import PrometheusClient
from .normalize import to_batches
from .runner import Collected

__all__ = ["PromQueryJob", "rename_series", "window"]

log = logging.getLogger(__name__)


def window(now: float, step: float, last_end: float | None,
           max_catchup: float) -> tuple[float, float] | None:
    """Grid-aligned ``(start, end)`` to evaluate next, or None when nothing is new."""
    end = math.floor(now / step) * step
    if last_end is None:
        return end, end
    start = last_end + step
    oldest = end - math.floor(max_catchup / step) * step
    start = max(start, oldest)
    if start > end:
        return None
    return start, end


def rename_series(series: list[dict[str, Any]], query: PromQuerySettings) -> list[dict[str, Any]]:
    """Name each series after the query; keep a differing ``__name__`` as ``metric``.

    >>> q = PromQuerySettings(name="error_ratio", expr="rate(x[5m])", labels={"team": "pay"})
    >>> rename_series([{"name": "rate(x[5m])", "labels": {"service": "api"},
    ...                 "points": [(1.0, 0.1)]}], q)
    [{'name': 'error_ratio', 'labels': {'service': 'api', 'team': 'pay'}, 'points': [(1.0, 0.1)]}]
    """
    out = []
    for s in series:
        labels = dict(s["labels"])
        if s["name"] not in (query.expr, query.name):
            labels.setdefault("metric", s["name"])
        for k, v in query.labels.items():
            labels.setdefault(k, v)
        out.append({"name": query.name, "labels": labels, "points": s["points"]})
    return out


class PromQueryJob:
    """Poll one PromQL query.

    Parameters
    ----------
    client
        The shared :class:`~sre_agent.sinks.prometheus.PrometheusClient`.
    query
        The query settings (name, expr, interval, step, labels).
    default_interval
        Used when the query sets no interval.
    max_catchup
        Seconds of history filled after an outage.
    shards, max_message_bytes
        Passed to :func:`~sre_agent.collectors.normalize.to_batches`.
    """

    def __init__(self, client: PrometheusClient, query: PromQuerySettings, default_interval: float,
                 max_catchup: float, shards: int, max_message_bytes: int = 512 * 1024) -> None:
        self.client = client
        self.query = query
        self.name = query.name
        self.interval = query.interval or default_interval
        self.step = query.step or self.interval
        self.max_catchup = max_catchup
        self.shards = shards
        self.max_message_bytes = max_message_bytes
        self.last_end: float | None = None

    async def collect(self, now: float) -> Collected:
        span = window(now, self.step, self.last_end, self.max_catchup)
        if span is None:
            return Collected(cursor=self.last_end)
        start, end = span
        if start == end:
            series = await self.client.query(self.query.expr, time=end)
        else:
            series = await self.client.query_range(self.query.expr, start, end, self.step)
        norm = to_batches(rename_series(list(series), self.query), self.shards, "prometheus",
                          self.max_message_bytes)
        log.debug("query %s [%s, %s]: %d series, %d samples", self.name, start, end,
                  len(series), norm.samples)
        return Collected(events=list(norm.batches), rejected=norm.rejected, cursor=end)

    def commit(self, cursor: Any) -> None:
        self.last_end = cursor

"""CloudWatch collector: ``GetMetricData`` for EC2, RDS, ELB and ElastiCache.

One job reads every configured metric. The dimension sets of a metric without
fixed ``dimensions`` (every instance, DB, load balancer, cache node) are
discovered with ``ListMetrics`` and reused for ``discovery_ttl`` seconds. Each
poll reads whole periods ``[start, end)`` with ``end`` aligned to ``period``
and at least ``delay`` seconds old (CloudWatch publishes late); the next poll
starts where the committed one ended.

The client is an aiobotocore ``cloudwatch`` client owned by the caller.
Series are named ``aws_<service>_<metric>_<stat>`` in snake case, labelled with
their dimensions plus ``namespace``, ``region`` and ``service`` (the
resource's id, so anomalies name the instance/DB/cache that misbehaves).

Examples
--------
>>> metric_name("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum")
'aws_applicationelb_http_code_target_5xx_count_sum'
>>> metric_name("AWS/RDS", "CPUUtilization", "Average")
'aws_rds_cpu_utilization_average'
>>> resource_of({"DBInstanceIdentifier": "orders-db"})
'orders-db'
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

from ..config import CloudWatchCollectorSettings, CloudWatchMetricSettings
from .normalize import to_batches
from .runner import Collected

__all__ = ["CloudWatchJob", "metric_name", "resource_of"]

log = logging.getLogger(__name__)

#: GetMetricData accepts at most 500 queries per call
MAX_QUERIES = 500
#: dimension that names the resource, per namespace family, in order of preference
_RESOURCE_DIMS = ("InstanceId", "DBInstanceIdentifier", "DBClusterIdentifier", "CacheClusterId",
                  "LoadBalancer", "LoadBalancerName", "TargetGroup", "AutoScalingGroupName")

Target = tuple[CloudWatchMetricSettings, tuple[tuple[str, str], ...]]


def _snake(s: str) -> str:
    s = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[0-9])(?=[A-Z][a-z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", s)
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def metric_name(namespace: str, metric: str, stat: str) -> str:
    """``aws_<service>_<metric>_<stat>`` in snake case."""
    service = namespace.split("/", 1)[-1].lower()
    return f"aws_{_snake(service)}_{_snake(metric)}_{_snake(stat)}"


def resource_of(dims: dict[str, str]) -> str | None:
    """The dimension value naming the resource, if any."""
    for d in _RESOURCE_DIMS:
        if dims.get(d):
            return dims[d]
    return None


class CloudWatchJob:
    """Read the configured CloudWatch metrics with ``GetMetricData``."""

    name = "metrics"

    def __init__(self, client: Any, settings: CloudWatchCollectorSettings, region: str,
                 shards: int, max_message_bytes: int = 512 * 1024) -> None:
        self.client = client
        self.settings = settings
        self.region = region
        self.interval = settings.interval
        self.shards = shards
        self.max_message_bytes = max_message_bytes
        self.metrics = [m for m in settings.metrics if m.namespace in settings.namespaces]
        self.last_end: float | None = None
        self._targets: list[Target] = []
        self._discovered_at: float | None = None

    async def _discover(self, now: float) -> list[Target]:
        ttl = self.settings.discovery_ttl
        if self._discovered_at is not None and now - self._discovered_at < ttl:
            return self._targets
        targets: list[Target] = []
        for m in self.metrics:
            if m.dimensions is not None:
                targets.append((m, tuple(sorted(m.dimensions.items()))))
                continue
            paginator = self.client.get_paginator("list_metrics")
            seen: set[tuple[tuple[str, str], ...]] = set()
            # only streams with data in the last 3 h (not every instance of the past 2 weeks)
            pages = paginator.paginate(Namespace=m.namespace, MetricName=m.metric,
                                       RecentlyActive="PT3H")
            async for page in pages:
                for found in page.get("Metrics", []):
                    dims = tuple(sorted((d["Name"], d["Value"]) for d in found.get("Dimensions", [])))
                    if dims not in seen:
                        seen.add(dims)
                        targets.append((m, dims))
        self._targets, self._discovered_at = targets, now
        log.info("cloudwatch: %d metric streams discovered for %d metrics",
                 len(targets), len(self.metrics))
        return targets

    def _span(self, now: float) -> tuple[float, float] | None:
        p = self.settings.period
        end = math.floor((now - self.settings.delay) / p) * p
        start = self.last_end if self.last_end is not None else end - p
        start = max(start, end - math.floor(self.settings.max_catchup / p) * p)
        return (start, end) if start < end else None

    async def collect(self, now: float) -> Collected:
        span = self._span(now)
        if span is None:
            return Collected(cursor=self.last_end)
        start, end = span
        targets = await self._discover(now)
        series: list[dict[str, Any]] = []
        for i in range(0, len(targets), MAX_QUERIES):
            series.extend(await self._read(targets[i:i + MAX_QUERIES], start, end))
        norm = to_batches(series, self.shards, "cloudwatch", self.max_message_bytes)
        return Collected(events=list(norm.batches), rejected=norm.rejected, cursor=end)

    async def _read(self, chunk: list[Target], start: float, end: float) -> list[dict[str, Any]]:
        queries = [{
            "Id": f"m{i}",
            "MetricStat": {
                "Metric": {"Namespace": m.namespace, "MetricName": m.metric,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in dims]},
                "Period": self.settings.period,
                "Stat": m.stat,
            },
            "ReturnData": True,
        } for i, (m, dims) in enumerate(chunk)]
        points: dict[str, list[tuple[float, float]]] = {}
        paginator = self.client.get_paginator("get_metric_data")
        async for page in paginator.paginate(
            MetricDataQueries=queries, ScanBy="TimestampAscending",
            StartTime=datetime.fromtimestamp(start, UTC), EndTime=datetime.fromtimestamp(end, UTC),
        ):
            for r in page.get("MetricDataResults", []):
                pts = points.setdefault(r["Id"], [])
                for ts, v in zip(r.get("Timestamps", []), r.get("Values", []), strict=False):
                    if math.isfinite(v):
                        pts.append((ts.timestamp(), float(v)))
        out = []
        for i, (m, dims) in enumerate(chunk):
            pts = sorted(points.get(f"m{i}", []))
            if not pts:
                continue
            labels = {**dict(dims), "namespace": m.namespace, "region": self.region}
            resource = resource_of(dict(dims))
            if resource:
                labels.setdefault("service", resource)
            out.append({"name": metric_name(m.namespace, m.metric, m.stat),
                        "labels": labels, "points": pts})
        return out

    def commit(self, cursor: Any) -> None:
        self.last_end = cursor

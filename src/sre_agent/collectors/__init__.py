"""Collectors: outside telemetry in, normalized topic events out.

Pull: a Prometheus/Mimir poller (PromQL, one job per query), a Loki poller
(LogQL ``query_range`` for error lines) and a CloudWatch reader
(``GetMetricData`` for EC2, RDS, ELB, ElastiCache). Push: a Prometheus
remote-write 1.0 decoder (snappy + protobuf). Every metric path ends in
:func:`to_batches`, which validates series and groups them into
``MetricBatch`` events keyed by series shard; logs become ``LogRecord``.

Jobs collect without side effects and return a :class:`Collected`; the
:class:`CollectorRunner` schedules them (own interval, exponential backoff,
health). The Faust wiring lives in :mod:`sre_agent.streams.collectors`.
"""

from __future__ import annotations

from .cloudwatch import CloudWatchJob, metric_name
from .loki import LokiClient, LokiError, LokiQueryJob, parse_streams, to_record
from .normalize import Normalized, Rejected, to_batches
from .prometheus import PromQueryJob, rename_series, window
from .remote_write import RemoteWriteError, WriteResult, decode_write_request
from .runner import Backoff, Collected, CollectorRunner, Job, JobState

__all__ = [
    "Backoff",
    "CloudWatchJob",
    "Collected",
    "CollectorRunner",
    "Job",
    "JobState",
    "LokiClient",
    "LokiError",
    "LokiQueryJob",
    "Normalized",
    "PromQueryJob",
    "Rejected",
    "RemoteWriteError",
    "WriteResult",
    "decode_write_request",
    "metric_name",
    "parse_streams",
    "rename_series",
    "to_batches",
    "to_record",
    "window",
]

"""Perception events: metrics, logs, Kubernetes events, deploys, alerts."""

from __future__ import annotations

import hashlib
import zlib
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints
from typing_extensions import NotRequired, TypedDict

from .base import Event, UtcDatetime

__all__ = [
    "Alert",
    "DeployEvent",
    "K8sEvent",
    "LogRecord",
    "MetricBatch",
    "MetricSeries",
    "SeriesRef",
    "series_id",
    "series_key",
    "shard_of",
]

MAX_LABELS = 32


def series_id(name: str, labels: dict[str, str]) -> str:
    """Canonical series id: ``name{k="v",...}`` with sorted labels.

    >>> series_id("cpu", {"pod": "a", "service": "api"})
    'cpu{pod="a",service="api"}'
    """
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def series_key(sid: str) -> str:
    """Compact key of a canonical series id: 16 hex chars (64 bits of BLAKE2b).

    A ``metrics`` message names a series by this key (``refs``) once a message on
    the same shard carried its labels; a consumer recomputes it from those labels,
    so a key can never be bound to labels other than its own.

    >>> series_key('cpu{pod="a"}')
    '905561b771158356'
    """
    return hashlib.blake2b(sid.encode(), digest_size=8).hexdigest()


def shard_of(sid: str, shards: int) -> int:
    """Stable shard of a series id (crc32), used as the ``metrics`` key.

    >>> shard_of('cpu{pod="a"}', 64) == shard_of('cpu{pod="a"}', 64)
    True
    """
    return zlib.crc32(sid.encode()) % shards


Label = Annotated[str, StringConstraints(max_length=512)]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
#: one point: (Unix seconds UTC, value); NaN/Inf rejected
Point = tuple[Annotated[float, Field(ge=0, lt=1e11)], Annotated[float, Field(allow_inf_nan=False)]]


SeriesKey = Annotated[str, StringConstraints(min_length=16, max_length=16,
                                              pattern=r"^[0-9a-f]{16}$")]
Points = Annotated[list[Point], Field(min_length=1, max_length=10_000)]


class MetricSeries(TypedDict):
    """Points of one series, shaped like a remote-write ``TimeSeries``.

    A TypedDict (validated in pydantic-core, no model instance per series) so
    decoding costs well under a microsecond per sample. ``id`` (schema v2) is
    the series' :func:`series_key`: it defines the key that later messages of
    the same shard use in ``refs``.
    """

    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    labels: Annotated[dict[LabelName, Label], Field(max_length=MAX_LABELS)]
    points: Points
    id: NotRequired[SeriesKey]


class SeriesRef(TypedDict):
    """Points of a series named by its key (schema v2): its labels travelled before."""

    id: SeriesKey
    points: Points


class MetricBatch(Event):
    """Many series of one shard (the ``metrics`` key), each with its points.

    A producer may put the series of several shards in one message when their
    keys go to the same partition (the receiver's coalescer does): ``shard`` is
    then the lowest of them, and the message is keyed by it. Either way every
    message of a series goes to the partition of its own shard.

    Schema v2 adds ``refs``: series named only by their :func:`series_key`,
    whose name and labels an earlier message of the same shard carried in
    ``series`` (with ``id``). Producers re-send the labels periodically and on
    every new session; a consumer resolves refs with
    :class:`~sre_agent.schemas.series_refs.SeriesDirectory`. v1 messages (no
    ``refs``, no ``id``) are v2 messages too.

    >>> b = MetricBatch(series=[{"name": "cpu", "labels": {"service": "api"},
    ...                          "points": [(1.7e9, 0.5)]}],
    ...                 refs=[{"id": "00000000000000ff", "points": [(1.7e9, 1.0), (1.8e9, 2.0)]}])
    >>> b.sample_count(), b.schema_version
    (3, 2)
    """

    #: strings are not looked up in pydantic's string cache, keys excepted: a message's
    #: strings are mostly series keys, each once per message, so the cache only churned
    #: (decode 0.71 -> 0.61 us per ref, median of 11, 1,300-ref messages)
    model_config = ConfigDict(cache_strings="keys")

    TOPIC: ClassVar[str] = "metrics"
    schema_version: int = 2
    source: str = Field(default="unknown", max_length=256)
    shard: int = Field(default=0, ge=0, le=2**31 - 1)
    series: Annotated[list[MetricSeries], Field(max_length=100_000)]
    refs: Annotated[list[SeriesRef], Field(default_factory=list, max_length=100_000,
                                           description="series by key (schema v2)")]

    def key(self) -> str:
        return str(self.shard)

    def sample_count(self) -> int:
        return (sum(len(s["points"]) for s in self.series)
                + sum(len(r["points"]) for r in self.refs))


class LogRecord(Event):
    TOPIC: ClassVar[str] = "logs"
    service: str = Field(min_length=1, max_length=256)
    level: str = "info"
    message: str = Field(max_length=16384)
    labels: dict[str, str] = Field(default_factory=dict)

    def key(self) -> str:
        return self.service


class K8sEvent(Event):
    TOPIC: ClassVar[str] = "k8s-events"
    namespace: str = "default"
    kind: str = "Pod"
    name: str = Field(min_length=1)
    service: str | None = None
    reason: str = Field(min_length=1, description="e.g. CrashLoopBackOff, OOMKilled, FailedScheduling")
    type: Literal["Normal", "Warning"] = "Warning"
    message: str = ""
    count: int = Field(default=1, ge=1)

    def key(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


class DeployEvent(Event):
    """A deploy or config change, shaped after ArgoCD notifications."""

    TOPIC: ClassVar[str] = "deploy-events"
    app: str = Field(min_length=1, description="ArgoCD application name")
    service: str = Field(min_length=1)
    namespace: str = "default"
    revision: str = ""
    previous_revision: str | None = None
    sync_status: str = "Synced"
    health_status: str | None = None
    images: list[str] = Field(default_factory=list)
    author: str | None = None
    change_type: Literal["deploy", "config", "rollback", "scale"] = "deploy"
    message: str = ""

    def key(self) -> str:
        return self.service


class Alert(Event):
    """An alert from Alertmanager (v4 webhook) or n9e."""

    TOPIC: ClassVar[str] = "alerts"
    fingerprint: str = Field(min_length=1)
    name: str = Field(min_length=1)
    status: Literal["firing", "resolved"] = "firing"
    severity: str = "warning"
    service: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    source: Literal["alertmanager", "n9e", "other"] = "alertmanager"
    #: link to the alert's source expression (Alertmanager's ``generatorURL``; additive)
    generator_url: str | None = Field(default=None, max_length=4096)

    def key(self) -> str:
        return self.fingerprint

"""Series -> ``MetricBatch`` events: validated, grouped by shard, sized for Kafka.

Every collector (pollers and the remote-write receiver) hands its series to
:func:`to_batches`. A series that breaks the ``metrics`` schema (too many
labels, an over-long label value, no points...) is not dropped silently: it
comes back in ``rejected`` with the reason, for the topic's DLQ. Series with
more points than one message may carry are split.

Examples
--------
>>> series = [{"name": "cpu", "labels": {"pod": "a"}, "points": [(1.7e9, 0.5)]},
...           {"name": "cpu", "labels": {"pod": "b"}, "points": [(1.7e9, 0.7)]},
...           {"name": "", "labels": {}, "points": [(1.7e9, 1.0)]}]
>>> out = to_batches(series, shards=4, source="test")
>>> sum(b.sample_count() for b in out.batches), len(out.rejected)
(2, 1)
>>> out.rejected[0].reason
'name: String should have at least 1 character'
>>> all(b.key() == str(b.shard) for b in out.batches)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from ..schemas import MetricBatch, MetricSeries, series_id, shard_of

__all__ = ["Normalized", "Rejected", "to_batches"]

_SERIES = TypeAdapter(MetricSeries)
#: the schema's limit of points per series in one message
MAX_POINTS_PER_SERIES = 10_000


@dataclass(frozen=True, slots=True)
class Rejected:
    """A series the ``metrics`` schema refuses, as JSON bytes for the DLQ."""

    payload: bytes
    reason: str


@dataclass(slots=True)
class Normalized:
    batches: list[MetricBatch] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(b.sample_count() for b in self.batches)


def _reason(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)[:3]
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in errs)


def _size(s: MetricSeries) -> int:
    """Rough JSON size of a series (bytes), to keep messages under the cap."""
    labels = sum(len(k) + len(v) + 6 for k, v in s["labels"].items())
    return len(s["name"]) + labels + 40 + 44 * len(s["points"])


def _split_points(s: dict[str, Any]) -> Iterable[dict[str, Any]]:
    pts = s.get("points")
    if isinstance(pts, list) and len(pts) > MAX_POINTS_PER_SERIES:
        for i in range(0, len(pts), MAX_POINTS_PER_SERIES):
            yield {**s, "points": pts[i:i + MAX_POINTS_PER_SERIES]}
    else:
        yield s


def to_batches(
    series: Iterable[dict[str, Any]],
    shards: int,
    source: str,
    max_message_bytes: int = 512 * 1024,
) -> Normalized:
    """Validate ``series`` and group them into one or more batches per shard.

    Parameters
    ----------
    series
        Dicts shaped like :class:`~sre_agent.schemas.MetricSeries`.
    shards
        Number of series shards; a series goes to ``shard_of(series_id, shards)``.
    source
        ``MetricBatch.source`` (``prometheus``, ``remote-write``, ``cloudwatch``...).
    max_message_bytes
        Estimated JSON size at which a shard's batch is cut into another message.
    """
    out = Normalized()
    per_shard: dict[int, list[tuple[MetricSeries, int]]] = {}
    for raw in series:
        for part in _split_points(raw):
            try:
                s = _SERIES.validate_python(part)
            except ValidationError as exc:
                out.rejected.append(Rejected(orjson.dumps(part, default=str), _reason(exc)))
                continue
            shard = shard_of(series_id(s["name"], s["labels"]), shards)
            per_shard.setdefault(shard, []).append((s, _size(s)))
    for shard in sorted(per_shard):
        chunk: list[MetricSeries] = []
        used = 0
        for s, size in per_shard[shard]:
            if chunk and used + size > max_message_bytes:
                out.batches.append(MetricBatch.model_construct(source=source, shard=shard, series=chunk))
                chunk, used = [], 0
            chunk.append(s)
            used += size
        if chunk:
            out.batches.append(MetricBatch.model_construct(source=source, shard=shard, series=chunk))
    return out

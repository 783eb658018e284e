"""The stream RCA's compact metric feed: per-series bucket partials (``rca-windows``).

Every worker's RCA needs every service's recent series, but each worker's
detection stage reads only its own ``metrics`` partitions. Rather than every
worker decoding the whole ``metrics`` topic again, the detection stage folds
the samples it has already decoded into one partial per series and time bucket
(:class:`~sre_agent.streams.rca_windows.WindowRollup`) and publishes them here,
a few times a second; every worker reads this topic whole. A row is a bucket's
*partial*: the sum and the count of samples since the last row of that series
and bucket, stamped with the time of its last sample (rows of the same bucket
add up, so the mean of a bucket is exact whatever the flush cadence).

Columnar (one list per field, equal lengths) so that a message of thousands of
rows is parsed by one validation of five flat lists.

>>> w = WindowPoints(service=["api"], metric=["cpu"], t=[60.5], total=[3.0], count=[2])
>>> len(w.service), w.rows()[0]
(1, ('api', 'cpu', 60.5, 3.0, 2))
>>> from .codec import decode
>>> decode(WindowPoints, b'{"service": ["api"], "metric": [], "t": [], "total": [], "count": []}')
Traceback (most recent call last):
...
sre_agent.schemas.codec.DecodeError: schema violation (WindowPoints): <root>: Value error, service, metric, t, total and count differ in length
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from .base import Event

__all__ = ["MAX_ROWS", "WindowPoints"]

#: rows per message at most (a flush sends several messages past it)
MAX_ROWS = 20_000

_Strs = Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=MAX_ROWS)]
_Floats = Annotated[list[float], Field(max_length=MAX_ROWS)]


class WindowPoints(Event):
    """Bucket partials of many series: ``service[i]``'s series ``metric[i]`` got
    ``count[i]`` samples summing to ``total[i]``, the last at ``t[i]`` (epoch s)."""

    TOPIC: ClassVar[str] = "rca-windows"
    schema_version: int = 1
    #: who folded them (``<worker>/<partition>``): for operators, never trusted
    source: str = Field(default="unknown", max_length=256)
    service: _Strs
    metric: _Strs
    t: _Floats
    total: _Floats
    count: Annotated[list[Annotated[int, Field(ge=1, le=2**31)]], Field(max_length=MAX_ROWS)]

    @model_validator(mode="after")
    def _same_length(self) -> WindowPoints:
        n = len(self.service)
        if not (len(self.metric) == len(self.t) == len(self.total) == len(self.count) == n):
            raise ValueError("service, metric, t, total and count differ in length")
        return self

    def rows(self) -> list[tuple[str, str, float, float, int]]:
        return list(zip(self.service, self.metric, self.t, self.total, self.count, strict=True))

"""Stage latencies measured from event times, as cumulative histograms.

The loop's stages stamp every event with when it happened, so the read model
can tell how long each hop took (signal -> incident -> RCA -> plan -> action)
without touching the stages. Buckets follow Prometheus' ``le`` convention.

Examples
--------
>>> h = LatencyHistograms(buckets=(1.0, 10.0))
>>> h.observe("rca", 0.5); h.observe("rca", 5.0); h.observe("rca", 50.0)
>>> h.get("rca")
([(1.0, 1), (10.0, 2), (inf, 3)], 55.5)
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BUCKETS", "LatencyHistograms"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


@dataclass
class _Hist:
    counts: list[int]
    total: float = 0.0


@dataclass
class LatencyHistograms:
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    _h: dict[str, _Hist] = field(default_factory=dict)

    def observe(self, stage: str, seconds: float) -> None:
        """Count one hop of ``stage`` that took ``seconds`` (negative: clock skew, 0)."""
        if not math.isfinite(seconds):
            return
        seconds = max(0.0, seconds)
        h = self._h.get(stage)
        if h is None:
            h = self._h[stage] = _Hist([0] * (len(self.buckets) + 1))
        h.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        h.total += seconds

    def stages(self) -> list[str]:
        return sorted(self._h)

    def get(self, stage: str) -> tuple[list[tuple[float, int]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        h = self._h.get(stage)
        if h is None:
            return [], 0.0
        out, acc = [], 0
        for le, c in zip((*self.buckets, math.inf), h.counts, strict=True):
            acc += c
            out.append((le, acc))
        return out, h.total

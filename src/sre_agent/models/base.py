"""The contract every per-series online model follows.

River's verb vocabulary: ``learn_one`` mutates and returns None, ``score_one``
is pure. State must be compact (a few KiB) because it is checkpointed to a
RocksDB-backed Faust table; ``to_bytes``/``from_bytes`` round-trip it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Score", "SeriesModel"]


@dataclass(frozen=True, slots=True)
class Score:
    """What a model says about one sample."""

    score: float  #: calibrated anomaly score in [0, 1]
    expected: float
    lower: float
    upper: float
    deviation: float  #: (observed - expected) / scale, signed
    warm: bool  #: False during warm-up: never alert
    contributions: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class SeriesModel(Protocol):
    def learn_one(self, t: float, v: float) -> None: ...

    def score_one(self, t: float, v: float) -> Score: ...

    def to_bytes(self) -> bytes: ...

    @property
    def n(self) -> int:
        """Samples learned so far."""
        ...

"""One series with River's API (``learn_one`` / ``score_one``), backed by a one-row bank.

The stream scores thousands of series per vectorised step with
:class:`~sre_agent.models.bank.SeriesBank`; this view runs the *same* code for
one series, for the model contract tests, the cost table and interactive use.

Examples
--------
>>> import random
>>> rng = random.Random(7)
>>> m = SeasonalDetector(warmup=30)
>>> for i in range(500):
...     m.learn_one(1.7e9 + 60 * i, 100 + rng.gauss(0, 1))
>>> m.score_one(1.7e9 + 60 * 501, 100.5).score < 0.5
True
>>> m.score_one(1.7e9 + 60 * 501, 150.0).score > 0.9
True
>>> SeasonalDetector.from_bytes(m.to_bytes()).n == m.n
True
"""

from __future__ import annotations

import numpy as np

from .bank import DETECTORS, LAST_T, N, SeriesBank, band_z
from .base import Score

__all__ = ["SeasonalDetector"]


class SeasonalDetector:
    """Seasonal baseline + spike/shift/drift/variance detectors of one series."""

    def __init__(self, warmup: int = 30, threshold: float = 0.7, **kw: float) -> None:
        self.bank = SeriesBank(warmup=warmup, capacity=1, **kw)  # type: ignore[arg-type]
        self.slot = np.array([self.bank.add()])
        self.threshold = threshold

    @property
    def n(self) -> int:
        return int(self.bank.S[0, N])

    @property
    def last_t(self) -> float:
        return float(self.bank.S[0, LAST_T])

    def _step(self, t: float, v: float, learn: bool) -> Score:
        r = self.bank.step(self.slot, np.array([t], float), np.array([v], float), learn=learn)
        exp, scale = float(r.expected[0]), float(r.scale[0])
        bz = band_z(self.threshold) * scale
        return Score(
            score=float(r.score[0]), expected=exp, lower=exp - bz, upper=exp + bz,
            deviation=float(r.deviation[0]), warm=bool(r.warm[0]),
            contributions={k: float(x) for k, x in zip(DETECTORS, r.parts[0])},
        )

    def learn_one(self, t: float, v: float) -> None:
        self._step(t, v, learn=True)

    def score_one(self, t: float, v: float) -> Score:
        """Score without learning (pure)."""
        return self._step(t, v, learn=False)

    def score_learn_one(self, t: float, v: float) -> Score:
        """Score, then learn, in one step (what the stream does)."""
        return self._step(t, v, learn=True)

    def to_bytes(self) -> bytes:
        return SeriesBank.row_bytes(self.bank.S[0])

    @classmethod
    def from_bytes(cls, data: bytes, warmup: int = 30) -> SeasonalDetector:
        m = cls(warmup=warmup)
        m.bank.S[0] = SeriesBank.row_from_bytes(data)
        return m

"""Seasonal online baseline of one series (hour-of-day EW means + EW residual variance).

Examples
--------
>>> import random
>>> rng = random.Random(7)
>>> m = SeasonalBaseline(warmup=30)
>>> for i in range(500):
...     m.learn_one(1.7e9 + 60 * i, 100 + rng.gauss(0, 1))
>>> m.score_one(1.7e9 + 60 * 501, 100.5).score < 0.5
True
>>> m.score_one(1.7e9 + 60 * 501, 150.0).score > 0.9
True
>>> SeasonalBaseline.from_bytes(m.to_bytes()).n == m.n
True
"""

from __future__ import annotations

import math
import struct

from .base import Score

__all__ = ["SeasonalBaseline"]

_BUCKETS = 24
_FMT = f"<Iddd{_BUCKETS}d{_BUCKETS}H"


class SeasonalBaseline:
    """Hour-of-day seasonal level with a robust, exponentially weighted spread."""

    def __init__(self, alpha: float = 0.05, warmup: int = 30) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self._n = 0
        self.level = 0.0
        self.var = 0.0
        self.last_t = 0.0
        self.season = [0.0] * _BUCKETS
        self.season_n = [0] * _BUCKETS

    @property
    def n(self) -> int:
        return self._n

    @staticmethod
    def _bucket(t: float) -> int:
        return int(t // 3600) % _BUCKETS

    def _expected(self, t: float) -> float:
        b = self._bucket(t)
        return self.level + (self.season[b] if self.season_n[b] >= 3 else 0.0)

    def learn_one(self, t: float, v: float) -> None:
        if self._n == 0:
            self.level = v
        exp = self._expected(t)
        resid = v - exp
        scale = math.sqrt(self.var) if self.var > 0 else abs(self.level) * 0.05 + 1e-9
        # winsorise so a spike does not drag the baseline (robust to outliers)
        clipped = max(-4 * scale, min(4 * scale, resid)) if self._n >= self.warmup else resid
        a = self.alpha if self._n >= self.warmup else max(self.alpha, 1.0 / (self._n + 1))
        self.level += a * clipped
        b = self._bucket(t)
        self.season[b] += 0.1 * (clipped - self.season[b]) if self.season_n[b] else 0.0
        self.season_n[b] = min(self.season_n[b] + 1, 65535)
        self.var = (1 - a) * (self.var + a * clipped * clipped)
        self.last_t = t
        self._n += 1

    def score_one(self, t: float, v: float) -> Score:
        exp = self._expected(t)
        floor = 1e-3 * max(1.0, abs(exp))
        scale = max(math.sqrt(self.var), floor)
        dev = (v - exp) / scale
        # logistic calibration: |z| = 3 -> 0.5, |z| = 5 -> ~0.88
        score = 1.0 / (1.0 + math.exp(-1.2 * (abs(dev) - 3.0)))
        return Score(
            score=score if self._n >= self.warmup else 0.0,
            expected=exp,
            lower=exp - 3 * scale,
            upper=exp + 3 * scale,
            deviation=dev,
            warm=self._n >= self.warmup,
            contributions={"seasonal_z": score},
        )

    def to_bytes(self) -> bytes:
        return struct.pack(_FMT, self._n, self.level, self.var, self.last_t,
                           *self.season, *self.season_n)

    @classmethod
    def from_bytes(cls, data: bytes, alpha: float = 0.05, warmup: int = 30) -> SeasonalBaseline:
        vals = struct.unpack(_FMT, data)
        m = cls(alpha=alpha, warmup=warmup)
        m._n, m.level, m.var, m.last_t = int(vals[0]), vals[1], vals[2], vals[3]
        m.season = list(vals[4 : 4 + _BUCKETS])
        m.season_n = [int(x) for x in vals[4 + _BUCKETS :]]
        return m

"""Trend forecaster of one saturation series: time until it reaches a limit.

Samples are averaged into fixed buckets (e.g. 5 min), which makes irregular
sampling regular; each closed bucket feeds a Holt model (level + trend, no
season: the updates of :class:`river.time_series.HoltWinters`, kept as three
floats rather than River's object, which costs ~2.4 KB per series) and a River
:class:`~river.stats.EWVar` of its one-step-ahead errors. The forecast ``h``
buckets ahead has the ETS(A,A,N) variance

``s2 * (1 + (h - 1) * (a**2 + a*b*h + b**2 * h * (2h - 1) / 6))`` with
``a = alpha``, ``b = alpha * beta``,

so the confidence that the series is past its limit by the horizon is a normal
tail probability. It is capped by the same probability from a straight line
fitted to the last ``window`` buckets (its prediction interval), so a trend that
is young, noisy or just a bump does not raise a confident warning.

Examples
--------
>>> f = TrendForecaster(bucket=300.0)
>>> for i in range(12 * 24):  # 24 h at 5 min: a leak of 2% of the limit per hour
...     _ = f.learn_one(1.7e9 + 300 * i, 0.40 + 0.02 * i / 12 + 0.002 * ((i * 7) % 5))
>>> eta, conf = f.time_to(1.0, horizon=8 * 3600.0)
>>> round(eta / 3600, 1), conf > 0.9
(6.1, True)
>>> f.time_to(1.0, horizon=3 * 3600.0)[1] < 0.01  # not within 3 h
True
>>> f2 = TrendForecaster.from_bytes(f.to_bytes())
>>> f2.time_to(1.0, horizon=8 * 3600.0) == (eta, conf)
True
"""

from __future__ import annotations

import math
import pickle
import statistics
from array import array
from typing import Any

from river import stats

__all__ = ["TrendForecaster"]


def _tail(margin: float, sd: float) -> float:
    """P(N(margin, sd) >= 0)."""
    if sd <= 0:
        return 1.0 if margin >= 0 else 0.0
    return 0.5 * math.erfc(-margin / (sd * math.sqrt(2)))


class TrendForecaster:
    """Bucketed Holt (level + trend) forecaster with a forecast variance.

    Parameters
    ----------
    bucket
        Seconds per bucket.
    alpha, beta
        Holt smoothing of level and trend.
    """

    def __init__(self, bucket: float = 300.0, alpha: float = 0.2, beta: float = 0.05,
                 window: int = 72) -> None:
        self.bucket = bucket
        self.alpha = alpha
        self.beta = beta
        self.window = window
        #: Holt state: level, the level before it, trend (NaN until two buckets)
        self.lv = self.lv_prev = self.tr = math.nan
        #: the first bucket mean (Holt starts from the first two)
        self.first = math.nan
        self.err = stats.EWVar(fading_factor=0.05)
        self.n = 0  #: closed buckets learned
        self.b_start = -1.0  #: start time of the open bucket
        self.b_sum = 0.0
        self.b_cnt = 0
        self.last = math.nan  #: last sample value
        #: the last ``window`` bucket means: a least-squares check of the trend
        self.recent = array("d")

    # ------------------------------------------------------------ learning
    def learn_one(self, t: float, v: float) -> bool:
        """Add a sample; return True when it closed a bucket (a new forecast is due)."""
        start = t - t % self.bucket
        closed = False
        if self.b_start < 0:
            self.b_start = start
        elif start > self.b_start:
            if self.b_cnt:
                self._close(self.b_sum / self.b_cnt, int((start - self.b_start) / self.bucket))
                closed = True
            self.b_start, self.b_sum, self.b_cnt = start, 0.0, 0
        elif start < self.b_start:  # late sample: ignored
            return False
        self.b_sum += v
        self.b_cnt += 1
        self.last = v
        return closed

    def _forecast(self) -> float:
        """One bucket ahead (as River's ``forecast(horizon=1)[0]``)."""
        return self.lv + 1 * self.tr + 0

    def _learn(self, y: float) -> None:
        """River's additive Holt update (``HoltWinters.learn_one``, no season)."""
        if self.n >= 2:
            self.lv_prev, self.lv = self.lv, (
                self.alpha * (y - 0) + (1 - self.alpha) * (self.lv + self.tr))
            self.tr = self.beta * (self.lv - self.lv_prev) + (1 - self.beta) * self.tr
        elif self.n == 0:
            self.first = y
        else:  # initialised from the first two values
            self.lv = statistics.mean([self.first, y])
            self.tr = statistics.mean([y - self.first])

    def _close(self, mean: float, steps: int) -> None:
        if self.n >= 2:
            pred = self._forecast()
            self.err.update(mean - pred)
        # a gap of several buckets: carry the forecast through the missing ones
        for _ in range(max(0, min(steps - 1, 12))):
            if self.n >= 2:
                self._learn(self._forecast())
        self._learn(mean)
        recent = self.recent
        recent.extend([math.nan] * max(0, min(steps - 1, 12)))
        recent.append(mean)
        if len(recent) > self.window:
            del recent[:len(recent) - self.window]
        self.n += 1

    # ------------------------------------------------------------ forecasting
    @property
    def level(self) -> float:
        return float(self.lv) if self.n >= 2 else self.last

    @property
    def slope(self) -> float:
        """Trend per second."""
        return float(self.tr) / self.bucket if self.n >= 2 else 0.0

    def _sd(self, h: float) -> float:
        s2 = max(self.err.get(), 0.0)
        a, b = self.alpha, self.alpha * self.beta
        return math.sqrt(s2 * (1 + (h - 1) * (a * a + a * b * h + b * b * h * (2 * h - 1) / 6)))

    def time_to(self, limit: float, horizon: float, below: bool = False) -> tuple[float, float]:
        """``(seconds until the forecast reaches limit, confidence)``; ``(inf, 0)`` if never.

        Seconds are counted from the end of the last closed bucket. Confidence is
        the probability that the series is past ``limit`` at ``horizon``.
        """
        if self.n < 2:
            return math.inf, 0.0
        sign = -1.0 if below else 1.0
        level, slope = sign * self.level, sign * self.slope
        lim = sign * limit
        if level >= lim:
            return 0.0, 1.0
        if slope <= 0:
            return math.inf, 0.0
        eta = (lim - level) / slope
        h = horizon / self.bucket
        mean_h = level + slope * horizon
        conf = _tail(mean_h - lim, self._sd(h))
        return eta, min(conf, self._ls_confidence(lim, h, sign))

    def _ls_confidence(self, lim: float, h: float, sign: float) -> float:
        """Probability of being past ``lim`` in ``h`` buckets by a straight line fitted to
        the recent buckets (its prediction interval): a young or noisy trend is unsure."""
        pts = [(i, sign * y) for i, y in enumerate(self.recent) if not math.isnan(y)]
        n = len(pts)
        if n < 6:
            return 0.0
        mx = sum(x for x, _ in pts) / n
        my = sum(y for _, y in pts) / n
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        b = sum((x - mx) * (y - my) for x, y in pts) / sxx
        a = my - b * mx
        resid = sum((y - a - b * x) ** 2 for x, y in pts)
        s = math.sqrt(resid / (n - 2))
        xh = pts[-1][0] + h
        sd = s * math.sqrt(1 + 1 / n + (xh - mx) ** 2 / sxx)
        return _tail(a + b * xh - lim, sd)

    # ------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> TrendForecaster:
        state: dict[str, Any] = pickle.loads(data)  # noqa: S301 - our own table's bytes
        f = cls.__new__(cls)
        holt = state.pop("holt", None)
        if holt is not None:  # saved before the Holt state was three floats
            state["window"] = state["recent"].maxlen or 72
            state["recent"] = array("d", state["recent"])
            lv, tr = list(holt.level), list(holt.trend)
            state["lv"] = lv[-1] if lv else math.nan
            state["lv_prev"] = lv[-2] if len(lv) > 1 else math.nan
            state["tr"] = tr[-1] if tr else math.nan
            first = list(holt._first_values)
            state["first"] = first[0] if first else math.nan
        f.__dict__.update(state)
        return f

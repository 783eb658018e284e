"""TrendForecaster's Holt state as floats: the same forecasts as River's HoltWinters, bit for
bit, and states saved with River's object still load (issue 18: ~3 KB less per series)."""

from __future__ import annotations

import math
import pickle
import random
import statistics
import tracemalloc
from collections import deque

from river import stats, time_series

from sre_agent.models.forecast import TrendForecaster


class _RiverHolt(TrendForecaster):
    """The forecaster as it was: River's HoltWinters and a deque (the reference)."""

    def __init__(self, bucket: float = 300.0, alpha: float = 0.2, beta: float = 0.05,
                 window: int = 72) -> None:
        super().__init__(bucket, alpha, beta, window)
        self.holt = time_series.HoltWinters(alpha=alpha, beta=beta)
        self.recent = deque(maxlen=window)  # type: ignore[assignment]
        for k in ("window", "lv", "lv_prev", "tr", "first"):
            del self.__dict__[k]

    def _close(self, mean: float, steps: int) -> None:
        if self.n >= 2:
            self.err.update(mean - self.holt.forecast(horizon=1)[0])
        for _ in range(max(0, min(steps - 1, 12))):
            if self.n >= 2:
                self.holt.learn_one(self.holt.forecast(horizon=1)[0])
        self.holt.learn_one(mean)
        self.recent.extend([math.nan] * max(0, min(steps - 1, 12)))
        self.recent.append(mean)
        self.n += 1

    @property
    def level(self) -> float:
        return float(self.holt.level[-1]) if self.n >= 2 else self.last

    @property
    def slope(self) -> float:
        return float(self.holt.trend[-1]) / self.bucket if self.n >= 2 else 0.0


def _feed(seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    t, v, out = 1.7e9, rng.uniform(0.1, 0.6), []
    slope = rng.uniform(-2e-5, 6e-5)
    for _ in range(3000):
        t += rng.choice([15.0, 15.0, 15.0, 60.0, 900.0, 4000.0])  # gaps of whole buckets
        v += slope * 15 + rng.gauss(0, 0.004)
        out.append((t, v))
    return out


def _same(a: TrendForecaster, b: TrendForecaster) -> None:
    assert (a.n, a.level, a.slope) == (b.n, b.level, b.slope) or (
        math.isnan(a.level) and math.isnan(b.level))
    for h in (1800.0, 4 * 3600.0, 24 * 3600.0):
        for lim, below in ((1.0, False), (0.0, True)):
            assert a.time_to(lim, h, below=below) == b.time_to(lim, h, below=below)


def test_same_forecasts_as_rivers_holt_winters() -> None:
    for seed in range(6):
        new, ref = TrendForecaster(), _RiverHolt()
        for i, (t, v) in enumerate(_feed(seed)):
            assert new.learn_one(t, v) == ref.learn_one(t, v)
            if i % 97 == 0 or i < 40:
                _same(new, ref)
        _same(new, ref)
        assert [repr(x) for x in new.recent] == [repr(x) for x in ref.recent]


def test_state_saved_with_rivers_object_loads() -> None:
    for cut in (1, 30, 200, 3000):  # before Holt starts, just after, later
        new, ref = TrendForecaster(), _RiverHolt()
        pts = _feed(11)
        for t, v in pts[:cut]:
            new.learn_one(t, v)
            ref.learn_one(t, v)
        old = pickle.dumps(ref.__dict__, protocol=pickle.HIGHEST_PROTOCOL)
        back = TrendForecaster.from_bytes(old)
        again = TrendForecaster.from_bytes(new.to_bytes())
        for t, v in pts[cut:cut + 600]:
            for f in (new, back, again):
                f.learn_one(t, v)
        _same(back, new)
        _same(again, new)


def test_a_followed_series_costs_under_a_kilobyte_and_a_half() -> None:
    tracemalloc.start()
    try:
        a = tracemalloc.get_traced_memory()[0]
        fs = [TrendForecaster() for _ in range(500)]
        for f in fs:
            for i in range(12 * 24 * 20):  # a day at 15 s: the window is full
                f.learn_one(1.7e9 + 15 * i, 0.5 + i * 1e-6)
        per = (tracemalloc.get_traced_memory()[0] - a) / len(fs)
    finally:
        tracemalloc.stop()
    assert per < 1536, per  # River's HoltWinters + deque: ~7.7 KB


def test_holt_starts_from_the_mean_of_the_first_two_buckets() -> None:
    f = TrendForecaster(bucket=60.0)
    for i, v in enumerate([1.0, 2.0, 4.0]):
        f.learn_one(60.0 * i, v)
    assert f.lv == statistics.mean([1.0, 2.0]) and f.tr == 1.0
    assert isinstance(f.err, stats.EWVar)

"""Traffic shape of a 24/7 exchange: daily and weekly seasonality, bursts, noise.

Everything is driven by one seeded :class:`random.Random` stepped in time
order, so a run is reproducible per seed.

Examples
--------
>>> import random
>>> t0 = 1_700_000_000.0
>>> seasonal(t0) > 0.5
True
>>> n = Ar1(random.Random(1), sigma=0.05)
>>> abs(n.step()) < 0.5
True
>>> b = Bursts(random.Random(3), per_day=3.0)
>>> 1.0 <= b.step(t0, 60.0) <= 3.0
True
"""

from __future__ import annotations

import math
import random

__all__ = ["Ar1", "Bursts", "seasonal"]

DAY = 86400.0


def seasonal(t: float) -> float:
    """Relative request rate at ``t``: mean 1, US-open peak, Asia bump, quieter weekends.

    >>> round(seasonal(14 * 3600.0 + 4 * DAY), 2) > round(seasonal(7 * 3600.0 + 4 * DAY), 2)
    True
    """
    h = (t % DAY) / 3600.0
    daily = 1.0 + 0.28 * math.cos(2 * math.pi * (h - 14.5) / 24) \
        + 0.08 * math.cos(4 * math.pi * (h - 2.0) / 24)
    dow = (int(t // DAY) + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    frac = (t % DAY) / DAY
    # smooth weekend dip: Saturday and Sunday at 0.8, ramps over 6 hours
    weekend = 0.8 if dow in (5, 6) else 1.0
    if dow == 4 and frac > 0.75:
        weekend = 1.0 - 0.2 * (frac - 0.75) / 0.25
    elif dow == 0 and frac < 0.25:
        weekend = 0.8 + 0.2 * frac / 0.25
    return daily * weekend


class Ar1:
    """Mean-reverting noise (log-scale wander), one per series."""

    __slots__ = ("phi", "rng", "scale", "x")

    def __init__(self, rng: random.Random, sigma: float, phi: float = 0.7) -> None:
        self.rng = rng
        self.phi = phi
        self.scale = sigma * math.sqrt(1 - phi * phi)
        self.x = 0.0

    def step(self) -> float:
        self.x = self.phi * self.x + self.rng.gauss(0.0, self.scale)
        return self.x


class Bursts:
    """Short market bursts: a few a day, 1.4-2.4x for 2-6 minutes, ramped."""

    def __init__(self, rng: random.Random, per_day: float = 3.0) -> None:
        self.rng = rng
        self.per_day = per_day
        self.until = 0.0
        self.start = 0.0
        self.peak = 1.0

    def step(self, t: float, dt: float) -> float:
        draw = self.rng.random()
        size = self.rng.uniform(1.4, 2.4)
        length = self.rng.uniform(120.0, 360.0)
        if t >= self.until and draw < self.per_day * dt / DAY:
            self.start, self.until, self.peak = t, t + length, size
        if t >= self.until:
            return 1.0
        x = (t - self.start) / (self.until - self.start)
        return 1.0 + (self.peak - 1.0) * math.sin(math.pi * x) ** 0.5

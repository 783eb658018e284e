"""Labelled synthetic metric series for the detection evaluation.

Each series has a level, noise (Gaussian with AR(1) correlation), a daily and a
weekly seasonal pattern, optional irregular sampling with missing stretches,
and zero or more injected anomalies of one kind. Labels are the anomaly
windows ``(start_t, end_t, kind)``.

Kinds (magnitudes in units of the noise sigma, drawn per anomaly):

==============  ==========================================================
spike           1-3 samples at +6..12 sigma
dip             1-3 samples at -6..12 sigma
level_shift     +/-3..8 sigma for 1-3 h, then back
drift           linear ramp to +/-6..12 sigma over 1-3 h, held 30 min, back
variance        noise x3..6 for 1 h
==============  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("spike", "dip", "level_shift", "drift", "variance")
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@dataclass
class Labelled:
    name: str
    kind: str  #: one of KINDS or "clean"
    t: np.ndarray
    v: np.ndarray
    sigma: float
    windows: list[tuple[float, float, str]] = field(default_factory=list)


def make_series(rng: np.random.Generator, kind: str, days: float = 10.0, step: float = 60.0,
                n_anomalies: int = 3, learn_days: float = 2.0, irregular: bool = False,
                name: str = "s") -> Labelled:
    """One labelled series; anomalies are placed after ``learn_days``, >= 12 h apart."""
    n = int(days * 86400 / step)
    t = T0 + step * np.arange(n)
    if irregular:
        t = t + rng.uniform(-0.4, 0.4, n) * step
        keep = np.ones(n, bool)
        for _ in range(int(days)):  # a few missing stretches (scrape failures)
            a = rng.integers(0, n - 60)
            keep[a:a + rng.integers(5, 60)] = False
        keep[rng.random(n) < 0.02] = False
        t = t[keep]
        n = len(t)
    level = float(rng.uniform(10, 1000))
    sigma = level * float(rng.uniform(0.01, 0.05))
    phi = float(rng.uniform(0.0, 0.5))
    e = rng.normal(0, 1, n)
    noise = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = phi * acc + e[i]
        noise[i] = acc
    noise *= sigma * np.sqrt(1 - phi * phi)  # stationary sigma stays `sigma`
    daily_amp = float(rng.uniform(0, 10)) * sigma
    phase = float(rng.uniform(0, 2 * np.pi))
    hours = (t % 86400) / 3600.0
    weekday = ((t // 86400).astype(int) + 3) % 7
    weekend = float(rng.uniform(0, 4)) * sigma
    base = (level + daily_amp * np.sin(2 * np.pi * hours / 24 + phase)
            - weekend * (weekday >= 5))
    v = base + noise
    out = Labelled(name=name, kind=kind if n_anomalies else "clean", t=t, v=v, sigma=sigma)
    if not n_anomalies or kind == "clean":
        out.kind = "clean"
        return out
    slots = np.arange(learn_days * 86400, days * 86400 - 6 * 3600, 12 * 3600)
    starts = np.sort(rng.choice(slots, size=min(n_anomalies, len(slots)), replace=False))
    for s0 in starts:
        start = T0 + float(s0) + float(rng.uniform(0, 6 * 3600))
        sign = 1.0 if kind == "spike" else -1.0 if kind == "dip" else float(rng.choice([-1, 1]))
        if kind in ("spike", "dip"):
            width = int(rng.integers(1, 4))
            i0 = int(np.searchsorted(t, start))
            idx = np.arange(i0, min(i0 + width, len(t)))
            v[idx] += sign * float(rng.uniform(6, 12)) * sigma
            end = float(t[idx[-1]])
        elif kind == "level_shift":
            dur = float(rng.uniform(1, 3)) * 3600
            m = (t >= start) & (t < start + dur)
            v[m] += sign * float(rng.uniform(3, 8)) * sigma
            end = start + dur
        elif kind == "drift":
            ramp = float(rng.uniform(1, 3)) * 3600
            hold = 1800.0
            mag = float(rng.uniform(6, 12)) * sigma
            m = (t >= start) & (t < start + ramp)
            v[m] += sign * mag * (t[m] - start) / ramp
            m2 = (t >= start + ramp) & (t < start + ramp + hold)
            v[m2] += sign * mag
            end = start + ramp + hold
        elif kind == "variance":
            dur = 3600.0
            m = (t >= start) & (t < start + dur)
            v[m] = base[m] + noise[m] * float(rng.uniform(3, 6))
            end = start + dur
        else:
            raise ValueError(kind)
        out.windows.append((start, end, kind))
    return out


def make_suite(seed: int = 1, per_kind: int = 20, clean: int = 20, days: float = 21.0,
               step: float = 60.0, irregular_share: float = 0.25,
               learn_days: float = 8.0) -> list[Labelled]:
    """``per_kind`` series of every kind (3 anomalies each) plus ``clean`` series."""
    rng = np.random.default_rng(seed)
    suite: list[Labelled] = []
    for kind in (*KINDS, "clean"):
        count = clean if kind == "clean" else per_kind
        for j in range(count):
            suite.append(make_series(rng, kind, days=days, step=step,
                                     n_anomalies=0 if kind == "clean" else 3,
                                     learn_days=learn_days,
                                     irregular=bool(rng.random() < irregular_share),
                                     name=f"{kind}_{j}"))
    return suite

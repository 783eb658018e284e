"""Early-warning quality: lead time, ETA error and false warnings on labelled series.

Usage::

    python bench/eval_prediction.py [--seed 1] [--n 40]

``--n`` saturation series that breach their limit (memory leaks, disks filling,
pools draining: linear or accelerating ramps at 2-15 % of the limit per hour,
noise 0.5-2 %, daily wiggle, 1-min samples with gaps) and ``--n`` that never do
(flat, noisy, daily pattern, a temporary bump, a slow rise that would take > 2
days) run through the stream's own :class:`~sre_agent.processors.predict.EarlyWarning`
with the default ``prediction`` settings. Reported: share of breaches warned at
least 1 h ahead, lead time of the first warning, ETA error of warnings, and the
false-warning rate (the seeds ask for 1-3 h ahead with < 10 % false alarms).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sre_agent.config import PredictionSettings  # noqa: E402
from sre_agent.processors.predict import EarlyWarning  # noqa: E402
from sre_agent.schemas import MetricBatch  # noqa: E402

T0 = 1_700_000_000.0


def leak(rng: np.random.Generator, hours: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A series reaching 1.0; returns (t, v, breach time)."""
    n = int(hours * 60)
    t = T0 + 60 * np.arange(n)
    rate = rng.uniform(0.02, 0.15)  # of the limit per hour
    accel = rng.choice([0.0, rng.uniform(0.0, 0.3)])
    start = rng.uniform(0.2, 0.5)
    h = (t - T0) / 3600
    v = start + rate * h * (1 + accel * h / hours)
    v += rng.uniform(0.005, 0.02) * rng.normal(size=n) + 0.01 * np.sin(2 * np.pi * h / 24)
    above = np.flatnonzero(v >= 1.0)
    breach = float(t[above[0]]) if len(above) else math.inf
    return t, v, breach


def calm(rng: np.random.Generator, hours: float) -> tuple[np.ndarray, np.ndarray]:
    n = int(hours * 60)
    t = T0 + 60 * np.arange(n)
    h = (t - T0) / 3600
    kind = rng.integers(0, 4)
    base = rng.uniform(0.3, 0.7)
    v = base + rng.uniform(0.005, 0.03) * rng.normal(size=n)
    if kind == 1:
        v += 0.1 * np.sin(2 * np.pi * h / 24)
    elif kind == 2:  # a temporary bump (a batch job), back within 2 h
        a = rng.uniform(2, hours - 4)
        v += np.where((h > a) & (h < a + 2), 0.25 * np.sin(np.pi * (h - a) / 2), 0.0)
    elif kind == 3:  # a slow rise: > 2 days from the limit
        v += 0.004 * h
    return t, v


def run(ew: EarlyWarning, name: str, t: np.ndarray, v: np.ndarray, rng: np.random.Generator,
        batch_min: int = 5) -> list:
    keep = rng.random(len(t)) > 0.03  # missing samples
    t, v = t[keep], v[keep]
    out = []
    for a in range(0, len(t), batch_min):
        pts = list(zip(t[a:a + batch_min].tolist(), v[a:a + batch_min].tolist()))
        out += ew.update(MetricBatch(series=[{"name": "memory_limit_ratio",
                                              "labels": {"pod": name}, "points": pts}]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--hours", type=float, default=24.0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    s = PredictionSettings()
    warned_1h = breaches = 0
    leads: list[float] = []
    eta_err: list[float] = []
    for i in range(args.n):
        ew = EarlyWarning(s)
        t, v, breach = leak(rng, args.hours)
        if math.isinf(breach) or breach - T0 < 3 * 3600:
            continue
        breaches += 1
        preds = [p for p in run(ew, f"leak{i}", t, v, rng) if p.time.timestamp() < breach]
        if preds:
            lead = breach - preds[0].time.timestamp()
            leads.append(lead / 3600)
            warned_1h += lead >= 3600
            for p in preds:
                eta_err.append(abs(p.breach_at.timestamp() - breach) / max(breach - p.time.timestamp(), 1))
    false = 0
    for i in range(args.n):
        ew = EarlyWarning(s)
        t, v = calm(rng, args.hours)
        false += bool(run(ew, f"calm{i}", t, v, rng))
    print(f"{breaches} breaching series, {args.n} that never breach, horizon "
          f"{s.horizon_hours:g} h, min confidence {s.min_confidence}")
    print(f"  warned >= 1 h ahead:      {warned_1h}/{breaches} ({100 * warned_1h / max(breaches, 1):.0f}%)")
    if leads:
        print(f"  lead of first warning:    p10 {np.percentile(leads, 10):.1f} h, "
              f"median {np.median(leads):.1f} h, p90 {np.percentile(leads, 90):.1f} h")
        print(f"  ETA error of warnings:    median {100 * np.median(eta_err):.0f}% of the "
              f"remaining time, p90 {100 * np.percentile(eta_err, 90):.0f}%")
    print(f"  false warnings:           {false}/{args.n} series ({100 * false / args.n:.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

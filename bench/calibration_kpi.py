"""Calibration of the detection score on real KPIs: observed false-alert rate against the promise.

Usage::

    python bench/calibration_kpi.py [--data ../shared/devdata/kpi] [--scores DIR] [--skip-days 1]
                                    [--by-series 0.8]

A score ``x`` promises a tail probability per sample and direction,
``10 ** -surprisal_of(x)`` (docs/cognition.md, "What a score means"): on a series that
behaves as it has so far, an alert at threshold ``x`` opens on about
``p(x) = 2 * 10 ** -surprisal_of(x)`` of its samples (either direction). This check counts,
on the *label-free* stretches of the KPI dev set (samples outside every operator-labelled
segment, after each series' first ``--skip-days`` days of learning), the alert onsets
(a sample whose shown score reaches ``x`` while the previous one did not, as the data
set's scorer counts them) and compares them with ``p(x)`` times the number of those
samples, at 0.6, 0.7, 0.8 and 0.9. A ratio of 1 is a calibrated score; above 1 the score
overstates how rare the alerts are. Unlabelled real events count as false here, so a
perfect detector would show a ratio a little above 1.

Per series, the ratio's median and 90th percentile (over series with at least 5 expected
onsets at that score) say whether the same score means the same rarity on every series.

``--by-series SCORE`` lists, per series, the onsets at that score, how many fall in the
series' first week and how many within 60 samples of a labelled segment (the cause
breakdown behind a ratio above 1).

``--scores DIR`` reads a directory written by ``sre-agent backtest`` (or any detector's
``timestamp,value,anomaly_score`` CSVs); without it the backtest is run here.

``--synthetic`` measures the same ratio on generated noise of known tail instead (no data
set needed): per noise kind, ``--series`` series of one sample a minute for ``--days`` days
(the first day is learning), alert onsets of the shown score per *direction* against
``p(x) x samples`` per direction: Gaussian, Student-t(3) (generalised Pareto shape 1/3),
lognormal(0, 1) and Pareto(3) (both one-sided, like latencies: their down side has no
tail, so only the up side is read), and AR(1) with t(3) innovations (phi 0.8: dependent
heavy-tailed residuals). ``--bank key=value`` passes a detector parameter (a variant).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.6, 0.7, 0.8, 0.9)


def promise(score: float) -> float:
    """Per-sample probability of an alert at this score, either direction (the detector's rule)."""
    from sre_agent.models.tailbank import surprisal_of

    return 2.0 * 10.0 ** -surprisal_of(score)


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ts, sc = [], []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        r = csv.reader(fh)
        head = [h.strip().lower() for h in next(r)]
        it, isc = head.index("timestamp"), head.index("anomaly_score")
        for row in r:
            if row:
                ts.append(float(row[it]))
                try:
                    sc.append(float(row[isc]))
                except ValueError:
                    sc.append(0.0)
    t = np.asarray(ts)
    if len(t) and t[0] > 1e11:
        t = t / 1000.0
    return t, np.nan_to_num(np.asarray(sc))


def poisson_ci(k: int) -> tuple[float, float]:
    """Approximate 95 % interval of a Poisson count (Wilson-Hilferty; exact enough here)."""
    def q(kk: float, z: float) -> float:
        if kk <= 0:
            return 0.0
        return kk * (1 - 1 / (9 * kk) + z / (3 * math.sqrt(kk))) ** 3
    return (q(k, -1.96) if k > 0 else 0.0), q(k + 1, 1.96)


def calibration(scores: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict[str, list],
                skip_days: float, thresholds=THRESHOLDS) -> list[dict]:
    rows = []
    for th in thresholds:
        p = promise(th)
        onsets = samples = 0
        ratios = []
        for name, (t, s) in scores.items():
            if not len(t):
                continue
            free = t >= t[0] + skip_days * 86400.0
            for a, b in labels.get(name, []):
                free &= ~((t >= a) & (t <= b))
            c = s >= th
            onset = c & ~np.r_[False, c[:-1]]
            o, n = int((onset & free).sum()), int(free.sum())
            onsets += o
            samples += n
            if n * p >= 5:
                ratios.append(o / (n * p))
        exp = samples * p
        lo, hi = poisson_ci(onsets)
        rows.append({"score": th, "p": p, "samples": samples, "expected": exp, "observed": onsets,
                     "ratio": onsets / exp if exp else math.nan, "ratio_lo": lo / exp if exp else math.nan,
                     "ratio_hi": hi / exp if exp else math.nan, "series": len(ratios),
                     "median": float(np.median(ratios)) if ratios else math.nan,
                     "p90": float(np.percentile(ratios, 90)) if ratios else math.nan})
    return rows


def breakdown(scores: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict[str, list],
              skip_days: float, th: float, near: int = 60) -> list[dict]:
    """Where the onsets at score ``th`` come from: per series, the onsets on label-free
    samples split by phase (before / after the series' first week) and by whether a
    labelled segment is within ``near`` samples (the labelled event's own edges)."""
    out = []
    for name, (t, s) in scores.items():
        if not len(t):
            continue
        seg = np.zeros(len(t), bool)
        for a, b in labels.get(name, []):
            seg |= (t >= a) & (t <= b)
        free = (t >= t[0] + skip_days * 86400.0) & ~seg
        c = s >= th
        on = np.flatnonzero(c & ~np.r_[False, c[:-1]] & free)
        if not len(on):
            continue
        idx = np.flatnonzero(seg)
        pos = np.searchsorted(idx, on)
        dist = np.full(len(on), np.inf)
        if len(idx):
            after = idx[np.minimum(pos, len(idx) - 1)] - on
            before = on - idx[np.maximum(pos - 1, 0)]
            dist = np.minimum(np.where(after > 0, after, np.inf), np.where(before > 0, before, np.inf))
        young = t[on] < t[0] + 7 * 86400.0
        out.append({"series": name, "onsets": len(on), "first_week": int(young.sum()),
                    "near_label": int((dist <= near).sum()), "samples": int(free.sum()),
                    "expected": float(free.sum() * promise(th))})
    return sorted(out, key=lambda r: -r["onsets"])


def render(rows: list[dict]) -> str:
    out = [f"{'score':>5} {'promised p':>10} {'expected':>10} {'observed':>8} {'ratio':>7} "
           f"{'(95 % CI)':>16} {'series':>6} {'median':>6} {'p90':>6}"]
    for r in rows:
        ci = f"({r['ratio_lo']:.3g}-{r['ratio_hi']:.3g})"
        med = "-" if math.isnan(r["median"]) else f"{r['median']:.2f}"
        p90 = "-" if math.isnan(r["p90"]) else f"{r['p90']:.2f}"
        out.append(f"{r['score']:>5} {r['p']:>10.3g} {r['expected']:>10.3g} {r['observed']:>8} "
                   f"{r['ratio']:>7.3g} {ci:>16} {r['series']:>6} {med:>6} {p90:>6}")
    return "\n".join(out)


#: generated noise kinds: (name, one-sided)
KINDS = (("gaussian", False), ("t3", False), ("lognormal", True), ("pareto3", True),
         ("ar1-t3", False))


def synthetic(kinds=KINDS, series: int = 200, days: int = 6, thresholds=THRESHOLDS,
              seed: int = 0, **bank: float) -> list[dict]:
    """Onsets per direction against the promise on generated noise (module docstring)."""
    from sre_agent.models.tailbank import TailBank, surprisal_of

    day = 1440
    rows = []
    for kind, one_sided in kinds:
        rng = np.random.default_rng(seed)
        tb = TailBank(capacity=series, **bank)
        slots = np.array([tb.add() for _ in range(series)])
        prev = {th: np.zeros(series, bool) for th in thresholds}
        up = dict.fromkeys(thresholds, 0)
        down = dict.fromkeys(thresholds, 0)
        ar = np.zeros(series)
        samples = 0
        for i in range(days * day):
            if kind == "gaussian":
                x = rng.normal(size=series)
            elif kind == "t3":
                x = rng.standard_t(3, series)
            elif kind == "lognormal":
                x = rng.lognormal(0.0, 1.0, series)
            elif kind == "pareto3":
                x = rng.pareto(3.0, series)
            else:
                ar = 0.8 * ar + rng.standard_t(3, series)
                x = ar
            out = tb.step(slots, np.full(series, 1.7e9 + 60.0 * i), 100.0 + x)
            if i < day:
                continue
            samples += series
            for th in thresholds:
                c = out.score >= th
                on = c & ~prev[th]
                prev[th] = c
                up[th] += int((on & (out.direction > 0)).sum())
                down[th] += int((on & (out.direction < 0)).sum())
        for th in thresholds:
            p = 10.0 ** -surprisal_of(th)
            sides = 1 if one_sided else 2
            obs = up[th] + (0 if one_sided else down[th])
            exp = sides * p * samples
            lo, hi = poisson_ci(obs)
            rows.append({"kind": kind, "score": th, "p": p, "samples": samples, "expected": exp,
                         "observed": obs, "ratio": obs / exp, "ratio_lo": lo / exp,
                         "ratio_hi": hi / exp, "down": down[th] if one_sided else None})
    return rows


def render_synthetic(rows: list[dict]) -> str:
    out = [f"{'noise':<10} {'score':>5} {'expected':>9} {'observed':>8} {'ratio':>7} {'(95 % CI)':>16}"]
    for r in rows:
        ci = f"({r['ratio_lo']:.3g}-{r['ratio_hi']:.3g})"
        note = "" if r["down"] is None else f"  (up side; down side {r['down']})"
        out.append(f"{r['kind']:<10} {r['score']:>5} {r['expected']:>9.3g} {r['observed']:>8} "
                   f"{r['ratio']:>7.3g} {ci:>16}{note}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "devdata" / "kpi")
    ap.add_argument("--scores", type=Path, help="scored CSVs (default: run the backtest here)")
    ap.add_argument("--skip-days", type=float, default=1.0,
                    help="days of learning skipped at each series' start (default 1)")
    ap.add_argument("--by-series", type=float, metavar="SCORE",
                    help="also list, per series, where the onsets at SCORE come from")
    ap.add_argument("--synthetic", action="store_true",
                    help="measure on generated heavy-tailed noise instead (no data set)")
    ap.add_argument("--series", type=int, default=200, help="--synthetic: series per kind")
    ap.add_argument("--days", type=int, default=6, help="--synthetic: days per series")
    ap.add_argument("--bank", action="append", default=[], metavar="KEY=VALUE",
                    help="--synthetic: a detector parameter (a variant)")
    a = ap.parse_args()
    if a.synthetic:
        bank = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.bank)}
        rows = synthetic(series=a.series, days=a.days, **bank)
        print(f"generated noise: {a.series} series x {a.days} days of 1-minute samples per kind "
              f"(first day learning){'; ' + str(bank) if bank else ''}; alert onsets of the shown "
              f"score against p(score) x samples per direction")
        print(render_synthetic(rows))
        return 0
    labels_path = a.data / "kpi" / "labels.json"
    if not labels_path.exists():
        print(f"no KPI data set at {a.data}")
        return 2
    labels = json.loads(labels_path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        src = a.scores
        if src is None:
            sys.path.insert(0, str(ROOT / "bench"))
            from bench_kpi import run_backtest  # the same backtest as bench_kpi.py

            from sre_agent.config import AnomalySettings

            src = Path(tmp) / "sre-agent"
            run_backtest(a.data / "kpi", src, AnomalySettings())
        found = {p.name: p for p in src.rglob("*.csv")}
        scores = {name: read_scores(found[name]) for name in sorted(labels) if name in found}
    rows = calibration(scores, labels, a.skip_days)
    days = sum((t[-1] - t[0]) / 86400.0 - a.skip_days for t, _ in scores.values() if len(t))
    print(f"KPI dev set: {len(scores)} series, {rows[0]['samples']:,} label-free samples "
          f"({days:.0f} series-days after the first {a.skip_days:g}); alert onsets of the shown "
          f"score against p(score) x samples")
    print(render(rows))
    if a.by_series is not None:
        br = breakdown(scores, labels, a.skip_days, a.by_series)
        print(f"\nonsets at {a.by_series:g} per series (label-free samples): in the first week, "
              f"within 60 samples of a labelled segment, expected from the promise")
        print(f"{'series':<40} {'onsets':>6} {'week 1':>6} {'near':>5} {'expected':>9}")
        for r in br:
            print(f"{r['series']:<40} {r['onsets']:>6} {r['first_week']:>6} {r['near_label']:>5} "
                  f"{r['expected']:>9.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

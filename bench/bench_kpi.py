"""Detection quality on real labelled KPIs, next to the references, in one run.

Usage::

    python bench/bench_kpi.py [--data ../shared/devdata/kpi] [--threshold 0.7] [--keep DIR]

Scores every series of the KPI dev set (29 real web-service KPIs, 3.0 M points,
1,228 operator-labelled segments; see the data set's README) with

- ``sre-agent backtest`` (the stream's own detector, default configuration),
- the data set's ``baselines.py robust-z`` (rolling median/MAD z-score) and ``never``,

then runs the data set's own scorer (``score_anomalies.py``) on each and prints
pooled best F1 (one threshold for all series) and, at the default threshold,
precision, segment recall, false alert onsets per series per day and median delay.
It also reports the backtest's scoring rate (samples per CPU second of the
scoring loop). The data set is read from disk; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sre_agent.commands.backtest import read_csv, score_series, _plan, _write
from sre_agent.config import AnomalySettings

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"overall: bestF1=(\S+) at=(\S+) \| @\S+: P=(\S+) R=(\S+) "
                  r"onsets_per_day=(\S+) delay_med=(\S+)")


def score(scorer: Path, out: Path, threshold: float) -> dict[str, str]:
    res = subprocess.run([sys.executable, str(scorer), str(out), "--quiet",
                          "--threshold", str(threshold)], capture_output=True, text=True, check=True)
    m = LINE.search(res.stdout)
    if not m:
        raise RuntimeError(f"unexpected scorer output: {res.stdout[-500:]}")
    keys = ("bestF1", "at", "P", "R", "onsets_per_day", "delay_med")
    return dict(zip(keys, m.groups()))


def run_backtest(data: Path, out: Path, settings: AnomalySettings) -> tuple[int, float]:
    plan = _plan(data, out)
    series = [read_csv(p) for p, _ in plan]
    t0 = time.process_time()
    scores = score_series(series, settings)
    cpu = time.process_time() - t0
    for (_, dst), s, sc in zip(plan, series, scores):
        _write(dst, s, sc)
    return sum(int(s.ok.sum()) for s in series), cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "devdata" / "kpi")
    p.add_argument("--threshold", type=float, default=0.7)
    p.add_argument("--keep", type=Path, help="write the scored CSVs here (default: a temp dir)")
    a = p.parse_args()
    kpi, scorer, baselines = a.data / "kpi", a.data / "score_anomalies.py", a.data / "baselines.py"
    if not scorer.exists():
        print(f"no KPI data set at {a.data} (expected kpi/, score_anomalies.py, baselines.py)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        base = a.keep or Path(tmp)
        rows = []
        samples, cpu = run_backtest(kpi, base / "sre-agent", AnomalySettings(threshold=a.threshold))
        rows.append(("sre-agent backtest", score(scorer, base / "sre-agent", a.threshold)))
        for name in ("robust-z", "never"):
            subprocess.run([sys.executable, str(baselines), name, str(kpi), str(base / name)],
                           check=True, capture_output=True)
            rows.append((name, score(scorer, base / name, a.threshold)))
    print(f"KPI dev set ({kpi}), scorer score_anomalies.py, threshold {a.threshold}")
    print(f"{'detector':<20} {'bestF1':>7} {'(at)':>7} {'P':>6} {'R':>6} {'onsets/day':>10} {'delay_med':>9}")
    for name, r in rows:
        print(f"{name:<20} {r['bestF1']:>7} {r['at']:>7} {r['P']:>6} {r['R']:>6} "
              f"{r['onsets_per_day']:>10} {r['delay_med']:>9}")
    print(f"backtest scoring: {samples:,} samples in {cpu:.1f} CPU s = {samples / cpu:,.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

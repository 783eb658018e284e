"""Labelled detection quality: precision, recall, false-positive rate, detection delay.

Usage::

    python bench/eval_detection.py [--seed 1] [--per-kind 20] [--days 10] [--threshold 0.7 ...]

Series come from :mod:`synthetic` (every anomaly kind, 25% irregularly sampled
with gaps, AR(1) noise, daily + weekly seasonality). They run through the
stream's own :class:`~sre_agent.processors.detect.MetricDetector` with the
default ``anomaly_detection`` settings.

Scoring (event-based, as NAB does):

- an anomaly *event* is detected if an anomaly opens within
  ``[start, end + grace]`` (grace 30 min: the detector may confirm late);
- an opening outside every such window, after the first ``--learn-days``
  (default 1 day: seasonality is being learned), is a false positive;
- precision = detected events / (detected events + false openings);
- point FPR = share of normal samples (outside windows) scoring >= threshold;
- delay = first opening - anomaly start (minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import KINDS, Labelled, make_suite  # noqa: E402

from sre_agent.config import AnomalySettings  # noqa: E402
from sre_agent.processors.detect import MetricDetector  # noqa: E402

GRACE = 1800.0


def run(suite: list[Labelled], settings: AnomalySettings) -> tuple[list, np.ndarray, float]:
    det = MetricDetector(settings)
    slots, ts, vs, pos = [], [], [], []
    for s in suite:
        slot = det._slot("metric", {"series": s.name})
        slots.append(np.full(len(s.t), slot))
        ts.append(s.t)
        vs.append(s.v)
        pos.append(np.arange(len(s.t)))
    slot, t, v, p = (np.concatenate(x) for x in (slots, ts, vs, pos))
    scores = np.zeros(len(t))
    t0 = time.perf_counter()
    events = det.update_arrays(slot, t, v, p, scores=scores)
    return events, scores, time.perf_counter() - t0


def evaluate(suite: list[Labelled], threshold: float, learn_days: float = 1.0,
             verbose: bool = True) -> dict[str, float]:
    settings = AnomalySettings(threshold=threshold)
    events, scores, secs = run(suite, settings)
    opens: dict[str, list[float]] = defaultdict(list)
    for a in events:
        if a.status == "open":
            opens[a.labels["series"]].append(a.time.timestamp())
    per_kind: dict[str, dict[str, list[float]]] = {k: {"delay": [], "missed": []} for k in KINDS}
    fp = 0
    detected = total = 0
    normal_pts = normal_hits = 0
    offset = 0
    fp_by_kind: dict[str, int] = defaultdict(int)
    for s in suite:
        sc = scores[offset: offset + len(s.t)]
        offset += len(s.t)
        learn_end = s.t[0] + learn_days * 86400
        win = [(a, b + GRACE, k) for a, b, k in s.windows]
        for a, b, k in win:
            total += 1
            hits = [o for o in opens[s.name] if a <= o <= b]
            if hits:
                detected += 1
                per_kind[k]["delay"].append((min(hits) - a) / 60.0)
            else:
                per_kind[k]["missed"].append(a)
        for o in opens[s.name]:
            if o >= learn_end and not any(a <= o <= b for a, b, _ in win):
                fp += 1
                fp_by_kind[s.kind] += 1
        normal = s.t >= learn_end
        for a, b, _ in win:
            normal &= ~((s.t >= a) & (s.t <= b))
        normal_pts += int(normal.sum())
        normal_hits += int((sc[normal] >= threshold).sum())
    precision = detected / max(detected + fp, 1)
    recall = detected / max(total, 1)
    n_samples = len(scores)
    res = {"threshold": threshold, "precision": precision, "recall": recall,
           "false_openings": fp, "events": total, "detected": detected,
           "point_fpr": normal_hits / max(normal_pts, 1), "samples": n_samples,
           "us_per_sample": secs / n_samples * 1e6}
    if verbose:
        print(f"\nthreshold {threshold}: precision {precision:.3f}  recall {recall:.3f}  "
              f"false openings {fp}  point FPR {res['point_fpr']:.2e}  "
              f"({n_samples} samples, {res['us_per_sample']:.2f} µs/sample)")
        print(f"  {'kind':<12} {'recall':>7} {'delay p50':>10} {'delay p90':>10}  (minutes)")
        for k in KINDS:
            d = per_kind[k]["delay"]
            n = len(d) + len(per_kind[k]["missed"])
            p50 = f"{np.percentile(d, 50):.1f}" if d else "-"
            p90 = f"{np.percentile(d, 90):.1f}" if d else "-"
            print(f"  {k:<12} {len(d) / max(n, 1):>7.2f} {p50:>10} {p90:>10}")
        if fp_by_kind:
            print("  false openings by series kind:", dict(fp_by_kind))
    for k in KINDS:
        d = per_kind[k]["delay"]
        res[f"recall_{k}"] = len(d) / max(len(d) + len(per_kind[k]["missed"]), 1)
        res[f"delay_p50_{k}"] = float(np.percentile(d, 50)) if d else float("nan")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=20)
    ap.add_argument("--clean", type=int, default=20)
    ap.add_argument("--days", type=float, default=21.0)
    ap.add_argument("--learn-days", type=float, default=8.0)
    ap.add_argument("--step", type=float, default=60.0)
    ap.add_argument("--threshold", type=float, nargs="*", default=[0.6, 0.7, 0.8])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless precision >= 0.9 and recall >= 0.8 at 0.7")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    suite = make_suite(seed=args.seed, per_kind=args.per_kind, clean=args.clean,
                       days=args.days, step=args.step)
    print(f"{len(suite)} series, {sum(len(s.t) for s in suite)} samples, "
          f"{sum(len(s.windows) for s in suite)} labelled anomalies "
          f"(generated in {time.perf_counter() - t0:.1f}s)")
    results = [evaluate(suite, thr, args.learn_days) for thr in args.threshold]
    if args.check:
        r = next((r for r in results if r["threshold"] == 0.7), None) or evaluate(suite, 0.7, args.learn_days, verbose=False)
        ok = r["precision"] >= 0.9 and r["recall"] >= 0.8
        print(f"\nquality gate (threshold 0.7): {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

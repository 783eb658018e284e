"""Metric evidence for RCA: how far each series moved after the incident start.

One function, :func:`series_evidence`, shared by ``sre-agent rca offline`` and
the stream RCA (:mod:`.rca_engine`). It judges a series by its *own* recent
past, not by a learned baseline, so that it needs no warm-up and no state:

* **reference** — the samples in ``[start - reference, start)``: the window
  just before the incident (an hour by default);
* **after** — the samples in ``[start, start + after)``;
* **transform by kind** — latencies on a log scale (a slow call is a ratio
  of its usual time), everything else as is;
* **robust scale with floors** — ``max(1.4826·MAD, relative floor ·|median|,
  the series' quantisation step)``, on the log scale a fixed 10 %, for
  percentages a full-scale floor: a near-constant reference cannot make a
  one-step move look like a huge z;
* **direction** — only the bad way counts: up for latency, errors and
  resource use, down for availability, either way for unknown names and for
  traffic (:func:`~.rca_features.bad_direction`);
* **statistic** — an upper quantile of the window after the start (not the
  single worst sample), as a robust z against the reference median;
* **pre-existing conditions discounted** — the level after the start must
  also stand above the median of the last :data:`LOCAL` samples before it
  (``z = min(z vs the hour, z vs those samples)``): a database whose latency
  was already off before the start has not changed *at* the start;
* **chronic noise discounted** — the score is shrunk by
  ``1 / (1 + noise / NOISE_SCALE)`` with ``noise`` the 90th percentile of the
  reference's sample-to-sample jumps (``|Δ| / √2``, in z units). A spiky
  series (idle services' client latencies jump 0.004 s ↔ 20 s from minute to
  minute) jumps all the time; an earlier fault episode in the hour adds only
  two jumps, its start and its end, so it neither counts as noise nor (via
  the median/MAD) moves the reference.

Examples
--------
>>> import numpy as np
>>> t = np.arange(0, 3900, 60.0)
>>> v = 5 + 0.2 * np.sin(t)
>>> v[t >= 3600] += 40                       # a step up at the start
>>> ev = series_evidence("db", "latency_ms", t, v, start=3600.0)
>>> round(ev.z, 1), ev.direction, ev.onset         # ln(45/5) = 2.2 over a 10 % floor
(21.7, 1, 3600.0)
>>> flat = np.full(len(t), 39.99)
>>> flat[t >= 3600] = 39.0                   # 39 against 39.99: quantisation, not an outage
>>> series_evidence("api", "requests", t, flat, start=3600.0).score < 3
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .rca_features import bad_direction, metric_category

__all__ = [
    "LOG_FLOOR",
    "NOISE_SCALE",
    "REL_FLOOR",
    "SeriesEvidence",
    "WindowSpec",
    "is_outbound",
    "series_evidence",
]

#: minimum meaningful change of a non-latency series, relative to its level
REL_FLOOR = 0.1
#: minimum meaningful change of a latency, on the natural-log scale (about 10 %)
LOG_FLOOR = 0.1
#: a reference whose 90th-percentile z equals this halves a series' score
NOISE_SCALE = 3.0
#: samples just before the start whose median the window after must also exceed
LOCAL = 5
#: quantile of the window after the start used as its level (robust to one spike)
AFTER_QUANTILE = 0.5
#: a sample this far out (z) marks the onset
ONSET_Z = 3.0

# latencies measured by the *caller* of the calls a service makes: they show its
# dependencies' problems, not its own (Istio "source" reporter, client spans)
_OUTBOUND = re.compile(r"(^|_)(client|outbound|egress|upstream)(_|$)", re.I)


def is_outbound(metric: str) -> bool:
    """True for latencies of the calls a service makes (not of the calls it serves).

    >>> is_outbound("client_latency_p90"), is_outbound("latency_p90")
    (True, False)
    >>> is_outbound("inbound_latency_p50_src")
    False
    """
    return bool(_OUTBOUND.search(metric)) and metric_category(metric) == "latency"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Where the evidence windows lie around the incident start (seconds)."""

    #: history before the start used as the reference
    reference: float = 3600.0
    #: time after the start that is judged
    after: float = 300.0
    #: fewest reference samples to judge a series at all
    min_reference: int = 3


@dataclass(frozen=True, slots=True)
class SeriesEvidence:
    """How one ``(service, metric)`` series moved after the start."""

    service: str
    metric: str
    category: str
    #: +1 went up, -1 went down (the bad way for this metric), 0 no usable data
    direction: int
    #: robust z of the window after the start against the reference
    z: float
    #: 90th percentile of the reference's sample-to-sample jumps, in z units (chronic noise)
    noise: float
    #: z shrunk by the noise: what the ranking uses
    score: float
    observed: float
    expected: float
    #: first sample after the start that was this far out, if any
    onset: float | None
    n_reference: int
    outbound: bool = False


def _quantum(values: np.ndarray) -> float:
    """Smallest step between distinct values (the series' resolution, e.g. one request).

    Differences below 1e-4 of the largest value are rounding of exported
    figures (``0.0666667`` vs ``0.066667``), not steps.

    >>> round(_quantum(np.array([0.0, 0.0, 0.0666667, 0.066667, 0.133333])), 4)
    0.0667
    """
    u = np.unique(values)
    if len(u) < 2:
        return 0.0
    d = np.diff(u)
    d = d[d > 1e-4 * float(np.max(np.abs(u)))]
    return float(np.min(d)) if len(d) else 0.0


def _scale(ref: np.ndarray, med: float, kind: str, full_scale: float,
           after: np.ndarray | None = None) -> float:
    mad = 1.4826 * float(np.median(np.abs(ref - med)))
    if kind == "latency":
        floor = LOG_FLOOR
    elif kind == "availability":
        floor = 0.01 * full_scale
    else:
        floor = REL_FLOOR * abs(med)
    # the move itself is no resolution step of a bounded availability (a target down,
    # 1 -> 0, is the full scale, not "one step"): its full-scale floor already bounds it
    steps = ref if after is None or kind == "availability" else np.concatenate([ref, after])
    return max(mad, floor, _quantum(steps), 1e-12)


def series_evidence(service: str, metric: str, t: np.ndarray, v: np.ndarray, start: float,
                    spec: WindowSpec = WindowSpec()) -> SeriesEvidence:
    """Evidence of one series (``t`` ascending Unix seconds, ``v`` finite values)."""
    cat = metric_category(metric)
    ref_mask = (t >= start - spec.reference) & (t < start)
    after_mask = (t >= start) & (t < start + spec.after)
    ref_raw, after_raw = v[ref_mask], v[after_mask]
    outbound = is_outbound(metric)
    if len(ref_raw) < spec.min_reference or len(after_raw) == 0:
        last = float(after_raw[-1]) if len(after_raw) else math.nan
        return SeriesEvidence(service, metric, cat, 0, 0.0, 0.0, 0.0, last, math.nan, None,
                              len(ref_raw), outbound)
    kind = "latency" if cat == "latency" else ("availability" if cat == "availability" else "")
    full = 1.0 if float(np.max(np.abs(ref_raw))) <= 1.0 else 100.0
    if kind == "latency":
        eps = max(1e-12, 0.01 * float(np.median(np.abs(ref_raw))))
        ref, after = np.log(np.maximum(ref_raw, 0) + eps), np.log(np.maximum(after_raw, 0) + eps)
    else:
        ref, after = ref_raw, after_raw
    want = bad_direction(metric)
    signs = (1,) if want == "up" else (-1,) if want == "down" else (1, -1)
    best: tuple[float, float, float, int, float | None, float, float] | None = None
    for sign in signs:
        r, a = sign * ref, sign * after
        med = float(np.median(r))
        scale = _scale(r, med, kind, full, a)
        level = float(np.quantile(a, AFTER_QUANTILE, method="higher"))
        z = (level - med) / scale
        # chronic noise: how far the series jumps from one sample to the next in the
        # reference (an earlier episode adds two jumps, a spiky series jumps all the time)
        dz = np.abs(np.diff(r)) / (math.sqrt(2.0) * scale)
        noise = max(0.0, float(np.quantile(dz, 0.9))) if len(dz) else 0.0
        # a condition that predates the start: judged against the last samples before it
        z = min(z, (level - float(np.median(r[-LOCAL:]))) / scale)
        score = max(0.0, z) / (1.0 + noise / NOISE_SCALE)
        za = (a - med) / scale
        hit = np.nonzero(za >= max(ONSET_Z, 0.5 * z))[0]
        onset = float(t[after_mask][hit[0]]) if len(hit) and z > 0 else None
        if best is None or score > best[0]:
            best = (score, z, noise, sign, onset, level, med)
    assert best is not None
    score, z, noise, sign, onset, level, med = best
    if kind == "latency":
        eps = max(1e-12, 0.01 * float(np.median(np.abs(ref_raw))))
        observed, expected = math.exp(sign * level) - eps, math.exp(sign * med) - eps
    else:
        observed, expected = sign * level, sign * med
    return SeriesEvidence(service, metric, cat, sign if z > 0 else 0, round(z, 4),
                          round(noise, 4), round(score, 4), observed, expected, onset,
                          len(ref_raw), outbound)

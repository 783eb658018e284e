"""Calibrated online detection for many series at once: a row of floats per series.

The score of a sample is its *surprisal* under the series' own residual
distribution, so the same score means the same rarity on every series whatever
its scale, noise, tail or sampling interval.

Per series, one step (score first, then learn):

1. **expected value** — a robust local level plus, when it helps, a daily
   profile: ``expected = level + profile(phase)``. The profile has
   :data:`SLOTS` (48) half-hour steps (a square wave switching on the hour or
   half hour is represented exactly; a smooth cycle is off by at most its
   change over 30 minutes, which the local level absorbs), learned per unit of
   *time* (the phase comes from the timestamp, so gaps and irregular sampling
   are fine) as a running mean of the first visits and then over about
   ``cycles`` days, from every sample winsorised at ``clip`` scales: a
   departure that recurs at the same phase is learned, a one-off one barely.
   Whether the profile is used is decided per series, online: the profile-based
   prediction must have a clearly lower mean absolute one-step error than the
   plain level (``seasonal_gain``), so a series without a daily cycle runs
   without one and a series that acquires one starts using it.
2. **scale** — an exponentially weighted mean absolute residual over about 20
   samples (the local volatility; winsorised at ``clip`` scales, learned at a
   tenth of the rate while the sample is anomalous, i.e. its point score reaches
   ``gate``, 0.6), floored by
   (a) ``rel_floor`` x the series' typical magnitude (a change of a fraction of
   a percent of the level is trivia), (b) a tracked high quantile of
   ``|residual|`` / 4.66 so that a series that is mostly one value (counts that
   are 0 most of the time, near-constant gauges) measures deviations against
   its *typical* excursion, not against a collapsed spread, (c) the data's
   resolution (``res_floor``: the grain of its steps; that quantile decays
   between excursions days apart, the grain does not).
3. **tail probability** — with ``z = residual / scale`` and, per direction, the
   fraction ``lam`` of samples beyond ``u`` (2) scales, the mean excess ``beta``
   beyond it and the generalised Pareto shape ``xi`` of the excesses (peaks over
   threshold: ``p = lam * (1 + xi y / sigma) ** (-1 / xi)``, ``y = |z| - u``,
   ``sigma`` from the excesses' median (``xi_scale``); the shape from the share of
   excesses beyond 4 times their median (``xi_est``), shrunk toward 0 by its own noise,
   bounded to [0, ``xi_max``] (0.5); shape 0 is the exponential tail ``lam * exp(-y / beta)``); all are learned from the
   series' own history (anomalous excesses count with a lower weight and are
   winsorised, so a burst of anomalies does not teach that anomalies are
   normal, but a series whose excursions are frequent learns a wide tail). The
   surprisal is ``s = -log10 p`` (below ``u``: ``s`` grows smoothly from 0).
   With ``decluster`` (the default, see docs/cognition.md) the exceedances are
   runs-declustered: consecutive samples beyond ``u`` are one excursion, counted
   once for ``lam`` at its first sample, whose peak teaches ``beta`` once when it
   ends; ``p`` is then the chance per sample that an excursion starts and reaches
   ``|z|`` (what governs how often an alert opens).
4. **score** — ``s / (s + c)`` with ``c`` = :data:`SURPRISAL_HALF` (1.5): it
   never saturates (1.0 is unreachable; 0.95 needs ``p = 1e-28.5``), is
   monotone in the tail probability, and the default threshold 0.7 means
   ``p = 10**-3.5 = 3.2e-4`` per sample and direction: on a series whose residuals
   follow the fitted tail, an alert either way opens on about one sample in 1,600
   (0.9 a day at one sample a minute; ``bench/calibration_kpi.py`` measures it). The user-facing score holds the peak: ``shown = max(score,
   decay * previous shown)`` so an episode cannot flap around the threshold; within a
   cluster of excursions (``realert_gap``) only an escalation can raise it again.
5. **previous regime** — while the series departs from its baseline, the baseline
   before the departure is kept (``regime_hold``); a sample anomalous under the
   current baseline but calm under the previous one restores it (a return).

Rows of samples not after the series' last one (``t <= last_t``) are neither
scored nor learned (score 0). A series scores 0 during its first ``warmup``
samples.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> bank = TailBank(warmup=30)
>>> s = bank.add()
>>> for i in range(600):
...     _ = bank.step(np.array([s]), np.array([1.7e9 + 60 * i]), np.array([100 + rng.normal()]))
>>> out = bank.step(np.array([s]), np.array([1.7e9 + 60 * 600]), np.array([100.5]), learn=False)
>>> bool(out.score[0] < 0.5)
True
>>> out = bank.step(np.array([s]), np.array([1.7e9 + 60 * 600]), np.array([130.0]))
>>> bool(0.8 < out.score[0] < 0.9), round(float(out.expected[0]))
(True, 100)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rows import RowBank

__all__ = ["DETECTORS", "SLOTS", "SURPRISAL_HALF", "TailBank", "TailOutput", "surprisal_of",
           "score_of", "WIDTH", "USER", "XIU", "XID"]

#: per-sample contributions reported with an anomaly
DETECTORS = ("point", "held")
#: daily profile slots (half hours)
SLOTS = 48
#: weekly profile slots (half hours of the week)
WSLOTS = 7 * SLOTS
WEEK = 604_800.0
#: the surprisal at which the score is 0.5; score = s / (s + SURPRISAL_HALF)
SURPRISAL_HALF = 1.5
_LN10 = math.log(10.0)

# ---- row layout (float64 columns)
(N, LAST_T, DTAVG, LEVEL, LEVN, SCALE, Q98, MAGN, LU, BU, LD, BD, REF, ES, EN, HELD,
 FIRST_T, RUN, NANOM, XIU, MU, XID, MD, LEVW, EW, OLEV, OLEVN, OSC, OQ98, OLEVW, OT, GAP, CPK, SLEV, SLEVN, MEDU, MEDD, LASTV, RES) = range(39)
#: the columns the previous regime (OLEV ... OLEVW) copies
_SYNCED = [LEVEL, LEVN, SCALE, Q98, LEVW]
#: columns free for the detector's alert bookkeeping (open flag, opened_t, ...)
USER = 39
USER_COLS = 4
PROF = USER + USER_COLS  # SLOTS profile offsets
PROF_T = PROF + SLOTS  # seconds learned per slot (capped)
WPROF = PROF_T + SLOTS  # WSLOTS weekly profile offsets (read and written in place)
WIDTH = WPROF + WSLOTS


def _learn_runs(X: np.ndarray, cols: tuple[int, int, int, int], lu: np.ndarray, bu: np.ndarray,
                ld: np.ndarray, bd: np.ndarray, z: np.ndarray, pk: np.ndarray, knot: float,
                end_u: np.ndarray, end_d: np.ndarray, a_t: np.ndarray, lam_min: float,
                m2: tuple[float, np.ndarray, np.ndarray] | None = None,
                quantile: bool = False) -> None:
    """Runs-declustered tail update at ``knot``: an excursion's first sample beyond it counts
    for the rate; its peak ``pk`` teaches the mean excess (and, with ``m2``, the mean squared
    excess, columns ``MU``/``MD``) when the excursion ends. The rate and excess arguments are
    the values before this sample (``X``'s columns are written)."""
    ilu, ibu, ild, ibd = cols
    a_bu = np.minimum(np.maximum(a_t / np.maximum(lu, lam_min), a_t) * 0.5, 0.5)
    a_bd = np.minimum(np.maximum(a_t / np.maximum(ld, lam_min), a_t) * 0.5, 0.5)
    xu = np.minimum(pk - knot, 10.0 * bu)
    xd = np.minimum(-pk - knot, 10.0 * bd)
    new_bu = np.clip(bu + a_bu * (xu - bu), 0.2, 50.0)
    new_bd = np.clip(bd + a_bd * (xd - bd), 0.2, 50.0)
    eu, ed = end_u & (pk > knot), end_d & (pk < -knot)
    X[:, ibu] = np.where(eu, new_bu, bu)
    X[:, ibd] = np.where(ed, new_bd, bd)
    if m2 is not None:  # the shape, from the excesses' mean and mean square, at excursion ends
        xi_max, mu, md = m2
        ee = eu | ed
        if ee.any():
            e = np.flatnonzero(ee)
            ue = eu[e]  # an excursion ends on one side only
            a_e = np.where(ue, a_bu[e], a_bd[e])
            x_e = np.where(ue, xu[e], xd[e])
            m_e = np.where(ue, mu[e], md[e])
            c_m = np.where(ue, MU, MD)
            c_x = np.where(ue, XIU, XID)
            if quantile:  # the share beyond _QK medians, the median by stochastic approximation
                c_q = np.where(ue, MEDU, MEDD)
                q_e = X[e, c_q]
                m = m_e + a_e * ((x_e > _QK * q_e) - m_e)
                X[e, c_q] = q_e * np.exp(np.where(x_e > q_e, _QSTEP, -_QSTEP) * a_e)
                xi = _shape_q(m, xi_max, a_e)
            else:
                m = m_e + a_e * (x_e * x_e - m_e)
                xi = _shape(np.where(ue, new_bu[e], new_bd[e]), m, xi_max, a_e)
            X[e, c_m] = m
            X[e, c_x] = xi
    X[:, ilu] = lu + a_t * (((z > knot) & (pk <= knot)) - lu)
    X[:, ild] = ld + a_t * (((z < -knot) & (pk >= -knot)) - ld)


def _shape(beta: np.ndarray, m2: np.ndarray, xi_max: float, a_b: np.ndarray) -> np.ndarray:
    """Generalised Pareto shape from the excesses' mean ``beta`` and mean square ``m2``
    (method of moments: ``(1 - mean**2 / variance) / 2``), shrunk toward 0 by its noise
    (positive-part James-Stein: ``xi * xi**2 / (xi**2 + a_b)``, ``a_b`` the weight of one
    excess in the running means, about 1 / the excesses they hold, the estimate's variance),
    bounded to [1e-9, xi_max]."""
    b2 = beta * beta
    xi = np.maximum(0.5 - 0.5 * b2 / np.maximum(m2 - b2, 1e-12), 0.0)
    x2 = xi * xi
    return np.minimum(np.maximum(xi * x2 / (x2 + a_b), 1e-9), xi_max)


#: the shape from the share of excesses beyond ``_QK`` medians (a robust, quantile-based
#: estimator: one excess moves it by at most its weight, however large)
_QK = 4.0
_XG = np.linspace(0.0, 0.6, 601)


def _frac_beyond(xi: np.ndarray) -> np.ndarray:
    """Share of generalised Pareto excesses (shape ``xi`` >= 0) beyond ``_QK`` medians."""
    xi = np.maximum(xi, 1e-9)
    return (1.0 + _QK * np.expm1(xi * math.log(2.0))) ** (-1.0 / xi)


_FG = _frac_beyond(_XG)
#: the median's log step per excess (x its weight): 1 / (2 f), f ~ 1/3 the density of the
#: log excess at its median (0.35 for the exponential, 0.31 at shape 1/3), so that it
#: converges like a running mean of the same weight
_QSTEP = 1.5
#: variance of the shape estimate per excess (delta method: F (1 - F) / F'(xi)**2)
_VG = _FG * (1.0 - _FG) / np.gradient(_FG, _XG) ** 2
_F0 = float(_FG[0])


def _shape_q(f: np.ndarray, xi_max: float, a_b: np.ndarray) -> np.ndarray:
    """Shape from the share ``f`` of excesses beyond ``_QK`` medians (inverse of
    :func:`_frac_beyond`), shrunk toward 0 by its noise (positive-part James-Stein with the
    estimate's variance ``_VG(xi) a_b / (2 - a_b)``), bounded to [1e-9, xi_max]."""
    xi = np.interp(f, _FG, _XG)
    x2 = xi * xi
    v = np.interp(xi, _XG, _VG) * a_b / (2.0 - a_b)
    return np.minimum(np.maximum(xi * x2 / (x2 + v), 1e-9), xi_max)


#: a grain below this fraction of the values' magnitude is no resolution (continuous values)
_GRAIN_MIN = 1e-6


def _grain(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Approximate greatest common divisor of the grain ``g`` (0: none yet) and a step
    ``d`` > 0 (Euclid on floats: a remainder below 1e-6 of the divisor is 0)."""
    a = np.maximum(g, d)
    b = np.where(g > 0, np.minimum(g, d), 0.0)
    for _ in range(64):
        go = b > 1e-6 * a
        if not go.any():
            break
        r = np.fmod(a, np.where(go, b, 1.0))
        a, b = np.where(go, b, a), np.where(go, r, 0.0)
    return a


def _gpd_s(s0: np.ndarray, y: np.ndarray, beta: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Surprisal of an excess ``y`` beyond the knot (whose surprisal is ``s0``) under the
    generalised Pareto tail of mean excess ``beta`` and shape ``xi`` (> 0)."""
    return s0 + np.log1p(xi * y / (beta * (1.0 - xi))) / (xi * _LN10)


_LN2 = math.log(2.0)


def _med_ratio(xi):
    """``sigma / median`` of a generalised Pareto law of shape ``xi`` (> 0):
    ``xi / (2**xi - 1)`` (1 / ln 2 for the exponential)."""
    return xi / np.expm1(xi * _LN2)


def _beta_of_median(med: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Mean excess ``sigma / (1 - xi)`` of the generalised Pareto law with median excess
    ``med`` and shape ``xi`` (the scale from the median: a bounded-influence fit)."""
    xi = np.maximum(xi, 1e-9)
    return med * _med_ratio(xi) / (1.0 - xi)


#: Gauss-Hermite nodes (in standard deviations) and weights of the shape's uncertainty
_GH_NODES = np.array([-math.sqrt(3.0), 0.0, math.sqrt(3.0)])
_GH_W = np.log(np.array([1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0]))


def _gpd_s_pred(s0: np.ndarray, y: np.ndarray, beta: np.ndarray, xi: np.ndarray,
                se: np.ndarray, xi_top: float, med_anchor: bool = False) -> np.ndarray:
    """Predictive surprisal of an excess ``y`` beyond the knot: the generalised Pareto tail
    of mean excess ``beta`` averaged over the shape's uncertainty (normal, mean ``xi``,
    standard deviation ``se``; 3-point Gauss-Hermite, nodes bounded to [0, ``xi_top``])
    at the fitted scale ``beta (1 - xi)``; with ``med_anchor`` each node's scale keeps the
    fitted law's median excess (what the excesses pin down), not its scale."""
    sig = beta * (1.0 - xi)
    med = sig / _med_ratio(np.maximum(xi, 1e-9)) if med_anchor else None
    acc = None
    for c, lw in zip(_GH_NODES, _GH_W):
        xk = np.clip(xi + c * se, 1e-9, xi_top)
        if med_anchor:
            sig = med * _med_ratio(xk)
        lp = lw - np.log1p(xk * y / sig) / xk
        acc = lp if acc is None else np.logaddexp(acc, lp)
    return s0 - acc / _LN10


_GH_NODES_F = tuple(float(c) for c in _GH_NODES)
_GH_W_F = tuple(float(w) for w in _GH_W)


def _pred_excess(ds: float, sig: float, xi: float, se: float, xi_top: float,
                 y0: float, med_anchor: bool = False) -> float:
    """The excess ``y`` whose predictive surprisal (:func:`_gpd_s_pred`) is ``ds`` above the
    knot's, in scalar arithmetic (the console's band asks it once per charted point).

    ``L(y) = log sum_k w_k (1 + x_k y / sig)**(-1 / x_k)`` is decreasing and convex (a
    log-sum-exp of convex terms), so Newton's method from a point left of the root climbs
    to it monotonically; ``y0`` (the point estimate's quantile) starts it when it lies left
    of the root, else 0 does. ``dL/dy = -sum_k p_k / (sig + x_k y)`` with ``p_k`` the terms'
    shares.
    """
    target = -ds * _LN10
    xks = [min(max(xi + c * se, 1e-9), xi_top) for c in _GH_NODES_F]
    if med_anchor:  # each node keeps the median excess (see _gpd_s_pred)
        med = sig * math.expm1(max(xi, 1e-9) * _LN2) / max(xi, 1e-9)
        sigs = [med * xk / math.expm1(xk * _LN2) for xk in xks]
    else:
        sigs = [sig] * len(xks)

    def ell(y: float) -> tuple[float, float]:
        terms = [lw - math.log1p(xk * y / sk) / xk for xk, sk, lw in zip(xks, sigs, _GH_W_F)]
        m = max(terms)
        ws = [math.exp(t - m) for t in terms]
        tot = sum(ws)
        slope = -sum(w / (sk + xk * y) for w, xk, sk in zip(ws, xks, sigs)) / tot
        return m + math.log(tot), slope

    y = y0 if y0 > 0.0 and ell(y0)[0] >= target else 0.0
    for _ in range(200):
        v, d = ell(y)
        if v <= target or d >= 0.0:
            break
        step = (v - target) / -d
        y += step
        if step <= 1e-12 * (1.0 + y) or y >= 1e200:
            break
    return min(y, 1e200)


def surprisal_of(score: float) -> float:
    """Surprisal ``-log10 p`` that a score stands for.

    >>> round(surprisal_of(0.7), 2), round(surprisal_of(0.5), 2)
    (3.5, 1.5)
    """
    score = min(max(score, 0.0), 1.0 - 1e-12)
    return SURPRISAL_HALF * score / (1.0 - score)


def score_of(surprisal: float) -> float:
    """Score of a surprisal (``s / (s + c)``).

    >>> score_of(3.5)
    0.7
    """
    s = max(surprisal, 0.0)
    return s / (s + SURPRISAL_HALF)


@dataclass(slots=True)
class TailOutput:
    """Per-sample results of one step (arrays aligned with the inputs)."""

    score: np.ndarray  #: shown score in [0, 1): max(point score, decayed previous)
    expected: np.ndarray
    scale: np.ndarray  #: the residual scale (sigma-like) used for z and the band
    deviation: np.ndarray  #: signed z of the sample
    parts: np.ndarray  #: (k, 2): point score, shown score
    direction: np.ndarray  #: +1 up, -1 down
    warm: np.ndarray  #: bool: past warm-up and in order
    point: np.ndarray  #: this sample's own score (no hold)


class TailBank(RowBank):
    """Rows of per-series state; :meth:`step` scores and learns one sample per series.

    Parameters
    ----------
    warmup
        Samples learned before a series may score above 0.
    alpha
        Per-sample rate of the local level (0.1: about ten samples).
    scale_rate
        Per-sample rate of the mean absolute residual.
    tail_rate
        Per-sample rate of the tail fit (``lam``; ``beta`` per exceedance).
    u
        Peaks-over-threshold threshold, in scales.
    clip
        Residuals are winsorised at ``clip`` scales before they are learned.
    gate
        A sample whose point score is at least ``gate`` is anomalous: it teaches
        the level, profile and scale at ``gated`` times the usual rate.
    cycles
        Days over which the daily profile is averaged once established.
    seasonal_gain
        The profile is used when its mean absolute error is below this
        fraction of the plain level's.
    rel_floor
        Scale floor relative to the series' typical magnitude.
    decay
        Per-sample decay of the shown score's held peak.
    counts
        The series are event counts: the scale is at least Poisson's
        ``sqrt(expected + 1)``.
    run_rho, run_gain
        Consecutive same-side surprisals add up with this persistence
        (``run = s + run_rho * previous run``; 0 turns it off) and
        ``run_gain * run`` competes with the sample's own surprisal.
    reseed_after
        After this many consecutive anomalous samples the baseline learns at
        the full rate again: a persistent change becomes the new normal (0: never).
    tail_gate
        Weight of an anomalous sample's excess in the tail fit (without ``decluster``).
    xi_max
        Upper bound of the generalised Pareto shape of the tail beyond ``u`` (0: the
        exponential tail). The shape is the series' own, per direction, from the
        (declustered) excesses (``xi_est``), started at the exponential's (``xi = 0``),
        bounded to ``[0, xi_max]``: a global statement of how far a fitted shape is
        trusted (0.5: finite variance; docs/cognition.md).
    xi_scale
        ``"median"``: the tail's scale is the one whose generalised Pareto law has the
        excesses' tracked median, ``med * xi / (2**xi - 1)``, and the predictive tail's shape
        nodes keep that median (a fit from quantiles alone, bounded influence; needs
        ``xi_est="quantile"``); ``"mean"``: ``beta * (1 - xi)`` from the winsorised mean
        excess, every node at that scale (before 8 Dec 2026). Scoring only: the stored
        state is the same.
    profile_gated
        Rate factor of the daily profile for anomalous samples (recurring
        departures at the same phase must still be learned: square waves).
    decluster
        Fit the tail to runs-declustered exceedances (one per excursion beyond
        ``u``, its peak); ``False`` counts every sample beyond ``u``. Incompatible
        with ``run_rho`` (both keep their state in the same column).
    weekly
        Add a weekly profile (:data:`WSLOTS` half hours, 336 more columns) with its own
        level; it is used, after a whole week, when its one-step error is clearly below
        the better of the plain level and the daily profile (the period per series).
    excursion_hold
        With ``decluster``: per-sample fade of the shown score's held peak while the
        excursion lasts (instead of ``decay``; 0: off).
    scale_gate
        The ``gate`` of the scale alone (``None``: ``gate``): a sample whose point
        score is below it teaches the scale at the full rate.
    err_tau
        Seconds over which the one-step errors that choose the profile are averaged
        (0: ``err_rate`` per sample); at least a cycle, so the choice does not lapse
        between a square wave's edges.
    calm_decay, calm_z
        Option (0: off): the shown score's held peak fades at ``calm_decay`` per sample
        once the sample is back within ``calm_z`` scales.
    regime_hold
        Seconds the previous regime (the baseline at the last sample calm under both it
        and the current one) is kept while the series departs from it; a sample anomalous
        under the current baseline but calm under the previous one restores it (a return
        is no new anomaly); the profile is then chosen from plain levels that never return.
        0: off.
    xi_unc
        The tail beyond ``u`` is the predictive one: averaged over the shape's uncertainty
        (normal around the fitted shape with the standard error of a moment fit from the
        excesses the running means hold, ``sqrt(a_b / (2 - a_b))``, times ``xi_unc``;
        3-point Gauss-Hermite). A shape fitted from few excesses is not extrapolated as
        if exact: near the knot nothing changes, far beyond it the tail is heavier the
        less evidence there is. 0: the point estimate (state v8).
    xi_top
        Bound of the shapes the uncertainty reaches (0.5: finite variance, the most a
        moment fit can describe).
    lam_kt
        The exceedance rate read by the score is at least ``lam_kt`` x the fit's rate
        (``max(tail_rate, 1 / (n + prior_n))``): an exponentially weighted rate without
        events decays toward 0, but its window (1 / rate samples) tells a rate only down to
        about half an event in it (Krichevsky-Trofimov, 0.5). With it, a series that never
        varied (scale at the floor's epsilon) scores its first change as its rank among the
        samples seen, ``p = 1 / (n + 2)``. 0: off (state v8).
    realert_gap
        Excursions beyond ``u`` separated by at most this many calm samples are one
        cluster; within it a sample no worse than the cluster's peak point score cannot
        raise the shown score (one alert per burst, a new one only if it grows). 0: off.
    """

    width = WPROF  #: columns of a row without the weekly profile (``weekly=False``)

    def __init__(self, warmup: int = 30, alpha: float = 0.1, scale_rate: float = 0.05,
                 tail_rate: float = 2e-4, u: float = 2.0, clip: float = 6.0, gate: float = 0.6,
                 gated: float = 0.1, cycles: float = 4.0, seasonal_gain: float = 0.9,
                 rel_floor: float = 0.002, decay: float = 0.9, counts: bool = False,
                 run_rho: float = 0.0, run_gain: float = 0.8, reseed_after: int = 0,
                 tail_gate: float = 1.0, xi_max: float = 0.5, profile_gated: float = 1.0,
                 interpolate: bool = False, decluster: bool = True, weekly: bool = False,
                 excursion_hold: float = 0.0, err_tau: float = 86400.0,
                 scale_gate: float | None = None, calm_decay: float = 0.0, calm_z: float = 1.0,
                 regime_hold: float = 86400.0, realert_gap: int = 5,
                 xi_unc: float = 1.0, xi_top: float = 0.5, lam_kt: float = 0.5,
                 xi_est: str = "quantile", res_floor: float = 1.0, xi_scale: str = "median",
                 capacity: int = 1024) -> None:
        if decluster and run_rho > 0:
            raise ValueError("decluster keeps the excursion peak where run_rho keeps its run: "
                             "use one of them")
        self.decluster = decluster
        if excursion_hold > 0 and not decluster:
            raise ValueError("excursion_hold needs decluster (the excursion's peak is its state)")
        self.excursion_hold = excursion_hold
        self.calm_decay = calm_decay
        self.calm_z = calm_z
        self.regime_hold = regime_hold
        self.realert_gap = realert_gap
        self.weekly = weekly
        self.width = WIDTH if weekly else WPROF  # the weekly profile: 336 more columns
        self.warmup = warmup
        self.alpha = alpha
        self.scale_rate = scale_rate
        self.tail_rate = tail_rate
        self.u = u
        self.clip = clip
        self.gate = gate
        #: the point score from which a sample teaches the scale at ``gated`` times the rate
        self.scale_gate = gate if scale_gate is None else scale_gate
        self.gated = gated
        self.cycles = cycles
        self.seasonal_gain = seasonal_gain
        self.rel_floor = rel_floor
        self.decay = decay
        self.counts = counts
        self.run_rho = run_rho
        self.run_gain = run_gain
        self.tail_gate = tail_gate
        self.xi_max = xi_max
        if xi_est not in ("quantile", "moments"):
            raise ValueError("xi_est is 'quantile' or 'moments'")
        self.xi_est = xi_est
        self._xq = xi_est == "quantile"
        if xi_scale not in ("median", "mean"):
            raise ValueError("xi_scale is 'median' or 'mean'")
        self.xi_scale = xi_scale
        #: the tail's scale from the excesses' median (needs the quantile estimator's medians)
        self._xmed = xi_scale == "median" and self._xq and xi_max > 0
        self.xi_unc = xi_unc
        self.lam_kt = lam_kt
        self.xi_top = xi_top
        self.profile_gated = profile_gated
        self.interpolate = interpolate
        self._interp = 1.0 if interpolate else 0.0
        self._shift = 0.5 if interpolate else 0.0
        self.reseed_after = reseed_after
        self.prior_n = 300.0  #: weight (samples) of the prior tail before data dominate
        self.lam0 = 0.023  #: prior exceedance rate per side (a normal tail beyond 2 sigma)
        self.beta0 = 0.6  #: prior mean excess (scales), a little heavier than normal
        self.err_rate = 0.002  #: rate of the one-step error averages (profile or not)
        #: if > 0, the error averages are over this many seconds instead (a whole cycle)
        self.err_tau = err_tau
        self.q98_floor = 1.0 / 4.66  #: scale >= this x the 98th percentile of |residual|
        self.q98_decay = 0.02  #: per-sample decay of that quantile (x its rate) below it
        #: scale >= this x the data's resolution (smallest non-zero step seen; 0: off)
        self.res_floor = res_floor
        #: prior mean squared excess: the exponential's (2 beta0**2), i.e. shape 0
        self.m20 = 2.0 * self.beta0 * self.beta0
        #: the surprisal at which the point score reaches ``gate``
        self._s_gate = SURPRISAL_HALF * gate / (1.0 - gate)
        super().__init__(capacity)

    def row_of(self, data: bytes) -> np.ndarray:
        """A row saved by :meth:`row_bytes` for this bank's layout (``ValueError`` if not)."""
        if len(data) != self.width * 8:
            raise ValueError(f"state has {len(data)} bytes, expected {self.width * 8}")
        return np.frombuffer(data, dtype="<f8").astype(np.float64)

    def row_of_v8(self, data: bytes) -> np.ndarray:
        """A row saved by detector state version 8 (before ``MEDU`` ... ``RES``; the shape's
        column ``MU``/``MD`` held the excesses' mean square) in this layout: the medians and
        shares beyond ``_QK`` medians are those of the stored shape and mean excess (a
        generalised Pareto tail), the resolution is learned from the next step (``RES`` < 0:
        the last value is unknown). ``ValueError`` if the size does not fit."""
        if len(data) != (self.width - 4) * 8:
            raise ValueError(f"v8 state has {len(data)} bytes, expected {(self.width - 4) * 8}")
        old = np.frombuffer(data, dtype="<f8").astype(np.float64)
        row = np.concatenate([old[:MEDU], np.zeros(4), old[MEDU:]])
        for cx, cm, cq, cb in ((XIU, MU, MEDU, BU), (XID, MD, MEDD, BD)):
            xi, beta = max(float(row[cx]), 1e-9), float(row[cb])
            if row[N] == 0:
                xi, beta = 1e-9, self.beta0
            row[cq] = beta * (1.0 - xi) * math.expm1(xi * math.log(2.0)) / xi  # the median
            if self._xq:
                row[cm] = float(_frac_beyond(np.array([xi]))[0])
        row[RES] = -1.0
        return row

    def _floor(self, row: np.ndarray, expected: float = 0.0) -> float:
        fl = max(self.rel_floor * float(row[MAGN]), float(row[Q98]) * self.q98_floor,
                 float(row[RES]) * self.res_floor)
        if self.counts:
            fl = max(fl, math.sqrt(abs(expected) + 1.0))
        return fl + 1e-12

    def expected_at(self, slot: int, t: float) -> tuple[float, float]:
        """``(expected, scale)`` of a series at time ``t``, without a sample (cheap)."""
        row = self.S[slot]
        x = (t % 86400.0) * (SLOTS / 86400.0) - self._shift
        fl = math.floor(x)
        f = (x - fl) * self._interp
        b0 = int(fl) % SLOTS
        h0, h1 = float(row[PROF + b0]), float(row[PROF + (b0 + 1) % SLOTS])
        use = bool(row[ES] < row[EN] * self.seasonal_gain and t - row[FIRST_T] >= 86400.0)
        if use:
            exp = float(row[LEVEL]) + h0 + f * (h1 - h0)
        else:
            exp = float(row[LEVN])
        if self.weekly and t - row[FIRST_T] >= WEEK and \
                row[EW] < (row[ES] if use else row[EN]) * self.seasonal_gain:
            w = int((t % WEEK) * (1.0 / 1800.0)) % WSLOTS
            exp = float(row[LEVW]) + float(row[WPROF + w])
        return exp, max(float(row[SCALE]) * 1.2533, self._floor(row, exp))

    def band_halfwidth(self, slot: int, score: float) -> float:
        """How far from the expected value a sample must be to reach ``score`` (up side)."""
        row = self.S[slot]
        _, scale = self.expected_at(slot, float(row[LAST_T]))
        n = float(row[N])
        lam = max(float(row[LU]), 1e-9) if n else self.lam0
        if self.lam_kt > 0:
            lam = max(lam, self.lam_kt * max(self.tail_rate, 1.0 / (n + self.prior_n)))
        beta = float(row[BU]) if n else self.beta0
        if self._xmed and n:
            beta = float(_beta_of_median(np.array([float(row[MEDU])]),
                                         np.array([max(float(row[XIU]), 1e-9)]))[0])
        s = surprisal_of(score)
        s0 = -math.log10(lam)
        if s <= s0:
            z = self.u * math.sqrt(s / s0)
        elif self.xi_max > 0:  # the generalised Pareto tail's quantile
            xi = max(float(row[XIU]), 1e-9) if n else 1e-9
            z = self.u + beta * (1.0 - xi) * math.expm1(xi * (s - s0) * _LN10) / xi
            if self.xi_unc > 0:  # the predictive tail's quantile
                a_t = max(self.tail_rate, 1.0 / (n + self.prior_n))
                a_b = min(max(a_t / max(lam, 1e-3), a_t) * 0.5, 0.5)
                se = self.xi_unc * math.sqrt(a_b / (2.0 - a_b))
                if self._xq:
                    se *= math.sqrt(float(np.interp(xi, _XG, _VG)))
                z = self.u + _pred_excess(s - s0, beta * (1.0 - xi), xi, se, self.xi_top,
                                          z - self.u, self._xmed)
        else:
            z = self.u + (s - s0) * beta * _LN10
        return z * scale

    def _gpd_tail(self, s0: np.ndarray, za: np.ndarray, beta: np.ndarray, xi: np.ndarray,
                  lam: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Surprisal of ``|z|`` under the generalised Pareto tail beyond ``u`` (below it
        ``s0 (|z| / u)**2``), with ``xi_unc`` the predictive one: averaged over the shape's
        uncertainty, whose standard error is that of a moment fit from the excesses the
        running means hold (``1 / n_eff``, ``n_eff = (2 - a_b) / a_b``, ``a_b`` the weight of
        one excess, as learned)."""
        y = za - self.u
        zu = za / self.u
        s = np.where(y > 0.0, _gpd_s(s0, np.maximum(y, 0.0), beta, xi), s0 * zu * zu)
        if self.xi_unc > 0:
            b = np.flatnonzero(y > 0.0)
            if b.size:
                a_t = np.maximum(self.tail_rate, 1.0 / (n[b] + self.prior_n))
                a_b = np.minimum(np.maximum(a_t / np.maximum(lam[b], 1e-3), a_t) * 0.5, 0.5)
                se = self.xi_unc * np.sqrt(a_b / (2.0 - a_b))
                if self._xq:  # the quantile estimator's own variance per excess
                    se = se * np.sqrt(np.interp(xi[b], _XG, _VG))
                s[b] = _gpd_s_pred(s0[b], y[b], beta[b], xi[b], se, self.xi_top, self._xmed)
        return s

    # ------------------------------------------------------------ the step
    def step(self, slots: np.ndarray, t: np.ndarray, v: np.ndarray, learn: bool = True) -> TailOutput:
        """Score, then (if ``learn``) learn, one sample for each of ``slots`` (distinct)."""
        X = self.S[slots, :WPROF]  # the weekly profile is read and written in place
        k = len(slots)
        ar = np.arange(k)
        n = X[:, N]
        fresh = n == 0
        any_fresh = bool(fresh.any())
        ok = t > X[:, LAST_T]
        if any_fresh:
            ok |= fresh
        all_ok = bool(ok.all())
        # daily profile, linear between slot centres
        x = (t % 86400.0) * (SLOTS / 86400.0) - self._shift
        fl = np.floor(x)
        f = (x - fl) * self._interp
        b0 = fl.astype(np.int64) % SLOTS
        b1 = (b0 + 1) % SLOTS
        c0, c1 = PROF + b0, PROF + b1
        h0, h1 = X[ar, c0], X[ar, c1]
        prof = h0 + f * (h1 - h0)
        # the profile is considered once the series has seen a whole day (a trend seen
        # for a few hours must not pass for a daily shape)
        age = t - X[:, FIRST_T]
        use = (X[:, ES] < X[:, EN] * self.seasonal_gain) & (age >= 86400.0)
        lev, levn, magn = X[:, LEVEL], X[:, LEVN], X[:, MAGN]
        if any_fresh:
            lev = np.where(fresh, v - prof, lev)
            levn = np.where(fresh, v, levn)
            magn = np.where(fresh, np.abs(v), magn)
        exp_s = lev + prof
        expected = np.where(use, exp_s, levn)
        if self.weekly:  # a weekly profile, used once it predicts clearly better than the rest
            wcol = WPROF + ((t % WEEK) * (1.0 / 1800.0)).astype(np.int64) % WSLOTS
            pw = self.S[slots, wcol]
            levw = X[:, LEVW]
            if any_fresh:
                levw = np.where(fresh, v - pw, levw)
            exp_w = levw + pw
            use_w = (X[:, EW] < np.where(use, X[:, ES], X[:, EN]) * self.seasonal_gain) & (
                age >= WEEK)
            expected = np.where(use_w, exp_w, expected)
        r = v - expected
        ra = np.abs(r)
        floor = np.maximum(self.rel_floor * magn, X[:, Q98] * self.q98_floor)
        if self.res_floor > 0:  # the data's resolution: its smallest step is no anomaly
            floor = np.maximum(floor, X[:, RES] * self.res_floor)
        floor += 1e-12
        if self.counts:  # event counts: at least Poisson noise
            floor = np.maximum(floor, np.sqrt(np.abs(expected) + 1.0))
        sc = np.where(fresh, floor, X[:, SCALE]) if any_fresh else X[:, SCALE]
        scale = np.maximum(sc * 1.2533, floor)
        z = r / scale
        za = np.abs(z)
        up = z > 0
        # tail (peaks over u scales, exponential excess); a prior for young series
        lu, ld, bu, bd = X[:, LU], X[:, LD], X[:, BU], X[:, BD]
        if any_fresh:
            lu = np.where(fresh, self.lam0, lu)
            ld = np.where(fresh, self.lam0, ld)
            bu = np.where(fresh, self.beta0, bu)
            bd = np.where(fresh, self.beta0, bd)
        lus, lds = lu, ld  #: the rates the score reads
        if self.lam_kt > 0:  # a rate no lower than the fit's window can tell from 0
            a_t0 = np.maximum(self.tail_rate, 1.0 / (n + self.prior_n)) * self.lam_kt
            lus = np.maximum(lu, a_t0)
            lds = np.maximum(ld, a_t0)
        lam = np.maximum(np.where(up, lus, lds), 1e-9)
        beta = np.where(up, bu, bd)
        s0 = -np.log10(lam)
        zu = za / self.u
        gpd = self.xi_max > 0
        if gpd:  # generalised Pareto tail: the shape from the excesses' mean and variance
            xiu, xid = X[:, XIU], X[:, XID]
            if any_fresh:
                xiu = np.where(fresh, 1e-9, xiu)
                xid = np.where(fresh, 1e-9, xid)
            if self._xmed:  # the scale from the median excess (bounded influence)
                medu, medd = X[:, MEDU], X[:, MEDD]
                if any_fresh:
                    medu = np.where(fresh, self.beta0 * _LN2, medu)
                    medd = np.where(fresh, self.beta0 * _LN2, medd)
                beta_s = _beta_of_median(np.where(up, medu, medd), np.where(up, xiu, xid))
            else:
                beta_s = beta
            s = self._gpd_tail(s0, za, beta_s, np.where(up, xiu, xid), lam, n)
        else:
            s = np.where(za > self.u, s0 + (za - self.u) / (beta * _LN10), s0 * zu * zu)
        if self.lam_kt > 0:  # never varied (no scale at all): the first change is as rare
            # as its rank among the samples seen, p = 1 / (n + 2), nothing more
            dg = scale <= 2e-12  # the floor's epsilon: no spread measured at all
            if dg.any():
                s = np.where(dg, np.minimum(s, np.log10(n + 2.0)), s)
        if self.run_rho > 0:  # evidence of consecutive same-side surprises adds up
            prev = X[:, RUN]
            run = s + self.run_rho * np.where((prev > 0) == up, np.abs(prev), 0.0)
            s = np.maximum(s, self.run_gain * run)
        else:
            run = s
        point = s / (s + SURPRISAL_HALF)
        sc_now, q98 = sc, X[:, Q98]
        calm_o = None  #: per row, calm under the previous regime (None: all rows)
        scale_cur = scale  #: the current baseline's scale (before a return)
        if self.regime_hold > 0:  # the previous regime, kept while the series departs from it
            # rows synced at their last sample hold the previous regime = the current state
            # (same score): only the frozen ones are scored under it
            fz = np.flatnonzero(X[:, OT] < X[:, LAST_T])
            if fz.size:
                exp_o = np.where(use[fz], X[fz, OLEV] + prof[fz], X[fz, OLEVN])
                if self.weekly:
                    exp_o = np.where(use_w[fz], X[fz, OLEVW] + pw[fz], exp_o)
                vz = v[fz]
                fl_o = np.maximum(self.rel_floor * magn[fz], X[fz, OQ98] * self.q98_floor)
                if self.res_floor > 0:
                    fl_o = np.maximum(fl_o, X[fz, RES] * self.res_floor)
                fl_o += 1e-12
                if self.counts:
                    fl_o = np.maximum(fl_o, np.sqrt(np.abs(exp_o) + 1.0))
                scale_o = np.maximum(X[fz, OSC] * 1.2533, fl_o)
                z_o = (vz - exp_o) / scale_o
                za_o = np.abs(z_o)
                up_o = z_o > 0
                lam_o = np.maximum(np.where(up_o, lus[fz], lds[fz]), 1e-9)
                beta_o = np.where(up_o, bu[fz], bd[fz])
                if gpd and self._xmed:
                    beta_o = _beta_of_median(np.where(up_o, medu[fz], medd[fz]),
                                             np.where(up_o, xiu[fz], xid[fz]))
                s0_o = -np.log10(lam_o)
                zu_o = za_o / self.u
                if gpd:
                    s_o = self._gpd_tail(s0_o, za_o, beta_o, np.where(up_o, xiu[fz], xid[fz]),
                                         lam_o, n[fz])
                else:
                    s_o = np.where(za_o > self.u, s0_o + (za_o - self.u) / (beta_o * _LN10),
                                   s0_o * zu_o * zu_o)
                p_o = s_o / (s_o + SURPRISAL_HALF)
                calm_o = np.ones(k, bool)
                calm_o[fz] = p_o < self.gate
                # back to the previous regime: anomalous under the current baseline, normal
                # under the previous one
                bk = (point[fz] >= self.gate) & (p_o < self.gate) & (
                    t[fz] - X[fz, OT] <= self.regime_hold)
                if bk.any():
                    rows = fz[bk]
                    expected = expected.copy()
                    expected[rows] = exp_o[bk]
                    r = v - expected
                    ra = np.abs(r)
                    scale = scale.copy()
                    scale[rows] = scale_o[bk]
                    z = z.copy()
                    z[rows] = z_o[bk]
                    za = np.abs(z)
                    up = z > 0
                    s = s.copy()
                    s[rows] = s_o[bk]
                    run = s
                    point = point.copy()
                    point[rows] = p_o[bk]
                    lev, levn, sc_now, q98 = lev.copy(), levn.copy(), sc_now.copy(), q98.copy()
                    lev[rows] = X[rows, OLEV]
                    levn[rows] = X[rows, OLEVN]
                    sc_now[rows] = X[rows, OSC]
                    q98[rows] = X[rows, OQ98]
                    if self.weekly:
                        levw = levw.copy()
                        levw[rows] = X[rows, OLEVW]
                    exp_s = lev + prof
        warm = n >= self.warmup
        if not all_ok:
            warm &= ok
        point[~warm] = 0.0
        held = X[:, HELD]
        if self.excursion_hold > 0:  # one excursion, one episode: its peak fades slower
            pk = X[:, RUN]
            on = ((pk > 0) & (z > self.u)) | ((pk < 0) & (z < -self.u))
            faded = held * np.where(on, self.excursion_hold, self.decay)
        elif self.calm_decay > 0:  # back within calm_z scales: the episode's hold fades fast
            faded = held * np.where(za < self.calm_z, self.calm_decay, self.decay)
        else:
            faded = held * self.decay
        shown = np.maximum(point, faded)
        if self.realert_gap > 0:  # a cluster of excursions is one episode: re-alert only if worse
            hit = za > self.u
            gap = X[:, GAP]
            if any_fresh:
                gap = np.where(fresh, np.inf, gap)
            cpk = X[:, CPK]
            incl = hit & (gap <= self.realert_gap)
            same = incl & (point <= cpk)
            shown = np.where(same, np.maximum(faded, np.minimum(point, held)), shown)
            new_cpk = np.where(hit, np.where(incl, np.maximum(cpk, point), point), cpk)
            new_gap = np.where(hit, 0.0, np.minimum(gap + 1.0, 1e9))
        if not all_ok:
            shown[~ok] = 0.0
        parts = np.stack([point, shown], axis=1)
        direction = np.where(up, 1.0, -1.0)
        out = TailOutput(shown, expected, scale, z, parts, direction, warm, point)
        if not learn:
            return out
        keep = None if all_ok else X[~ok].copy()
        calm = point < self.gate
        nanom = np.where(calm, 0.0, X[:, NANOM] + 1.0)
        X[:, NANOM] = nanom
        g = np.where(calm, 1.0, self.gated)
        if self.reseed_after > 0:  # a persistent change is the new normal: re-seed
            g = np.where(nanom > self.reseed_after, 1.0, g)
        inv = 1.0 / (n + 1.0)
        cl = self.clip * scale
        es = v - exp_s
        en = v - levn
        a = np.maximum(self.alpha, inv) * g
        X[:, LEVEL] = lev + a * np.clip(es, -cl, cl)
        X[:, LEVN] = levn + a * np.clip(en, -cl, cl)
        rc = np.minimum(ra, cl)
        if self.scale_gate != self.gate:
            gs = np.where(point < self.scale_gate, 1.0, self.gated)
            if self.reseed_after > 0:
                gs = np.where(nanom > self.reseed_after, 1.0, gs)
        else:
            gs = g
        a_s = np.maximum(self.scale_rate, inv) * gs
        X[:, SCALE] = sc_now + a_s * (rc - sc_now)
        X[:, MAGN] = magn + np.maximum(5e-4, inv) * (np.abs(v) - magn)
        # a high quantile of |residual| (up: 5 % of the way to an exceeding sample, down:
        # x 0.999 otherwise; about the 94th percentile of a normal residual, the typical
        # excursion of a mostly-constant series); ungated: it cannot collapse, whatever
        # share of samples is anomalous, and starts from the first excursion
        q = np.where(q98 > 0, q98, np.maximum(ra, 1e-12))
        eta_q = np.maximum(0.05, 2.0 * inv)
        X[:, Q98] = np.where(ra > q, q + eta_q * (ra - q), q * np.exp(-self.q98_decay * eta_q))
        if self.res_floor > 0:  # the resolution: the grain of the steps between samples
            # (their approximate greatest common divisor; ungated, never decays; -1: the
            # last value is unknown, e.g. migrated state; -2: no grain, continuous values)
            res = X[:, RES]
            d = np.abs(v - X[:, LASTV])
            if any_fresh:
                d = np.where(fresh, 0.0, d)
            new = np.where(res == -1.0, 0.0, res)
            upd = np.flatnonzero((d > 0) & (res >= 0) & (np.fmod(d, np.where(res > 0, res, 1.0)) != 0)
                                 | (d > 0) & (res == 0))
            if upd.size:
                g = _grain(new[upd], d[upd])
                new[upd] = np.where(g < _GRAIN_MIN * np.maximum(magn[upd], d[upd]), -2.0, g)
            X[:, RES] = new
            X[:, LASTV] = v
        # tail: exceedance rate per side and winsorised mean excess per exceedance
        a_t = np.maximum(self.tail_rate, 1.0 / (n + self.prior_n))
        if gpd and any_fresh:  # the prior shape: the exponential's (0)
            X[fresh, MU] = X[fresh, MD] = _F0 if self._xq else self.m20
            X[fresh, MEDU] = X[fresh, MEDD] = self.beta0 * math.log(2.0)
            X[fresh, XIU] = X[fresh, XID] = 1e-9
        if self.decluster:  # runs declustering: one event per excursion, its peak teaches beta
            pk = X[:, RUN]
            hu, hd = z > self.u, z < -self.u
            pu, pd = pk > 0, pk < 0
            end_u, end_d = pu & ~hu, pd & ~hd
            _learn_runs(X, (LU, BU, LD, BD), lu, bu, ld, bd, z, pk, self.u, end_u, end_d, a_t, 1e-3,
                        (self.xi_max, X[:, MU], X[:, MD]) if gpd else None, self._xq)
            run = np.where(hu, np.where(pu, np.maximum(pk, z), z), np.where(hd, np.where(pd, np.minimum(pk, z), z), 0.0))
        else:
            hit = za > self.u
            hu, hd = hit & up, hit & ~up
            if calm_o is not None:  # a return may have changed the side: its rate and excess
                lam = np.maximum(np.where(up, lu, ld), 1e-9)
                beta = np.where(up, bu, bd)
            X[:, LU] = lu + a_t * (hu - lu)
            X[:, LD] = ld + a_t * (hd - ld)
            ex = np.minimum(za - self.u, 10.0 * beta)
            a_b = np.minimum(np.maximum(a_t / np.maximum(lam, 1e-3), a_t) * 0.5, 0.5)
            if self.tail_gate < 1.0:
                a_b = a_b * np.where(calm, 1.0, self.tail_gate)
            X[:, BU] = np.clip(np.where(hu, bu + a_b * (ex - bu), bu), 0.2, 50.0)
            X[:, BD] = np.clip(np.where(hd, bd + a_b * (ex - bd), bd), 0.2, 50.0)
            if gpd and self._xq:  # share beyond _QK medians; the medians by approximation
                qu, qd, mu, md = X[:, MEDU], X[:, MEDD], X[:, MU], X[:, MD]
                X[:, MU] = mu = np.where(hu, mu + a_b * ((ex > _QK * qu) - mu), mu)
                X[:, MD] = md = np.where(hd, md + a_b * ((ex > _QK * qd) - md), md)
                X[:, MEDU] = np.where(hu, qu * np.exp(np.where(ex > qu, _QSTEP, -_QSTEP) * a_b), qu)
                X[:, MEDD] = np.where(hd, qd * np.exp(np.where(ex > qd, _QSTEP, -_QSTEP) * a_b), qd)
                X[:, XIU] = np.where(hu, _shape_q(mu, self.xi_max, a_b), X[:, XIU])
                X[:, XID] = np.where(hd, _shape_q(md, self.xi_max, a_b), X[:, XID])
            elif gpd:
                mu, md, ex2 = X[:, MU], X[:, MD], ex * ex
                X[:, MU] = mu = np.where(hu, mu + a_b * (ex2 - mu), mu)
                X[:, MD] = md = np.where(hd, md + a_b * (ex2 - md), md)
                X[:, XIU] = np.where(hu, _shape(X[:, BU], mu, self.xi_max, a_b), X[:, XIU])
                X[:, XID] = np.where(hd, _shape(X[:, BD], md, self.xi_max, a_b), X[:, XID])
        # daily profile: learns (value - slow reference), per unit of time
        ref = np.where(fresh, v, X[:, REF]) if any_fresh else X[:, REF]
        dt_raw = np.minimum(t - X[:, LAST_T], 3600.0)
        if any_fresh:
            dt_raw[fresh] = 0.0
        dtavg = X[:, DTAVG]
        dtavg = np.where(dtavg > 0, dtavg, dt_raw)
        dt = np.minimum(dt_raw, 2.0 * dtavg)
        X[:, DTAVG] = dtavg + 0.05 * (dt_raw - dtavg)
        sw = 86400.0 / SLOTS
        ht0 = X[ar, PROF_T + b0] + dt * (1 - f)
        ht1 = X[ar, PROF_T + b1] + dt * f
        gp = g if self.profile_gated == self.gated else np.where(calm, 1.0, self.profile_gated)
        gh = np.maximum(dt / np.maximum(ht0 + ht1, 0.5 * sw), dt / (sw * self.cycles)) * gp
        eh = np.clip(v - ref - prof, -cl, cl)
        X[ar, c0] = h0 + (1 - f) * gh * eh
        X[ar, c1] = h1 + f * gh * eh
        X[ar, PROF_T + b0] = np.minimum(ht0, 10 * sw)
        X[ar, PROF_T + b1] = np.minimum(ht1, 10 * sw)
        ae = -np.expm1(dt * (-1.0 / self.err_tau)) if self.err_tau > 0 else self.err_rate
        if self.weekly:  # same rule, per half hour of the week, its visits counted from the age
            ew = v - exp_w
            X[:, LEVW] = levw + a * np.clip(ew, -cl, cl)
            first = np.where(fresh, t, X[:, FIRST_T]) if any_fresh else X[:, FIRST_T]
            elapsed = np.floor((t - first) * (1.0 / WEEK)) * sw + np.maximum(t % sw, dt)
            gw = np.maximum(dt / np.maximum(elapsed, 0.5 * sw), dt / (sw * self.cycles)) * gp
            new_pw = pw + gw * np.clip(v - ref - pw, -cl, cl)
            if not all_ok:
                new_pw = np.where(ok, new_pw, pw)
            self.S[slots, wcol] = new_pw
            X[:, EW] += ae * (np.minimum(np.abs(ew), cl) - X[:, EW])
        a_ref = np.maximum(-np.expm1(-dt / 86400.0), inv) * gp
        X[:, REF] = ref + a_ref * np.clip(v - prof - ref, -cl, cl)
        # one-step errors with and without the profile decide whether it is used
        if self.regime_hold > 0:
            # the profile is chosen between plain predictors that never return, each gated
            # by its own point score (a return would make the plain level a two-state one)
            slev, slevn = X[:, SLEV], X[:, SLEVN]
            if any_fresh:
                slev = np.where(fresh, lev, slev)
                slevn = np.where(fresh, levn, slevn)
            es = v - (slev + prof)
            en = v - slevn
            zp = np.abs(np.where(use, es, en)) / scale_cur
            bp = np.where(np.where(use, es, en) > 0, bu, bd)
            lp = np.maximum(np.where(np.where(use, es, en) > 0, lu, ld), 1e-9)
            s0p = -np.log10(lp)
            sp = np.where(zp > self.u, s0p + (zp - self.u) / (bp * _LN10),
                          s0p * (zp / self.u) ** 2)
            if gpd:  # only the gate decision matters here: rows calm under a bound stay calm
                # (s_gpd <= s0 + (s_exp - s0) / (1 - xi) <= s_exp / (1 - xi_max))
                cand = sp >= self._s_gate * (1.0 - self.xi_max)
                if cand.any():
                    c = np.flatnonzero(cand & (zp > self.u))
                    if c.size:
                        sp[c] = _gpd_s(s0p[c], zp[c] - self.u, bp[c], np.where(
                            np.where(use[c], es[c], en[c]) > 0, xiu[c], xid[c]))
            a_p = np.maximum(self.alpha, inv) * np.where(
                (sp / (sp + SURPRISAL_HALF) < self.gate) | ~warm, 1.0, self.gated)
            X[:, SLEV] = slev + a_p * np.clip(es, -cl, cl)
            X[:, SLEVN] = slevn + a_p * np.clip(en, -cl, cl)
        X[:, ES] += ae * (np.minimum(np.abs(es), cl) - X[:, ES])
        X[:, EN] += ae * (np.minimum(np.abs(en), cl) - X[:, EN])
        if any_fresh:
            X[fresh, ES] = 0.0
            X[fresh, EN] = 0.0
            X[fresh, EW] = 0.0
            X[fresh, FIRST_T] = t[fresh]
        if self.regime_hold > 0:  # the previous regime follows while it explains the samples
            sync = point < self.gate
            if calm_o is not None:
                sync &= calm_o
            sync |= t - X[:, OT] > self.regime_hold
            if any_fresh:
                sync |= fresh
            keep_o = np.flatnonzero(~sync)  # frozen: the previous regime stays
            if keep_o.size:
                frozen_o = X[keep_o, OLEV:OT + 1].copy()
            X[:, OLEV:OLEVW + 1] = X[:, _SYNCED]
            X[:, OT] = t
            if keep_o.size:
                X[keep_o, OLEV:OT + 1] = frozen_o
        if self.realert_gap > 0:
            X[:, GAP] = new_gap
            X[:, CPK] = new_cpk
        X[:, HELD] = shown
        X[:, RUN] = run if self.decluster else np.where(up, run, -run)
        X[:, LAST_T] = t
        X[:, N] = n + 1
        if keep is not None:
            X[~ok] = keep
        self.S[slots, :WPROF] = X
        return out

"""A bank of seasonal online baselines, one row per series, updated many series at a time.

Why a bank: Faust costs ~85 µs a message, so messages carry many series, and a
Python object per series would cost several µs per sample. Here the state of
every series is one row of a float64 matrix (83 columns, 664 bytes); a *round*
takes the next sample of up to thousands of series and scores + learns them with
~120 vectorised numpy operations (0.6-0.9 µs per sample from 1,000 series a step).

Per series, the model is an additive seasonal decomposition learned online::

    expected(t) = level + trend + hour_of_day(t) + day_of_week(t)

- ``level`` + ``trend``: damped Holt smoothing per *sample*, fed residuals
  winsorised at 4 sigma (an outlier cannot drag it); the trend learns from steady
  samples only (a jump does not start a ramp);
- ``hour_of_day``: 24 offsets, linear between bucket centres, learned per unit of
  *time* (irregular sampling is fine; a sample after a gap does not carry the gap's
  weight) against a slow 24 h reference; running means at first;
- ``day_of_week``: 7 step offsets, learned from the first midnight two days after the
  series appeared, against a one-week mean that does not contain them;
- ``var``: EW variance of the winsorised residual (the band's scale), with a floor
  (0.1 % of the level; Poisson for ``counts``). Anomalous samples barely teach the
  spread and the profiles (an incident is not tomorrow's normal).

Four detectors read that state; each maps its statistic to a *surprise*
``-log10 p`` under a Gaussian null, and the combined score is
``min(1, max surprise / 10)``. So ``score 0.7`` means ``p = 1e-7`` per sample
for the most surprised detector, whatever the series' scale (a conservative
level: four detectors, autocorrelated noise, heavy tails):

==========  ========================================================  ==========================
detector    statistic                                                 catches
==========  ========================================================  ==========================
spike       ``z = (v - expected) / sigma``, t-like for young series    spikes, dips
shift       two-sided CUSUM of winsorised z (k = 0.5), AR(1)-whitened  level shifts, fast drifts
drift       ``level - slow level`` over its own spread (10x slower)    slow drifts
variance    EW dispersion of z around its local mean (chi-square)      variance changes
==========  ========================================================  ==========================

A series scores 0 during its warm-up (``n < warmup``); shift, drift and variance
join ``mature_after`` samples later. Samples not after the last one
(``t <= last_t``) are neither learned nor scored (score 0).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> bank = SeriesBank(warmup=30)
>>> s = bank.add()
>>> for i in range(300):
...     _ = bank.step(np.array([s]), np.array([1.7e9 + 60 * i]), np.array([100 + rng.normal()]))
>>> out = bank.step(np.array([s]), np.array([1.7e9 + 60 * 300]), np.array([100.5]), learn=False)
>>> bool(out.score[0] < 0.3)
True
>>> out = bank.step(np.array([s]), np.array([1.7e9 + 60 * 300]), np.array([130.0]))
>>> bool(out.score[0] == 1.0), round(float(out.expected[0]))
(True, 100)
>>> SeriesBank.row_bytes(bank.row(s)) == bank.row(s).tobytes()
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, ndtri

from .rows import RowBank
__all__ = ["BankOutput", "SeriesBank", "DETECTORS", "SURPRISE_AT_ONE", "band_z"]

# ---- row layout (float64 columns)
(N, LAST_T, LEVEL, VAR, SLOW, REF, CUP, CDN, VSHORT, ZPREV, RHO, TREND, DVAR, ZBAR,
 FIRST_T, REFW, DTAVG) = range(17)
HOD = 17  # 24 hour-of-day offsets
DOW = HOD + 24  # 7 day-of-week offsets
HOD_T = DOW + 7  # seconds learned per hour-of-day bucket (capped)
DOW_T = HOD_T + 24  # seconds learned per day-of-week bucket (capped)
#: columns free for the detector's alert bookkeeping (open flag, opened_t, ...)
USER = DOW_T + 7
USER_COLS = 4
WIDTH = USER + USER_COLS

DETECTORS = ("spike", "shift", "drift", "variance")
#: surprise (-log10 p) that maps to score 1.0; score = -log10(p) / 10: 0.7 <-> p = 1e-7
SURPRISE_AT_ONE = 10.0
_LN10 = math.log(10.0)
_LOG10_2 = math.log10(2.0)


@functools.lru_cache(maxsize=64)
def band_z(threshold: float) -> float:
    """Two-sided z at which the spike detector alone reaches ``threshold``.

    >>> round(band_z(0.7), 2)
    5.33
    """
    p = 10.0 ** (-max(threshold, 0.05) * SURPRISE_AT_ONE)
    return float(-ndtri(p / 2.0))


def _surprise_two_sided(absz: np.ndarray) -> np.ndarray:
    """-log10 P(|Z| >= absz) for a standard normal Z."""
    return -(log_ndtr(-absz) / _LN10 + _LOG10_2)


@dataclass(slots=True)
class BankOutput:
    """Per-sample results of one round (arrays aligned with the inputs)."""

    score: np.ndarray  #: combined score in [0, 1] (0 in warm-up / out of order)
    expected: np.ndarray
    scale: np.ndarray  #: sigma used for z and the band
    deviation: np.ndarray  #: signed z of the sample
    parts: np.ndarray  #: (k, 4) per-detector scores, columns as DETECTORS
    direction: np.ndarray  #: +1 up, -1 down, 0 both (variance)
    warm: np.ndarray  #: bool: past warm-up and in order


class SeriesBank(RowBank):
    """Rows of per-series state; :meth:`step` scores and learns one sample per series.

    Parameters
    ----------
    warmup
        Samples learned before a series may score above 0.
    alpha
        Per-sample EW rate of the level (0.02: ~50 samples to adapt).
    slow_ratio
        The drift detector's slow level adapts this many times slower.
    var_alpha
        Per-sample EW rate of the residual variance.
    clip
        Residuals are winsorised at ``clip * sigma`` before learning.
    trend_beta
        Gain of the damped Holt trend of the level (tracks daily ramps with no lag).
    counts
        The series are event counts: sigma is at least Poisson's ``sqrt(mean + 1)``.
    """

    width = WIDTH

    def __init__(self, warmup: int = 30, alpha: float = 0.02, slow_ratio: float = 10.0,
                 var_alpha: float = 0.01, clip: float = 4.0, trend_beta: float = 0.1,
                 counts: bool = False, capacity: int = 1024) -> None:
        self.counts = counts
        self.warmup = warmup
        self.alpha = alpha
        self.slow_alpha = alpha / slow_ratio
        self.var_alpha = var_alpha
        self.clip = clip
        self.cusum_k = 0.5
        self.cusum_cap = 24.0
        self.vshort_alpha = 0.05
        self.zbar_alpha = 0.2  #: local mean of z for the variance detector
        self._zbar_norm = 1.0 / math.sqrt(1.0 + self.zbar_alpha / (2.0 - self.zbar_alpha))
        self.rho_alpha = 0.01  #: EW rate of the lag-1 autocorrelation of z
        self.trend_beta = trend_beta  #: Holt trend gain (0: no trend)
        self.trend_damping = 0.98
        self.mature_after = 50  #: samples after warm-up before shift/drift/variance score
        self.gate = 0.3  #: per-detector score above which learning of spread/season slows
        self.gated_rate = 0.1
        self.drift_kappa = 0.75  #: floor of the drift gap's own spread, in sigmas
        self.ref_tau = 86_400.0  #: seconds, seasonal reference level
        self.hod_tau = 3_600.0  #: seconds of in-bucket time to learn 63% of an hour offset
        self.dow_tau = 259_200.0
        self.week_tau = 604_800.0
        self.dow_start = 172_800.0  #: series age (s) before the weekly profile is learned
        self.rel_floor = 1e-3  #: sigma floor relative to |expected|
        self._neg_inv_tau = -1.0 / np.array(
            [[self.ref_tau], [self.hod_tau], [self.dow_tau], [self.week_tau]])
        super().__init__(capacity)

    def expected_at(self, slot: int, t: float) -> tuple[float, float]:
        """``(expected, sigma)`` of a series at time ``t``, without a sample (cheap).

        Same formula as :meth:`step` (scalar), for charts and bands.
        """
        row = self.S[slot]
        x = (t % 86400.0) / 3600.0 - 0.5
        fl = math.floor(x)
        f = x - fl
        h = int(fl) % 24
        h0, h1 = float(row[HOD + h]), float(row[HOD + (h + 1) % 24])
        d = (int(t // 86400.0) + 3) % 7
        exp = float(row[LEVEL] + row[TREND]) + h0 + f * (h1 - h0) + float(row[DOW + d])
        fl2 = (self.rel_floor * abs(exp) + 1e-9) ** 2
        if self.counts:
            fl2 = max(fl2, abs(exp) + 1.0)
        return exp, math.sqrt(max(float(row[VAR]), fl2))

    # ------------------------------------------------------------ the round
    def step(self, slots: np.ndarray, t: np.ndarray, v: np.ndarray, learn: bool = True) -> BankOutput:
        """Score, then (if ``learn``) learn, one sample for each of ``slots`` (distinct)."""
        X = self.S[slots]
        k = len(slots)
        ar = np.arange(k)
        n = X[:, N]
        last_t = X[:, LAST_T]
        fresh = n == 0
        any_fresh = bool(fresh.any())
        ok = t > last_t
        if any_fresh:
            ok |= fresh
        all_ok = bool(ok.all())
        # hour-of-day profile: linear between bucket centres (xx:30); day-of-week: steps
        x = (t % 86400.0) * (1 / 3600.0) - 0.5
        fl = np.floor(x)
        f = x - fl
        hod = fl.astype(np.int64) % 24
        hod1 = (hod + 1) % 24
        dow = ((t // 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        hcol, hcol1, dcol = HOD + hod, HOD + hod1, DOW + dow
        h0, h1, d_old = X[ar, hcol], X[ar, hcol1], X[ar, dcol]
        hval = h0 + f * (h1 - h0)
        level = X[:, LEVEL] + X[:, TREND]
        if any_fresh:
            level = np.where(fresh, v, level)
        expected = level + hval + d_old
        floor = self.rel_floor * np.abs(expected) + 1e-9
        floor2 = floor * floor
        if self.counts:  # event counts: at least Poisson noise (variance = mean, plus 1)
            floor2 = np.maximum(floor2, np.abs(expected) + 1.0)
        sigma = np.sqrt(np.maximum(X[:, VAR], floor2))
        r = v - expected
        z = r / sigma
        # -- detectors (including this sample); AR(1)-aware: w whitens the sums
        rho = np.clip(X[:, RHO], 0.0, 0.9)
        r2 = rho * rho
        w = np.sqrt((1 - rho) / (1 + rho))
        zc = np.clip(z, -self.clip, self.clip)
        wz = w * zc
        kk = self.cusum_k
        # a sample clearly on the other side halves the sum: a series that is back
        # recovers in a few samples instead of cap / k
        cup = np.clip(np.where(z < -1.0, 0.5, 1.0) * X[:, CUP] + wz - kk, 0.0, self.cusum_cap)
        cdn = np.clip(np.where(z > 1.0, 0.5, 1.0) * X[:, CDN] - wz - kk, 0.0, self.cusum_cap)
        a_vs = self.vshort_alpha
        # dispersion around the *local* mean of z: model misfit (a biased expected value)
        # is not mistaken for a change of variance
        dz = (z - X[:, ZBAR]) * self._zbar_norm
        vshort = (1 - a_vs) * X[:, VSHORT] + a_vs * np.minimum(dz * dz, 9.0)  # a spike: not variance
        if any_fresh:
            vshort[fresh] = 1.0
        gap = X[:, LEVEL] - X[:, SLOW]
        kap = self.drift_kappa * sigma
        drift = gap / np.sqrt(np.maximum(X[:, DVAR], kap * kap))
        # Wilson-Hilferty: chi2(nu)/nu -> normal; upper tail only (variance increase)
        c = (2.0 * a_vs / (9.0 * (2 - a_vs))) * (1 + r2) / (1 - r2)
        tails = np.empty((3, k))
        # a young series' sigma is an estimate from few samples: its z has Student-t tails;
        # 1 + 16/(n+1) puts a t(n) tail of 1e-7 near the normal one (5.3 sigma)
        np.abs(z, out=tails[0])
        tails[0] /= 1.0 + 16.0 / (n + 1.0)
        np.abs(drift, out=tails[1])
        tails[2] = (np.cbrt(np.maximum(vshort, 0.0)) - (1 - c)) / np.sqrt(c)
        np.negative(tails, out=tails)
        lt = log_ndtr(tails)
        parts = np.empty((k, 4))
        scale = -1.0 / (_LN10 * SURPRISE_AT_ONE)
        parts[:, 0] = (lt[0] + _LN10 * _LOG10_2) * scale
        parts[:, 1] = (2 * kk / (_LN10 * SURPRISE_AT_ONE)) * np.maximum(cup, cdn)
        parts[:, 2] = (lt[1] + _LN10 * _LOG10_2) * scale
        parts[:, 3] = lt[2] * scale
        np.clip(parts, 0.0, 1.0, out=parts)
        warm = n >= self.warmup
        if not all_ok:
            warm &= ok
        parts[~warm] = 0.0
        # the slow detectors need settled spread/reference estimates first
        parts[n < self.warmup + self.mature_after, 1:] = 0.0
        top = parts.argmax(axis=1)
        score = parts[ar, top]
        direction = np.where(top == 0, np.sign(z), np.where(
            top == 1, np.where(cup >= cdn, 1.0, -1.0), np.where(top == 2, np.sign(drift), 0.0)))
        out = BankOutput(score, expected, sigma, z, parts, direction, warm)
        if not learn:
            return out
        # -- learn; rows of out-of-order samples are restored at the end
        keep = None if all_ok else X[~ok].copy()
        cw = self.clip * sigma
        rc = np.clip(r, -cw, cw)
        young = n < self.warmup
        if young.any():
            rc = np.where(young, r, rc)
        inv = 1.0 / (n + 1.0)
        a = np.maximum(self.alpha, inv)
        # time-based gains count at most 2x the usual interval: one sample after a gap
        # must not carry the gap's weight
        dt_raw = np.minimum(t - last_t, 3600.0)
        if any_fresh:
            dt_raw[fresh] = 0.0
        dtavg = X[:, DTAVG]
        dtavg = np.where(dtavg > 0, dtavg, dt_raw)
        dt = np.minimum(dt_raw, 2.0 * dtavg)
        new_dtavg = dtavg + 0.05 * (dt_raw - dtavg)
        X[:, DTAVG] = np.where(fresh, X[:, DTAVG], new_dtavg) if any_fresh else new_dtavg
        # anomalous samples barely teach the spread and the seasonal profile, so an
        # incident is not learned as tomorrow's normal (gating on the slow detectors too
        # would trap a misfit: never calm, never learned)
        calm = np.where(parts[:, 0] < self.gate, 1.0, self.gated_rate)
        calm_all = np.where(parts[:, 3] < self.gate, calm, self.gated_rate)
        steady = (parts[:, 0] < self.gate) & (parts[:, 1] < self.gate)
        g = -np.expm1(dt[None, :] * self._neg_inv_tau)  # ref, hod, dow, week
        a_ref = np.maximum(g[0], inv)
        h_t = X[ar, HOD_T + hod] + dt * (1 - f)
        h_t1 = X[ar, HOD_T + hod1] + dt * f
        # the weekly profile starts once the daily one had two days: then each weekday's
        # first visit is learned as a running mean, later ones exponentially
        first_t = np.where(fresh, t, X[:, FIRST_T]) if any_fresh else X[:, FIRST_T]
        adult = (t // 86400.0) > ((first_t + self.dow_start) // 86400.0)  # from a midnight on
        d_t = X[ar, DOW_T + dow] + dt * adult
        # running means at first (never over less than 15 min / 12 h: a few samples are
        # not a profile), exponential once the bucket has seen enough time
        g_h = np.maximum(g[1], dt / np.maximum(h_t + h_t1, 900.0)) * calm_all
        g_d = np.maximum(g[2], dt / np.maximum(d_t, 43_200.0)) * (adult * calm_all)
        deseason = level + rc  # this sample without its seasonal part, winsorised
        vc = expected + rc
        # the trend follows steady samples only: a jump must not start a ramp (overshoot)
        X[:, TREND] = self.trend_damping * (X[:, TREND] + self.trend_beta * a * rc * steady)
        X[:, LEVEL] = level + a * rc
        if any_fresh:
            for col in (SLOW, REF, REFW):
                X[fresh, col] = v[fresh]
        X[:, SLOW] += np.maximum(self.slow_alpha, inv) * (deseason - X[:, SLOW])
        a_var = np.maximum(self.var_alpha, inv) * calm
        X[:, VAR] = (1 - a_var) * (X[:, VAR] + a_var * rc * rc)
        new_ref = X[:, REF] + a_ref * (deseason - X[:, REF])
        X[:, REF] = new_ref
        a_dv = np.maximum(self.slow_alpha, inv) * calm
        X[:, DVAR] = (1 - a_dv) * (X[:, DVAR] + a_dv * gap * gap)
        X[:, CUP] = cup
        X[:, CDN] = cdn
        X[:, VSHORT] = vshort
        X[:, ZBAR] += self.zbar_alpha * (zc - X[:, ZBAR])
        if young.any():  # nothing accumulates while sigma is still being estimated
            X[young, CUP] = 0.0
            X[young, CDN] = 0.0
            X[young, VSHORT] = 1.0
            X[young, ZBAR] = 0.0
        z3 = np.clip(z, -2.5, 2.5)  # bounded: a shift must not pass for autocorrelation
        a_rho = np.maximum(self.rho_alpha, inv) * (calm == 1.0)
        X[:, RHO] += a_rho * (z3 * X[:, ZPREV] - X[:, RHO])
        X[:, ZPREV] = z3
        eh = g_h * (vc - new_ref - d_old - hval)
        X[ar, hcol] = h0 + (1 - f) * eh
        X[ar, hcol1] = h1 + f * eh
        # the weekly profile is learned against a one-week mean that does not contain it,
        # so a weekday's offset cannot trade places with the reference level
        a_w = np.maximum(g[3], inv)
        new_refw = X[:, REFW] + a_w * (vc - hval - X[:, REFW])
        X[:, REFW] = new_refw
        X[ar, dcol] = d_old + g_d * (vc - new_refw - hval - d_old)
        X[ar, HOD_T + hod] = np.minimum(h_t, 10 * self.hod_tau)
        X[ar, HOD_T + hod1] = np.minimum(h_t1, 10 * self.hod_tau)
        X[ar, DOW_T + dow] = np.minimum(d_t, 10 * self.dow_tau)
        X[:, LAST_T] = t
        X[:, FIRST_T] = first_t
        X[:, N] = n + 1
        if keep is not None:
            X[~ok] = keep
        self.S[slots] = X
        return out

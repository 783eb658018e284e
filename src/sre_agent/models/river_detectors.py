"""River anomaly detectors for one series, scored on the same calibrated scale.

- :class:`CalibratedTail` is the reference implementation of the stream's
  detector (:class:`~sre_agent.models.tailbank.TailBank`) as a River
  ``AnomalyDetector``: plain Python, one sample at a time, written
  independently of the vectorised bank; ``tests/unit/test_detector_contract.py``
  checks that both give the same scores on the same inputs.
- :class:`Calibrated` wraps any River detector (``HalfSpaceTrees``,
  ``PredictiveAnomalyDetection``, ...) and maps its raw score to the same
  calibrated scale: the raw score's own upper tail, fitted online with the same
  peaks-over-threshold rule, so 0.7 means the same tail probability whatever
  detector produced it.

Inputs are River dicts ``{"t": unix seconds, "y": value}``. ``score_one`` never
changes the model; ``learn_one`` scores internally first (anomalous samples
teach the baseline less) and then learns.

Examples
--------
>>> import random
>>> rng = random.Random(7)
>>> m = CalibratedTail(warmup=30)
>>> for i in range(600):
...     m.learn_one({"t": 1.7e9 + 60 * i, "y": 100 + rng.gauss(0, 1)})
>>> m.score_one({"t": 1.7e9 + 60 * 600, "y": 100.5}) < 0.5
True
>>> m.score_one({"t": 1.7e9 + 60 * 600, "y": 130.0}) > 0.8  # 30 sigma after 600 samples
True
"""

from __future__ import annotations

import copy
import math
from typing import Any

from river import anomaly, base, preprocessing, stats

import numpy as np

from .tailbank import (_F0, _GRAIN_MIN, _QK, _QSTEP, _VG, _XG, SLOTS, SURPRISAL_HALF, WEEK,
                       WSLOTS, TailBank, _grain, _shape_q)

__all__ = ["Calibrated", "CalibratedTail", "make_detector", "RIVER_DETECTORS"]

_LN10 = math.log(10.0)


class _Tail:
    """Per-direction peaks-over-threshold fit of a standardised residual (same rule as the bank):
    beyond ``u`` an exponential tail, or with ``xi_max > 0`` a generalised Pareto tail whose
    shape comes from the share of excesses beyond 4 medians (``quantile``, the bank's default
    ``xi_est``) or from their mean and mean square (method of moments), in [0, xi_max]."""

    __slots__ = ("lu", "ld", "bu", "bd", "mu", "md", "xu", "xd", "xi_max", "quantile", "qu", "qd",
                 "median")

    def __init__(self, lam0: float, beta0: float, xi_max: float = 0.0,
                 quantile: bool = False, median: bool = False) -> None:
        self.lu = self.ld = lam0
        self.bu = self.bd = beta0
        self.quantile = quantile
        # shape 0 (the exponential's): mean square 2 beta0**2, or share beyond _QK medians
        self.mu = self.md = _F0 if quantile else 2.0 * beta0 * beta0
        self.qu = self.qd = beta0 * math.log(2.0)  # the excesses' medians (quantile)
        self.xu = self.xd = 1e-9  # the shapes
        self.xi_max = xi_max
        #: the scale from the excesses' median (the bank's ``xi_scale="median"``)
        self.median = median and quantile and xi_max > 0

    def _learn_shape(self, up: bool, ex: float, a_b: float) -> None:
        """Teach the shape of one side an excess ``ex`` (weight ``a_b``)."""
        if self.quantile:  # the share beyond _QK medians; the median by stochastic approximation
            q = self.qu if up else self.qd
            m = self.mu if up else self.md
            m += a_b * ((1.0 if ex > _QK * q else 0.0) - m)
            q *= math.exp((_QSTEP if ex > q else -_QSTEP) * a_b)
            xi = float(_shape_q(np.array([m]), self.xi_max, np.array([a_b]))[0])
            if up:
                self.mu, self.qu, self.xu = m, q, xi
            else:
                self.md, self.qd, self.xd = m, q, xi
        elif up:
            self.mu += a_b * (ex * ex - self.mu)
            self.xu = self.xi(self.bu, self.mu, a_b)
        else:
            self.md += a_b * (ex * ex - self.md)
            self.xd = self.xi(self.bd, self.md, a_b)

    def xi(self, beta: float, m2: float, a_b: float) -> float:
        """Method-of-moments shape, shrunk toward 0 by its noise (weight ``a_b`` of one
        excess), bounded to [1e-9, xi_max]."""
        b2 = beta * beta
        xi = max(0.5 - 0.5 * b2 / max(m2 - b2, 1e-12), 0.0)
        x2 = xi * xi
        return min(max(xi * x2 / (x2 + a_b), 1e-9), self.xi_max)

    def surprisal(self, z: float, u: float, rate: float = 0.0, kt: float = 0.0,
                  unc: float = 0.0, top: float = 0.5) -> float:
        """With ``rate`` (the tail fit's rate for this sample): the rate read is at least
        ``kt * rate`` and, with ``unc``, the tail beyond ``u`` is the predictive one,
        averaged over the shape's uncertainty (the bank's ``lam_kt``, ``xi_unc``, ``xi_top``)."""
        za = abs(z)
        up = z > 0
        lam, beta = (self.lu, self.bu) if up else (self.ld, self.bd)
        if kt > 0 and rate > 0:
            lam = max(lam, kt * rate)
        lam = max(lam, 1e-9)
        s0 = -math.log10(lam)
        if za <= u:
            return s0 * (za / u) ** 2
        if self.xi_max > 0:
            xi = self.xu if up else self.xd
            y = za - u
            med = self.qu if up else self.qd
            sig = med * xi / math.expm1(xi * math.log(2.0)) if self.median else beta * (1.0 - xi)
            if unc > 0 and rate > 0:
                a_b = min(max(rate / max(lam, 1e-3), rate) * 0.5, 0.5)
                se = unc * math.sqrt(a_b / (2.0 - a_b))
                if self.quantile:  # the quantile estimator's variance per excess
                    se *= math.sqrt(float(np.interp(xi, _XG, _VG)))
                lps = []
                for c, w in ((-math.sqrt(3.0), 1.0 / 6.0), (0.0, 2.0 / 3.0), (math.sqrt(3.0), 1.0 / 6.0)):
                    xk = min(max(xi + c * se, 1e-9), top)
                    sk = med * xk / math.expm1(xk * math.log(2.0)) if self.median else sig
                    lps.append(math.log(w) - math.log1p(xk * y / sk) / xk)
                m = max(lps)
                return s0 - (m + math.log(sum(math.exp(v - m) for v in lps))) / _LN10
            return s0 + math.log1p(xi * y / sig) / (xi * _LN10)
        return s0 + (za - u) / (beta * _LN10)

    def learn(self, z: float, u: float, rate: float, weight: float = 1.0) -> None:
        za = abs(z)
        up = z > 0
        hit = za > u
        lam, beta = (self.lu, self.bu) if up else (self.ld, self.bd)
        self.lu += rate * ((1.0 if hit and up else 0.0) - self.lu)
        self.ld += rate * ((1.0 if hit and not up else 0.0) - self.ld)
        if hit:
            a_b = min(max(rate / max(lam, 1e-3), rate) * 0.5, 0.5) * weight
            ex = min(za - u, 10.0 * beta)
            new = min(max(beta + a_b * (ex - beta), 0.2), 50.0)
            if up:
                self.bu = new
            else:
                self.bd = new
            if self.xi_max > 0:
                self._learn_shape(up, ex, a_b)

    def learn_runs(self, z: float, pk: float, u: float, rate: float) -> float:
        """Runs-declustered update (the bank's ``decluster``): one event per excursion
        beyond ``u`` (its first sample counts for the rate), the excursion's peak teaches
        the mean excess (and mean squared excess) when it ends. ``pk`` is the running signed
        peak (0 outside an excursion); returns the new one."""
        up_hit, down_hit = z > u, z < -u
        in_up, in_down = pk > 0, pk < 0
        lu, ld = self.lu, self.ld
        self.lu += rate * ((1.0 if up_hit and not in_up else 0.0) - lu)
        self.ld += rate * ((1.0 if down_hit and not in_down else 0.0) - ld)
        if in_up and not up_hit and pk > u:
            a_b = min(max(rate / max(lu, 1e-3), rate) * 0.5, 0.5)
            ex = min(pk - u, 10.0 * self.bu)
            self.bu = min(max(self.bu + a_b * (ex - self.bu), 0.2), 50.0)
            if self.xi_max > 0:
                self._learn_shape(True, ex, a_b)
        if in_down and not down_hit and pk < -u:
            a_b = min(max(rate / max(ld, 1e-3), rate) * 0.5, 0.5)
            ex = min(-pk - u, 10.0 * self.bd)
            self.bd = min(max(self.bd + a_b * (ex - self.bd), 0.2), 50.0)
            if self.xi_max > 0:
                self._learn_shape(False, ex, a_b)
        if up_hit:
            return max(pk, z) if in_up else z
        if down_hit:
            return min(pk, z) if in_down else z
        return 0.0


class CalibratedTail(base.AnomalyDetector):
    """Robust level + daily profile + calibrated tail surprisal of one series.

    Parameters are those of :class:`~sre_agent.models.tailbank.TailBank`.
    """

    def __init__(self, warmup: int = 30, **params: Any) -> None:
        self.warmup = warmup
        self.params = params
        p = TailBank(warmup=warmup, capacity=1, **params)  # the same defaults, one place
        p.S = p.S[:0]  # only its parameters are used: no row in the pickled state
        self._p = p
        self.n = 0
        self.last_t = 0.0
        self.dtavg = 0.0
        self.level = self.levn = self.scale = self.q98 = self.magn = 0.0
        self.ref = self.es = self.en = self.held = self.run = 0.0
        self.nanom = 0
        self.first_t = 0.0
        self.prof = [0.0] * SLOTS
        self.prof_t = [0.0] * SLOTS
        self.levw = self.ew = 0.0
        self.wprof = [0.0] * WSLOTS if p.weekly else []
        self.tail = _Tail(p.lam0, p.beta0, p.xi_max, p.xi_est == "quantile", p._xmed)
        #: the last value and the data's resolution (smallest non-zero step seen)
        self.lastv = self.res = 0.0
        #: the previous regime (level, plain level, scale, quantile, weekly level, last sync time)
        self.olev = self.olevn = self.osc = self.oq98 = self.olevw = self.ot = 0.0
        #: calm samples since the last excursion beyond ``u``, the peak point score of its cluster
        self.gap, self.cpk = math.inf, 0.0
        #: with ``regime_hold``: the plain predictors' levels (never returned), which choose the profile
        self.slev = self.slevn = 0.0

    # ---------------------------------------------------------------- helpers
    def _phase(self, t: float) -> tuple[int, int, float]:
        interp = self._p.interpolate
        x = (t % 86400.0) * (SLOTS / 86400.0) - (0.5 if interp else 0.0)
        fl = math.floor(x)
        b0 = int(fl) % SLOTS
        return b0, (b0 + 1) % SLOTS, (x - fl) if interp else 0.0

    def _assess(self, t: float, y: float) -> dict[str, float]:
        p = self._p
        b0, b1, f = self._phase(t)
        prof = self.prof[b0] + f * (self.prof[b1] - self.prof[b0])
        fresh = self.n == 0
        lev = y - prof if fresh else self.level
        levn = y if fresh else self.levn
        magn = abs(y) if fresh else self.magn
        use = self.es < self.en * p.seasonal_gain and not fresh and t - self.first_t >= 86400.0
        expected = lev + prof if use else levn
        w = int((t % WEEK) * (1.0 / 1800.0)) % WSLOTS
        pw = self.wprof[w] if p.weekly else 0.0
        levw = y - pw if fresh else self.levw
        if p.weekly and not fresh and t - self.first_t >= WEEK and \
                self.ew < (self.es if use else self.en) * p.seasonal_gain:
            expected = levw + pw
        r = y - expected
        floor = max(p.rel_floor * magn, self.q98 * p.q98_floor, self.res * p.res_floor) + 1e-12
        if p.counts:
            floor = max(floor, math.sqrt(abs(expected) + 1.0))
        sc = floor if fresh else self.scale
        scale = max(sc * 1.2533, floor)
        z = r / scale
        rate_t = max(p.tail_rate, 1.0 / (self.n + p.prior_n))
        tkw = {"rate": rate_t, "kt": p.lam_kt, "unc": p.xi_unc, "top": p.xi_top}
        s = self.tail.surprisal(z, p.u, **tkw)
        if p.lam_kt > 0 and scale <= 2e-12:  # never varied: the rank's p, no more
            s = min(s, math.log10(self.n + 2.0))
        run = s
        if p.run_rho > 0:
            same = (self.run > 0) == (z > 0)
            run = s + p.run_rho * (abs(self.run) if same else 0.0)
            s = max(s, p.run_gain * run)
        point = s / (s + SURPRISAL_HALF)
        q98 = self.q98
        calm_o = True  # calm under the previous regime (it is the current one when synced)
        tl = self.tail
        plain = (scale, use, tl.lu, tl.bu, tl.ld, tl.bd, tl.xu, tl.xd)  # the current baseline's, for the choice
        if p.regime_hold > 0 and not fresh and self.ot < self.last_t:
            use_w = p.weekly and t - self.first_t >= WEEK and \
                self.ew < (self.es if use else self.en) * p.seasonal_gain
            exp_o = self.olevw + pw if use_w else (self.olev + prof if use else self.olevn)
            fl_o = max(p.rel_floor * magn, self.oq98 * p.q98_floor, self.res * p.res_floor) + 1e-12
            if p.counts:
                fl_o = max(fl_o, math.sqrt(abs(exp_o) + 1.0))
            scale_o = max(self.osc * 1.2533, fl_o)
            z_o = (y - exp_o) / scale_o
            s_o = self.tail.surprisal(z_o, p.u, **tkw)
            point_o = s_o / (s_o + SURPRISAL_HALF)
            calm_o = point_o < p.gate
            if point >= p.gate and calm_o and t - self.ot <= p.regime_hold:
                # back to the previous regime: anomalous under the current baseline, not under it
                expected, r, scale, z, s, run, point = exp_o, y - exp_o, scale_o, z_o, s_o, s_o, point_o
                lev, levn, sc, q98, levw = self.olev, self.olevn, self.osc, self.oq98, self.olevw
        ok = fresh or t > self.last_t
        if self.n < self.warmup or not ok:
            point = 0.0
        on = p.excursion_hold > 0 and ((self.run > 0 and z > p.u) or (self.run < 0 and z < -p.u))
        fade = p.excursion_hold if on else p.decay
        if not on and p.calm_decay > 0 and abs(z) < p.calm_z:
            fade = p.calm_decay
        faded = self.held * fade
        shown = max(point, faded)
        hit = abs(z) > p.u
        incl = hit and self.gap <= p.realert_gap and p.realert_gap > 0
        if incl and point <= self.cpk:  # the same cluster, not worse: no new alert
            shown = max(faded, min(point, self.held))
        cpk = (max(self.cpk, point) if incl else point) if hit else self.cpk
        gap = 0.0 if hit else min(self.gap + 1.0, 1e9)
        if not ok:
            shown = 0.0
        return {"run": run if z > 0 else -run, "b0": b0, "b1": b1, "w": w, "pw": pw, "levw": levw, "f": f, "prof": prof, "lev": lev, "levn": levn, "magn": magn,
                "expected": expected, "r": r, "scale": scale, "sc": sc, "z": z, "point": point,
                "shown": shown, "ok": ok, "q98": q98, "calm_o": calm_o, "plain": plain, "gap": gap, "cpk": cpk}

    # ---------------------------------------------------------------- River API
    def score_one(self, x: dict[str, float]) -> float:
        """The shown score of this sample (no side effects)."""
        return self._assess(float(x["t"]), float(x["y"]))["shown"]

    def learn_one(self, x: dict[str, float]) -> None:
        t, y = float(x["t"]), float(x["y"])
        a = self._assess(t, y)
        if not a["ok"]:
            return
        p = self._p
        fresh = self.n == 0
        calm = a["point"] < p.gate
        self.nanom = 0 if calm else self.nanom + 1
        g = 1.0 if calm else p.gated
        if p.reseed_after > 0 and self.nanom > p.reseed_after:
            g = 1.0
        inv = 1.0 / (self.n + 1.0)
        scale = a["scale"]
        cl = p.clip * scale
        prof = a["prof"]
        es = y - (a["lev"] + prof)
        en = y - a["levn"]
        rate = max(p.alpha, inv) * g
        self.level = a["lev"] + rate * min(max(es, -cl), cl)
        self.levn = a["levn"] + rate * min(max(en, -cl), cl)
        ra = abs(a["r"])
        gs = g if p.scale_gate == p.gate else (1.0 if a["point"] < p.scale_gate else p.gated)
        if p.reseed_after > 0 and self.nanom > p.reseed_after:
            gs = 1.0
        self.scale = a["sc"] + max(p.scale_rate, inv) * gs * (min(ra, cl) - a["sc"])
        self.magn = a["magn"] + max(5e-4, inv) * (abs(y) - a["magn"])
        q = a["q98"] if a["q98"] > 0 else max(ra, 1e-12)
        eta_q = max(0.05, 2.0 * inv)
        self.q98 = q + eta_q * (ra - q) if ra > q else q * math.exp(-p.q98_decay * eta_q)
        if p.res_floor > 0:  # the resolution: the grain of the steps (approximate gcd)
            d = 0.0 if fresh else abs(y - self.lastv)
            res = self.res
            if d > 0 and (res == 0 or (res > 0 and math.fmod(d, res) != 0)):
                g = float(_grain(np.array([res]), np.array([d]))[0])
                res = -2.0 if g < _GRAIN_MIN * max(a["magn"], d) else g
            self.res = res
            self.lastv = y
        rate_t = max(p.tail_rate, 1.0 / (self.n + p.prior_n))
        if p.decluster:
            peak = self.tail.learn_runs(a["z"], self.run, p.u, rate_t)
        else:
            self.tail.learn(a["z"], p.u, rate_t, 1.0 if calm else p.tail_gate)
        # daily profile
        ref = y if fresh else self.ref
        dt_raw = 0.0 if fresh else min(t - self.last_t, 3600.0)
        dtavg = self.dtavg if self.dtavg > 0 else dt_raw
        dt = min(dt_raw, 2.0 * dtavg)
        self.dtavg = dtavg + 0.05 * (dt_raw - dtavg)
        sw = 86400.0 / SLOTS
        b0, b1, f = a["b0"], a["b1"], a["f"]
        ht0 = self.prof_t[b0] + dt * (1 - f)
        ht1 = self.prof_t[b1] + dt * f
        gp = 1.0 if calm else p.profile_gated
        gh = max(dt / max(ht0 + ht1, 0.5 * sw), dt / (sw * p.cycles)) * gp
        eh = min(max(y - ref - prof, -cl), cl)
        self.prof[b0] += (1 - f) * gh * eh
        self.prof[b1] += f * gh * eh
        self.prof_t[b0] = min(ht0, 10 * sw)
        self.prof_t[b1] = min(ht1, 10 * sw)
        a_ref = max(-math.expm1(-dt / 86400.0), inv) * gp
        self.ref = ref + a_ref * min(max(y - prof - ref, -cl), cl)
        ae = -math.expm1(dt * (-1.0 / p.err_tau)) if p.err_tau > 0 else p.err_rate
        if p.weekly:
            pw = a["pw"]
            ew = y - (a["levw"] + pw)
            self.levw = a["levw"] + rate * min(max(ew, -cl), cl)
            first = t if fresh else self.first_t
            elapsed = math.floor((t - first) * (1.0 / WEEK)) * sw + max(t % sw, dt)
            gw = max(dt / max(elapsed, 0.5 * sw), dt / (sw * p.cycles)) * gp
            self.wprof[a["w"]] = pw + gw * min(max(y - ref - pw, -cl), cl)
            self.ew = 0.0 if fresh else self.ew + ae * (min(abs(ew), cl) - self.ew)
        if p.regime_hold > 0:  # plain predictors that never return, gated by their own score
            slev = y - prof if fresh else self.slev
            slevn = y if fresh else self.slevn
            es = y - (slev + prof)
            en = y - slevn
            sc_p, use_p = a["plain"][:2]
            tl = self.tail  # the tail as just learned (the bank reads it after its update too)
            lu, bu, ld, bd, xu, xd = tl.lu, tl.bu, tl.ld, tl.bd, tl.xu, tl.xd
            e = es if use_p else en
            zp = abs(e) / sc_p
            lam, beta = (lu, bu) if e > 0 else (ld, bd)
            s0 = -math.log10(max(lam, 1e-9))
            if zp <= p.u:
                sp = s0 * (zp / p.u) ** 2
            elif p.xi_max > 0:
                xi = xu if e > 0 else xd
                sp = s0 + math.log1p(xi * (zp - p.u) / (beta * (1.0 - xi))) / (xi * _LN10)
            else:
                sp = s0 + (zp - p.u) / (beta * _LN10)
            calm_p = sp / (sp + SURPRISAL_HALF) < p.gate or self.n < self.warmup
            rate_p = max(p.alpha, inv) * (1.0 if calm_p else p.gated)
            self.slev = slev + rate_p * min(max(es, -cl), cl)
            self.slevn = slevn + rate_p * min(max(en, -cl), cl)
        if fresh:
            self.es = self.en = 0.0
            self.first_t = t
        else:
            self.es += ae * (min(abs(es), cl) - self.es)
            self.en += ae * (min(abs(en), cl) - self.en)
        if p.regime_hold > 0 and (fresh or (a["point"] < p.gate and a["calm_o"])
                                  or t - self.ot > p.regime_hold):
            self.olev, self.olevn, self.osc, self.oq98 = self.level, self.levn, self.scale, self.q98
            self.olevw, self.ot = self.levw, t
        if p.realert_gap > 0:
            self.gap, self.cpk = a["gap"], a["cpk"]
        self.held = a["shown"]
        self.run = peak if p.decluster else a["run"]
        self.last_t = t
        self.n += 1


class Calibrated(base.AnomalyDetector):
    """Any River detector's raw score, mapped to the calibrated scale.

    The raw score is standardised by its own running median-like level and mean
    absolute deviation, and its upper tail is fitted online (peaks over 2
    deviations, exponential excess) exactly as the residuals of
    :class:`CalibratedTail` are: ``score = s / (s + 1.5)`` with ``s = -log10 p``.
    ``x`` is the River dict ``{"t": ..., "y": ...}``; the wrapped detector sees
    ``{"y": y}`` scaled to [0, 1] by a running min-max (Half-space trees need it)
    or, for a supervised detector (``PredictiveAnomalyDetection``), ``(None, y)``.
    """

    def __init__(self, detector: Any, warmup: int = 30) -> None:
        self.detector = detector
        self.warmup = warmup
        self.supervised = isinstance(detector, base.SupervisedAnomalyDetector)
        self.minmax = preprocessing.MinMaxScaler()
        self.level = stats.EWMean(fading_factor=0.01)
        self.dev = stats.EWMean(fading_factor=0.01)
        self.tail = _Tail(0.023, 0.6)
        self.n = 0
        self.held = 0.0

    def _raw(self, y: float) -> float:
        if self.supervised:
            d = copy.deepcopy(self.detector)  # PredictiveAnomalyDetection.score_one updates itself
            return float(d.score_one(None, y))
        x = self.minmax.transform_one({"y": y})
        return float(self.detector.score_one(x))

    def _assess(self, y: float) -> tuple[float, float]:
        raw = self._raw(y)
        d = max(self.dev.get(), 1e-9)
        z = (raw - self.level.get()) / (1.2533 * d)
        s = self.tail.surprisal(z, 2.0) if z > 0 else 0.0
        point = s / (s + SURPRISAL_HALF) if self.n >= self.warmup else 0.0
        return z, point

    def score_one(self, x: dict[str, float]) -> float:
        _, point = self._assess(float(x["y"]))
        return max(point, 0.9 * self.held)

    def learn_one(self, x: dict[str, float]) -> None:
        y = float(x["y"])
        z, point = self._assess(y)
        # River's PredictiveAnomalyDetection learns its error statistics in score_one:
        # the real call (not the pure copy of _raw) lets them learn, or its threshold stays
        # 0 and every raw score is 1.0
        raw = float(self.detector.score_one(None, y)) if self.supervised else self._raw(y)
        self.held = max(point, 0.9 * self.held)
        self.dev.update(abs(raw - self.level.get()))
        self.level.update(raw)
        if self.n > 0:
            self.tail.learn(z, 2.0, max(2e-4, 1.0 / (self.n + 300)))
        if self.supervised:
            self.detector.learn_one(None, y)
        else:
            self.minmax.learn_one({"y": y})
            self.detector.learn_one(self.minmax.transform_one({"y": y}))
        self.n += 1


#: detectors a metric family can be given in the configuration
RIVER_DETECTORS = ("calibrated_tail", "half_space_trees", "predictive")


def make_detector(name: str, warmup: int = 30) -> base.AnomalyDetector:
    """A fresh detector by configuration name (see :data:`RIVER_DETECTORS`)."""
    if name == "calibrated_tail":
        return CalibratedTail(warmup=warmup)
    if name == "half_space_trees":
        return Calibrated(anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=42),
                          warmup=warmup)
    if name == "predictive":
        from river import time_series

        return Calibrated(anomaly.PredictiveAnomalyDetection(
            time_series.SNARIMAX(p=2, d=0, q=0), horizon=1, n_std=3.0, warmup_period=warmup),
            warmup=warmup)
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(RIVER_DETECTORS)}")

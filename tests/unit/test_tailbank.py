"""The calibrated tail bank on the series kinds production has (generated shapes: smoke
tests of behaviour; quality is measured on real KPIs by bench/bench_kpi.py)."""

from __future__ import annotations

import math

import numpy as np

from sre_agent.config import AnomalySettings
from sre_agent.models.tailbank import (BU, LAST_T, LU, MEDU, N, XIU, TailBank, _beta_of_median,
                                       score_of, surprisal_of)
from sre_agent.processors.detect import MetricDetector
from sre_agent.schemas import MetricBatch

T0 = 1_700_000_000.0
DAY = 1440  # one-minute samples


def run(values: np.ndarray, step: float = 60.0, **kw: float) -> np.ndarray:
    bank = TailBank(capacity=1, **kw)  # type: ignore[arg-type]
    slot = np.array([bank.add()])
    out = np.zeros(len(values))
    for i, v in enumerate(values):
        out[i] = bank.step(slot, np.array([T0 + step * i]), np.array([float(v)])).score[0]
    return out


def onsets(scores: np.ndarray, thr: float = 0.7) -> int:
    c = scores >= thr
    return int((c & ~np.r_[False, c[:-1]]).sum())


def test_score_maps_to_a_fixed_tail_probability() -> None:
    assert score_of(3.5) == 0.7 and abs(surprisal_of(0.7) - 3.5) < 1e-12
    assert abs(surprisal_of(0.95) - 28.5) < 1e-9


def test_mostly_zero_counts_do_not_alert_on_ordinary_counts_but_on_a_burst() -> None:
    rng = np.random.default_rng(3)
    v = np.where(rng.random(4 * DAY) < 0.05, rng.poisson(8, 4 * DAY) + 1, 0).astype(float)
    s = run(v)
    assert onsets(s[DAY:]) <= 3  # three days of ordinary counts: at most one alert a day
    burst = np.concatenate([v, [400.0, 380.0, 420.0]])
    assert run(burst)[-3:].max() >= 0.7


def test_near_constant_series_ignores_trivia_but_not_a_real_change() -> None:
    rng = np.random.default_rng(4)
    v = 100.0 + np.where(rng.random(3 * DAY) < 0.01, 0.1, 0.0)  # rare 0.1 % blips
    s = run(v)
    assert onsets(s[DAY:]) == 0
    s2 = run(np.concatenate([v, [110.0]]))
    assert s2[-1] >= 0.7


def test_daily_square_wave_is_learned_and_a_spike_on_it_alerts() -> None:
    rng = np.random.default_rng(5)
    i = np.arange(5 * DAY)
    day = ((T0 + 60 * i) % 86400) / 86400
    v = 100 + np.where((day >= 0.25) & (day < 0.75), 40.0, 0.0) + rng.normal(0, 2, len(i))
    s = run(v)
    assert onsets(s[2 * DAY:]) == 0  # from day three on the edges are expected
    v2 = v.copy()
    v2[4 * DAY + 100] += 40
    assert run(v2)[4 * DAY + 100] >= 0.7


def test_huge_spikes_never_reach_one_and_order_by_size() -> None:
    rng = np.random.default_rng(6)
    base = 50 + rng.normal(0, 1, 600)
    a = run(np.concatenate([base, [80.0]]))[-1]
    b = run(np.concatenate([base, [5000.0]]))[-1]
    assert 0.7 <= a < b < 1.0


def test_one_episode_per_anomaly_no_flapping() -> None:
    rng = np.random.default_rng(7)
    det = MetricDetector(AnomalySettings())
    vals = list(50 + rng.normal(0, 1, 600))
    vals[500:510] = [58, 57, 59, 56, 58, 57, 59, 58, 57, 58]  # a noisy 8-sigma plateau
    pts = [(T0 + 60 * i, float(v)) for i, v in enumerate(vals)]
    out = det.update(MetricBatch(source="t", series=[{"name": "m", "labels": {}, "points": pts}]))
    assert [a.status for a in out if a.time.timestamp() >= T0 + 60 * 500][:1] == ["open"]
    assert sum(a.status == "open" for a in out) == 1


def test_a_steady_ramp_seen_for_hours_is_no_daily_shape_and_no_anomaly() -> None:
    """A noiseless memory ramp (3 h, not aligned to the half hour) must not alert: the
    daily profile is considered only after a whole day (a regression: slot edges of a
    half-learned profile alerted on a ramp)."""
    det = MetricDetector(AnomalySettings())
    t0 = T0 + 777.0
    out = []
    for a in range(0, 180, 10):
        pts = [(t0 + 60 * m, 0.5 + 0.08 * m / 60) for m in range(a, a + 10)]
        out += det.update(MetricBatch(source="t", series=[
            {"name": "memory_limit_ratio", "labels": {"service": "payments"}, "points": pts}]))
    assert out == []


def test_a_return_to_the_previous_regime_is_no_new_anomaly_and_the_next_one_is_seen() -> None:
    # a 2-hour excursion the baseline partly learns, the series returns to where it was,
    # and an hour later it jumps again (the shape of KPI adb2fde9... rows 79185-79400):
    # the return must not alert, and the next jump must be judged against the calm
    # series' scale, not against the scale widened by the excursion
    rng = np.random.default_rng(5)
    v = 100 + rng.normal(0, 2, 2 * DAY)
    a = DAY + 300
    v[a:a + 120] += 60
    v[a + 180] += 30
    s = run(v)
    assert s[a] >= 0.7
    assert onsets(s[a + 121:a + 175]) == 0  # the return
    assert s[a + 180] >= 0.7  # 15 sigma of the calm series
    old = run(v, regime_hold=0.0)  # without the previous regime (state v5): both fail
    assert onsets(old[a + 121:a + 175]) == 1 and old[a + 180] < 0.7


def test_a_cluster_of_excursions_alerts_once_unless_it_grows() -> None:
    rng = np.random.default_rng(6)
    v = 100 + rng.normal(0, 2, 2 * DAY)
    a = DAY + 300
    for k in range(4):  # four 12-sigma spikes, two calm samples apart: one cluster
        v[a + 3 * k] += 24
    v[a + 14] += 60  # still the cluster (within 5 samples), and much worse: alerts again
    s = run(v)
    assert onsets(s[a:a + 12]) == 1
    assert onsets(s[a + 12:a + 20]) == 1
    old = run(v, realert_gap=0)  # state v5: every spike of the burst opened an alert
    assert onsets(old[a:a + 12]) >= 3


def _onsets_at(noise: np.ndarray, threshold: float, **params: float) -> int:
    """Alert onsets of the shown score at ``threshold`` after a day of learning (1-minute samples)."""
    bank = TailBank(capacity=1, **params)
    s = np.array([bank.add()])
    t = 1.7e9 + 60.0 * np.arange(len(noise))
    shown = np.array([bank.step(s, t[i:i + 1], noise[i:i + 1]).score[0] for i in range(len(noise))])
    c = shown[1440:] >= threshold
    return int((c & ~np.r_[False, c[:-1]]).sum())


def test_heavy_tailed_noise_is_not_scored_as_rarer_than_it_is() -> None:
    """Student-t(2) noise (generalised Pareto shape 0.5): under the exponential tail (shape 0,
    detector state v7) its routine large excursions scored 0.8, a promised 1e-6 per sample and
    direction, 13 times in 9 days (0.03 expected). The fitted shape (bounded at 0.125) at least
    halves that; Gaussian noise keeps its scores (the shape stays near 0)."""
    rng = np.random.default_rng(1)
    heavy = 100 + rng.standard_t(2, size=10 * 1440)
    exponential = _onsets_at(heavy, 0.8, xi_max=0.0)
    assert exponential >= 10
    assert _onsets_at(heavy, 0.8) <= exponential / 2
    calm = 100 + rng.normal(size=10 * 1440)
    assert _onsets_at(calm, 0.8) == 0


def test_a_far_tail_fitted_from_few_excesses_is_not_extrapolated_as_if_exact() -> None:
    """The same fitted tail (rate, mean excess, shape) read by a young series and by an old
    one: the young fit rests on a few excesses, so far beyond the knot it may promise less
    rarity (the tail averaged over its shape's uncertainty); near the knot both agree.
    Before: the point estimate was extrapolated alike, whatever evidence it rested on (on the
    KPI dev set a score of 0.8 fired 6 times as often as promised)."""
    from sre_agent.models.tailbank import BU, LU, N, XIU

    rng = np.random.default_rng(2)
    bank = TailBank(capacity=2)
    s = np.array([bank.add(), bank.add()])
    for i in range(3000):
        bank.step(s, np.full(2, T0 + 60.0 * i), 100 + rng.normal(size=2))
    bank.S[s[1]] = bank.S[s[0]]
    bank.S[s[0], N], bank.S[s[1], N] = 200.0, 200_000.0  # same fit, few vs many excesses
    bank.S[s, LU], bank.S[s, BU], bank.S[s, XIU] = 0.01, 0.6, 0.05
    e, sc = bank.expected_at(int(s[0]), T0 + 60.0 * 3000)
    t = np.full(2, T0 + 60.0 * 3000)
    near = bank.step(s, t, np.full(2, e + 2.5 * sc), learn=False).point
    far = bank.step(s, t, np.full(2, e + 40 * sc), learn=False).point
    assert abs(near[0] - near[1]) < 0.01
    assert far[0] < far[1] - 0.02


def test_a_side_without_excursions_for_long_is_no_certainty_that_none_comes() -> None:
    """A side with no excursion beyond 2 scales for 100,000 samples has a fitted rate of
    about 0 (1e-10): a 1.9-scale move then scored 0.84, a promised one in 10^8 samples,
    though the fit's window (1 / tail_rate = 5,000 samples) can tell a rate only down to
    about half an event in it. Now the rate read is at least that (Krichevsky-Trofimov)."""
    from sre_agent.models.tailbank import LD

    rng = np.random.default_rng(4)
    bank = TailBank(capacity=1)
    s = np.array([bank.add()])
    for i in range(3000):
        bank.step(s, np.array([T0 + 60.0 * i]), np.array([100 + rng.normal()]))
    bank.S[s[0], LD] = 1e-10
    e, sc = bank.expected_at(int(s[0]), T0 + 60.0 * 3000)
    p = bank.step(s, np.array([T0 + 60.0 * 3000]), np.array([e - 1.9 * sc]), learn=False).point
    assert p[0] < 0.75


def test_the_first_change_of_a_series_that_never_varied_is_as_rare_as_its_rank() -> None:
    """3,000 exact zeros then 1.75: no spread was ever measured, so the scale is the floor's
    epsilon and z was 1.7e12 (score 0.9999999996, 'truly extreme'). With nothing to measure
    against, the change is as rare as its rank among the samples seen (p = 1 / 3,002):
    score 0.70. A change on a series that does vary is scored as before."""
    s = run(np.r_[np.zeros(3000), 1.75])
    assert 0.6 < s[-1] <= 0.71


def test_band_halfwidth_is_the_predictive_tails_quantile() -> None:
    """The band's edge (Newton on the predictive tail, scalar) has exactly the score it
    stands for under the scoring's own tail (``_gpd_tail``), on series of several kinds."""
    rng = np.random.default_rng(11)
    kinds = [100 + rng.normal(0, 1, 3000), 100 + rng.standard_t(3, 3000),
             np.where(rng.random(3000) < 0.05, rng.poisson(8, 3000) + 1, 0).astype(float),
             rng.lognormal(3, 1, 300), 100 + rng.normal(0, 1, 40)]
    for values in kinds:
        bank = TailBank(capacity=1)
        slot = bank.add()
        for i, v in enumerate(values):
            bank.step(np.array([slot]), np.array([T0 + 60 * i]), np.array([float(v)]))
        row = bank.S[slot]
        _, scale = bank.expected_at(slot, float(row[LAST_T]))
        n = float(row[N])
        lam = max(float(row[LU]), 1e-9)
        lam = max(lam, bank.lam_kt * max(bank.tail_rate, 1.0 / (n + bank.prior_n)))
        s0 = -math.log10(lam)
        beta = float(row[BU])
        if bank._xmed:  # the scale from the median excess (xi_scale="median")
            beta = float(_beta_of_median(np.array([row[MEDU]]), np.array([max(row[XIU], 1e-9)]))[0])
        for score in (0.6, 0.7, 0.8, 0.9, 0.95):
            z = bank.band_halfwidth(slot, score) / scale
            got = bank._gpd_tail(np.array([s0]), np.array([z]), np.array([beta]),
                                 np.array([max(float(row[XIU]), 1e-9)]), np.array([lam]),
                                 np.array([n]))[0]
            assert abs(got - surprisal_of(score)) <= 1e-6 * surprisal_of(score), (score, got)


def test_a_heavy_tail_is_measured_and_its_far_tail_keeps_its_promise() -> None:
    """Student-t(3) noise (shape 1/3), 60 series x 10 days: a score of 0.8 promises 1e-6
    per sample and direction. The shape from the excesses' mean square (method of moments,
    state v8) is biased low on such a tail (its fourth moment is infinite; winsorised at 10
    mean excesses it read 0.2 even unbounded) and 0.8 fired 20 times its promise with the
    bound at 0.5 (35 times at 0.125). The share of excesses beyond 4 medians gives the shape
    without that bias; with the bound at 0.5 the far tail keeps its promise within 3x. (The
    default bound stays lower: docs/cognition.md, the KPI trade-off.)"""
    from sre_agent.models.tailbank import XID

    rng = np.random.default_rng(0)
    k, days = 60, 10
    bank = TailBank(capacity=k, xi_max=0.5)
    s = np.array([bank.add() for _ in range(k)])
    prev = np.zeros(k, bool)
    opened = samples = 0
    for i in range(days * DAY):
        shown = bank.step(s, np.full(k, T0 + 60.0 * i), 100 + rng.standard_t(3, k)).score
        if i >= 2 * DAY:  # two days of learning
            c = shown >= 0.8
            opened += int((c & ~prev).sum())
            prev = c
            samples += k
    promised = 2 * 10 ** -surprisal_of(0.8) * samples
    assert opened <= 3 * promised, (opened, promised)
    xi = np.median(bank.S[s][:, [XIU, XID]])
    assert 0.25 <= xi <= 0.45, xi


def _onset_ratios(draw, k: int = 60, days: int = 10, **params) -> dict[float, float]:
    """Alert onsets of the shown score at 0.7 and 0.8 over their promise (either direction),
    ``k`` series of 1-minute samples ``100 + draw(rng, k)`` after two days of learning."""
    rng = np.random.default_rng(0)
    bank = TailBank(capacity=k, **params)
    s = np.array([bank.add() for _ in range(k)])
    prev = {th: np.zeros(k, bool) for th in (0.7, 0.8)}
    opened = dict.fromkeys(prev, 0)
    samples = 0
    for i in range(days * DAY):
        shown = bank.step(s, np.full(k, T0 + 60.0 * i), 100 + draw(rng, k)).score
        if i >= 2 * DAY:
            for th in prev:
                c = shown >= th
                opened[th] += int((c & ~prev[th]).sum())
                prev[th] = c
            samples += k
    return {th: opened[th] / (2 * 10 ** -surprisal_of(th) * samples) for th in prev}


def test_heavy_tailed_noise_keeps_the_promise_by_default() -> None:
    """Student-t(3) noise (shape 1/3), the default detector: 0.8 (1e-6 per sample and
    direction) and 0.7 fire within 2.5x of their promise. Before (state v9's scoring: shape
    bound 0.2, the tail's scale from the winsorised mean excess) 0.8 fired 4.3x its promise
    here (8x on 200 series x 4 days; the bound 0.5 alone cost the KPI dev set's recall
    target). Now the bound is 0.5 and the scale comes from the excesses' median (bounded
    influence, like the shape): 0 onsets at 0.8 (1.2 promised), 0.7 at 0.71x."""
    t3 = _onset_ratios(lambda rng, k: rng.standard_t(3, k))
    assert t3[0.8] <= 2.5 and 0.4 <= t3[0.7] <= 2.0, t3
    old = _onset_ratios(lambda rng, k: rng.standard_t(3, k), xi_max=0.2, xi_scale="mean")
    assert old[0.8] >= 4.0, old


def test_a_single_count_after_long_zeros_is_no_anomaly_but_a_burst_is() -> None:
    """A count that was 1 or 2 a few times on its first day, then 0 for three days: its
    scale floor (a high quantile of |residual| that decays between excursions) had fallen
    to ~1e-3, so a single 1 scored 0.87 (above 0.8, 'one in a million'). The floor now also
    sits at the data's resolution, the smallest non-zero step seen (1 here): a single 1 is
    one scale; a burst of tens still alerts."""
    rng = np.random.default_rng(5)
    v = np.zeros(6 * DAY)
    v[rng.choice(DAY, 20, replace=False)] = rng.integers(1, 3, 20)
    v[4 * DAY] = 1.0
    s = run(v)
    assert s[4 * DAY] < 0.6 and onsets(s[DAY:]) == 0
    b = v.copy()
    b[5 * DAY:5 * DAY + 3] = [40.0, 35.0, 50.0]
    assert run(b)[5 * DAY:5 * DAY + 3].max() >= 0.7


def test_state_v8_is_migrated_not_relearned() -> None:
    """Detector state saved by version 8 (``tests/unit/data/detector_state_v8.bin``: the
    count above after 5,760 samples, written by the v8 code) loads into the v9 layout: the
    series keeps its age and baseline (no new warm-up), its shape columns are converted,
    its resolution (not in v8 state) is learned from its next steps: v8 opened an anomaly
    (0.87) on every single 1 after long zeros; once migrated, only the first one (which
    shows the grain) can, and a burst still opens."""
    from pathlib import Path

    from sre_agent.schemas import series_id
    from tests.unit.test_detect import LABELS, batch

    raw = (Path(__file__).with_name("data") / "detector_state_v8.bin").read_bytes()
    assert raw[:1] == b"\x08"
    sid = series_id("dead_letters", LABELS)
    det = MetricDetector(AnomalySettings(), load={sid: raw}.get)
    start = 4 * DAY
    assert det.update(batch([0.0, 0.0], start=start, name="dead_letters")) == []
    assert det.describe(det.slot_of[sid])["n"] == start + 2  # restored, not relearned
    first = det.update(batch([1.0] + [0.0] * 99, start=start + 2, name="dead_letters"))
    assert [a.status for a in first] in ([], ["open", "resolved"])
    assert det.update(batch([1.0] + [0.0] * 9, start=start + 102, name="dead_letters")) == []
    out = det.update(batch([0.0, 40.0, 35.0], start=start + 112, name="dead_letters"))
    assert [a.status for a in out] == ["open"]
    saved = det.take_dirty()[sid]
    assert saved[:1] == b"\x09" and len(saved) == 1 + TailBank().width * 8

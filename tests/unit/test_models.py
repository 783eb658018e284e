"""Contract suite of the online models: pure scoring, state round trip, cold start,
bounded state, robustness; and what each detector of the bank catches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sre_agent.models import DETECTORS, SeasonalDetector, SeriesBank, band_z
from sre_agent.models.bank import LAST_T, N, WIDTH
from sre_agent.models.forecast import TrendForecaster
from sre_agent.models.templates import TemplateMiner, mask

T0 = 1_700_000_000.0


def noisy(n: int, seed: int = 1, sigma: float = 1.0, level: float = 100.0,
          step: float = 60.0) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    return [(T0 + step * i, level + sigma * float(rng.normal())) for i in range(n)]


def trained(n: int = 600, **kw: float) -> SeasonalDetector:
    m = SeasonalDetector(**kw)  # type: ignore[arg-type]
    for t, v in noisy(n):
        m.learn_one(t, v)
    return m


# ------------------------------------------------------------------ contract
def test_score_one_is_pure() -> None:
    m = trained()
    before = m.to_bytes()
    a = m.score_one(T0 + 60 * 700, 130.0)
    b = m.score_one(T0 + 60 * 700, 130.0)
    assert a == b
    assert m.to_bytes() == before


def test_state_round_trip_continues_identically() -> None:
    m = trained()
    m2 = SeasonalDetector.from_bytes(m.to_bytes())
    for t, v in noisy(200, seed=9):
        t += 60 * 1000
        assert m.score_learn_one(t, v) == m2.score_learn_one(t, v)
    assert m.to_bytes() == m2.to_bytes()


def test_cold_start_and_warmup_never_alert() -> None:
    m = SeasonalDetector(warmup=30)
    first = m.score_learn_one(T0, 5.0)
    assert first.score == 0.0 and not first.warm and first.expected == 5.0
    for i in range(1, 30):
        s = m.score_learn_one(T0 + 60 * i, 5.0 if i % 2 else 5000.0)  # wild, but warming up
        assert s.score == 0.0
    assert m.score_one(T0 + 60 * 31, 5.0).warm


def test_state_is_bounded_and_compact() -> None:
    m = trained(50)
    size = len(m.to_bytes())
    for t, v in noisy(5000, seed=3):
        m.learn_one(t + 86400 * 30, v)
    assert len(m.to_bytes()) == size == WIDTH * 8
    assert size + 1 <= 4096  # the table value (with its version byte) <= 4 KiB


def test_out_of_order_sample_scores_zero_and_is_not_learned() -> None:
    m = trained()
    before = m.to_bytes()
    s = m.score_learn_one(T0 + 60 * 10, 1e6)  # older than the last sample
    assert s.score == 0.0 and not s.warm
    assert m.to_bytes() == before


def test_bank_rows_are_independent_of_their_neighbours() -> None:
    """The vectorised step gives each series exactly what it would get alone."""
    rng = np.random.default_rng(5)
    data = [rng.normal(10 * (k + 1), k + 1, 400) for k in range(3)]
    data[1][300] += 50  # a spike in one series only
    bank = SeriesBank()
    slots = np.array([bank.add() for _ in range(3)])
    together = []
    for i in range(400):
        out = bank.step(slots, np.full(3, T0 + 60 * i), np.array([d[i] for d in data]))
        together.append(out.score)
    for k in range(3):
        alone = SeasonalDetector()
        scores = [alone.score_learn_one(T0 + 60 * i, float(data[k][i])).score for i in range(400)]
        assert np.allclose(scores, [row[k] for row in together])
        assert np.array_equal(alone.bank.S[0], bank.S[slots[k]])


def test_row_from_bytes_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="expected"):
        SeriesBank.row_from_bytes(b"\x00" * 12)


def test_bank_grows_and_reuses_slots() -> None:
    bank = SeriesBank(capacity=2)
    slots = [bank.add() for _ in range(5)]
    assert len(set(slots)) == 5 and len(bank) == 5
    bank.remove(slots[0])
    assert bank.add() == slots[0] and bank.S[slots[0], N] == 0


def test_band_z_is_monotonic_in_threshold() -> None:
    assert band_z(0.6) < band_z(0.7) < band_z(0.8)


# ------------------------------------------------------------------ detectors
def run(values: list[float], step: float = 60.0, **kw: float) -> list[dict[str, float]]:
    m = SeasonalDetector(**kw)  # type: ignore[arg-type]
    out = []
    for i, v in enumerate(values):
        s = m.score_learn_one(T0 + step * i, v)
        out.append({"score": s.score, **s.contributions})
    return out


def base(n: int = 1500, seed: int = 2) -> list[float]:
    return [v for _, v in noisy(n, seed=seed)]


def test_spike_and_dip_are_caught_by_the_spike_detector() -> None:
    vals = base()
    vals[1200] += 12
    vals[1300] -= 12
    out = run(vals)
    for i in (1200, 1300):
        assert out[i]["score"] >= 0.7 and out[i]["spike"] == out[i]["score"]
    assert max(o["score"] for o in out[100:1199]) < 0.7


def test_level_shift_is_caught_by_the_shift_detector() -> None:
    vals = base()
    for i in range(1200, 1500):
        vals[i] += 3.5  # below the spike detector's band
    out = run(vals)
    hits = [i for i in range(1200, 1260) if out[i]["score"] >= 0.7]
    assert hits and hits[0] < 1220
    assert out[hits[0]]["shift"] >= 0.7


def test_slow_drift_is_caught() -> None:
    vals = base(2000)
    for i in range(1200, 2000):
        vals[i] += min(12.0, 12.0 * (i - 1200) / 180)  # 12 sigma over 3 h
    out = run(vals)
    hits = [i for i in range(1200, 2000) if out[i]["score"] >= 0.7]
    assert hits and hits[0] < 1200 + 240
    assert max(o["score"] for o in out[100:1199]) < 0.7


def test_variance_change_is_caught_by_the_variance_detector() -> None:
    rng = np.random.default_rng(4)
    vals = base()
    for i in range(1200, 1300):
        vals[i] = 100 + 5 * float(rng.normal())
    out = run(vals)
    hits = [i for i in range(1200, 1300) if out[i]["score"] >= 0.7]
    assert hits and hits[0] < 1230
    assert any(out[i]["variance"] >= 0.7 for i in hits)


def test_daily_seasonality_is_learned_not_alerted() -> None:
    rng = np.random.default_rng(6)
    n = 60 * 24 * 5  # five days at one minute
    vals = [100 + 30 * math.sin(2 * math.pi * i / 1440) + float(rng.normal()) for i in range(n)]
    out = run(vals)
    assert max(o["score"] for o in out[1440:]) < 0.7


def test_irregular_sampling_and_gaps() -> None:
    rng = np.random.default_rng(8)
    m = SeasonalDetector()
    t = T0
    worst = 0.0
    for i in range(3000):
        t += float(rng.uniform(5, 120)) + (3600 if i % 700 == 0 else 0)  # hour-long gaps
        s = m.score_learn_one(t, 50 + float(rng.normal()))
        if i > 100:
            worst = max(worst, s.score)
    assert worst < 0.7
    assert m.score_one(t + 30, 80.0).score >= 0.7


def test_contributions_name_every_detector() -> None:
    s = trained().score_one(T0 + 60 * 700, 100.0)
    assert list(s.contributions) == list(DETECTORS)
    assert s.lower < s.expected < s.upper


def test_constant_series_alerts_on_any_real_change() -> None:
    out = run([3.0] * 200 + [4.0])
    assert out[-1]["score"] == 1.0
    assert max(o["score"] for o in out[:200]) < 1e-6


def test_count_series_use_a_poisson_floor() -> None:
    bank = SeriesBank(counts=True)
    s = np.array([bank.add()])
    for i in range(200):
        bank.step(s, np.array([T0 + 60 * i]), np.array([0.0]))
    one = bank.step(s, np.array([T0 + 60 * 201]), np.array([2.0]), learn=False)
    many = bank.step(s, np.array([T0 + 60 * 201]), np.array([12.0]), learn=False)
    assert one.score[0] < 0.7 <= many.score[0]


# ------------------------------------------------------------------ forecaster
def ramp(f: TrendForecaster, hours: float, per_hour: float, start: float = 0.4,
         noise: float = 0.003, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(int(hours * 60)):
        f.learn_one(T0 + 60 * i, start + per_hour * i / 60 + noise * float(rng.normal()))


def test_forecaster_time_to_limit() -> None:
    f = TrendForecaster()
    ramp(f, 10, 0.03)  # at 0.70 after 10 h: 1.0 in ~10 h; 0.9 in ~6.7 h
    eta, conf = f.time_to(0.9, horizon=8 * 3600)
    assert 6 * 3600 < eta < 7.5 * 3600 and conf > 0.7
    assert f.time_to(0.9, horizon=3 * 3600)[1] < 0.2
    assert f.time_to(0.5, horizon=3600) == (0.0, 1.0)  # already past


def test_forecaster_flat_or_falling_never_breaches() -> None:
    f = TrendForecaster()
    ramp(f, 10, 0.0)
    assert f.time_to(0.9, 6 * 3600)[1] < 0.05
    g = TrendForecaster()
    ramp(g, 10, -0.02, start=0.8)
    assert g.time_to(0.9, 6 * 3600) == (math.inf, 0.0)
    eta, conf = g.time_to(0.5, 6 * 3600, below=True)  # falling towards a floor
    assert 1 * 3600 < eta < 6 * 3600 and conf > 0.7


def test_forecaster_state_round_trip_and_late_samples() -> None:
    f = TrendForecaster()
    ramp(f, 5, 0.05)
    g = TrendForecaster.from_bytes(f.to_bytes())
    assert g.time_to(1.0, 6 * 3600) == f.time_to(1.0, 6 * 3600)
    assert g.learn_one(T0, 99.0) is False  # a sample from a closed bucket is ignored
    assert len(f.to_bytes()) < 2048


# ------------------------------------------------------------------ templates
def test_mask_hides_variables() -> None:
    toks = mask("user 3f2b8c1e-1d2a-4c3b-9a8e-1234567890ab from 10.0.0.1:443 0xdeadbeef "
                "took 12.5ms at 2024-01-02T03:04:05Z sha 9f86d081884c7d659a2f")
    assert toks == ["user", "<*>", "from", "<*>", "<*>", "took", "<*>", "at", "<*>", "sha", "<*>"]


def test_miner_merges_new_and_bounds() -> None:
    m = TemplateMiner(max_templates=20)
    a = m.add("Failed to connect to db-7 after 3 retries", error=True)
    b = m.add("Failed to connect to replica after 5 retries", error=True)
    assert a.is_new and not b.is_new and a.template_id == b.template_id
    assert b.template == "Failed to connect to <*> after <*> retries" and b.is_error
    for i in range(100):
        m.add(f"event kind{i} happened in region r{i % 3} now {i}", t=float(i))
    assert len(m.templates) <= 20


def test_miner_round_trip() -> None:
    m = TemplateMiner(seed="svc")
    for i in range(50):
        m.add(f"GET /api/items/{i} 200 {i}ms")
    m2 = TemplateMiner.from_bytes(m.to_bytes())
    assert m2.add("GET /api/items/999 200 5ms").template_id == m.add(
        "GET /api/items/998 200 6ms").template_id
    assert m2.lines == m.lines

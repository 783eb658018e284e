"""Contract suite over every detection model (in the spirit of River's check_estimator),
and the vectorised fast path checked against its River reference implementation."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sre_agent.models.river_detectors import CalibratedTail, make_detector
from sre_agent.models.tailbank import WIDTH, TailBank

T0 = 1_700_000_000.0


def series(n: int = 3000, seed: int = 1, step: float = 60.0) -> list[tuple[float, float]]:
    """Daily square wave + noise, a spike, a level shift, a gap and one late sample."""
    rng = np.random.default_rng(seed)
    out = []
    t = T0
    for i in range(n):
        t += step * (30 if i == 1500 else 1)  # a 30-interval gap
        day = (t % 86400) / 86400
        v = 100 + (40 if 0.3 < day < 0.7 else 0) + rng.normal(0, 2)
        if i == 2000:
            v += 60
        if 2500 <= i < 2600:
            v -= 25
        out.append((t, float(v)))
    if n > 1200:
        out.insert(1200, (out[1100][0], 1e6))  # late: neither scored nor learned
    return out


def weekly_series(days: int = 22, step: float = 600.0, seed: int = 3) -> list[tuple[float, float]]:
    """Weekdays with a daytime square wave, quiet weekends, a gap, an incident, irregular steps."""
    rng = np.random.default_rng(seed)
    out = []
    t = T0
    while t < T0 + days * 86400:
        t += step * (1 + 0.3 * rng.random()) + (6 * 3600 if len(out) == 1000 else 0)
        weekend = (int(t // 86400) + 3) % 7 >= 5
        day = (t % 86400) / 86400
        v = 50 + (0 if weekend else 40 if 0.3 < day < 0.7 else 10) + rng.normal(0, 2)
        if 2400 <= len(out) < 2410:
            v += 50
        out.append((t, float(v)))
    return out


class BankView:
    """One row of the vectorised bank behind the River-style API (for the contract)."""

    def __init__(self, **params: Any) -> None:
        self.bank = TailBank(capacity=1, **params)
        self.slot = np.array([self.bank.add()])

    def learn_one(self, x: dict[str, float]) -> None:
        self.bank.step(self.slot, np.array([x["t"]]), np.array([x["y"]]))

    def score_one(self, x: dict[str, float]) -> float:
        out = self.bank.step(self.slot, np.array([x["t"]]), np.array([x["y"]]), learn=False)
        return float(out.score[0])


MODELS: dict[str, Callable[[], Any]] = {
    "tail_bank": BankView,
    "tail_bank_weekly": lambda: BankView(weekly=True),
    "calibrated_tail_weekly": lambda: CalibratedTail(weekly=True),
    "calibrated_tail": CalibratedTail,
    "half_space_trees": lambda: make_detector("half_space_trees"),
    "predictive": lambda: make_detector("predictive"),
}


def feed(model: Any, data: list[tuple[float, float]]) -> list[float]:
    scores = []
    for t, v in data:
        x = {"t": t, "y": v}
        scores.append(model.score_one(x))
        model.learn_one(x)
    return scores


def state(model: Any) -> bytes:
    if isinstance(model, BankView):
        return TailBank.row_bytes(model.bank.S[0])
    return pickle.dumps(model)


def same_scores(params: dict[str, Any], data: list[tuple[float, float]]) -> TailBank:
    """Feed the bank and the River reference; every score must agree. Returns the bank."""
    bank = TailBank(capacity=1, **params)
    slot = np.array([bank.add()])
    ref = CalibratedTail(**params)
    for t, v in data:
        fast = float(bank.step(slot, np.array([t]), np.array([v])).score[0])
        x = {"t": t, "y": v}
        slow = ref.score_one(x)
        ref.learn_one(x)
        assert math.isclose(fast, slow, rel_tol=1e-9, abs_tol=1e-12), (t, v, fast, slow)
    return bank


@pytest.mark.parametrize("params", [
    {}, {"run_rho": 0.5, "reseed_after": 10, "tail_gate": 0.3, "decluster": False},
    {"counts": True}, {"decluster": True}, {"decluster": True, "xi_max": 0.3},
    {"decluster": False, "xi_max": 0.3}, {"xi_max": 0.0},
    {"scale_gate": 0.3, "reseed_after": 10},
    {"decluster": False, "gate": 0.3, "err_tau": 0.0, "scale_rate": 0.005},  # defaults until v5
    {"regime_hold": 3600.0}, {"regime_hold": 3600.0, "counts": True, "calm_decay": 0.5}])
def test_fast_path_equals_the_river_reference(params: dict[str, Any]) -> None:
    same_scores(params, series())


def heavy_series(n: int = 6000, seed: int = 4) -> list[tuple[float, float]]:
    """Student-t(2) noise on a daily cycle (heavy tails: the fitted shape is positive), spikes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = T0 + 60.0 * i
        v = 50 + 10 * math.sin(2 * math.pi * (t % 86400) / 86400) + rng.standard_t(2)
        out.append((t, float(v + (40 if i % 1500 == 700 else 0))))
    return out


@pytest.mark.parametrize("params", [{}, {"decluster": False}, {"regime_hold": 3600.0},
                                    {"xi_max": 0.5}, {"xi_est": "moments"},
                                    {"xi_est": "moments", "decluster": False}])
def test_fast_path_equals_the_river_reference_on_heavy_tails(params: dict[str, Any]) -> None:
    bank = same_scores(params, heavy_series())
    from sre_agent.models.tailbank import XID, XIU
    assert bank.S[0, XIU] > 0.05 and bank.S[0, XID] > 0.05  # the shape was learned, not the prior


def sparse_series(n: int = 8000, seed: int = 6) -> list[tuple[float, float]]:
    """Zeros for a day (no spread at all: the rank bound), then rare one-sided counts (a side
    whose rate decays toward 0: the rate's floor), with young and older tail fits."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = 0.0 if i < 1500 or rng.random() > 0.01 else float(rng.integers(1, 40))
        out.append((T0 + 60.0 * i, v))
    return out


@pytest.mark.parametrize("params", [{}, {"xi_unc": 0.0, "lam_kt": 0.0}, {"regime_hold": 3600.0},
                                    {"res_floor": 0.0}])
def test_fast_path_equals_the_river_reference_on_sparse_counts(params: dict[str, Any]) -> None:
    same_scores(params, sparse_series())


def test_fast_path_equals_the_river_reference_on_gridded_values() -> None:
    """Values on a grid (two decimals; the resolution floor's approximate gcd), with a
    stretch of a single value and rare one-grain steps."""
    rng = np.random.default_rng(8)
    data = []
    for i in range(5000):
        v = 0.97 if 1000 <= i < 3000 and rng.random() > 0.01 else round(0.9 + 0.05 * rng.random(), 2)
        data.append((T0 + 60.0 * i, float(v)))
    bank = same_scores({}, data)
    from sre_agent.models.tailbank import RES
    assert abs(bank.S[0, RES] - 0.01) < 1e-9


@pytest.mark.parametrize("params", [
    {"weekly": True}, {"interpolate": True},
    {"weekly": True, "decluster": True, "excursion_hold": 0.97, "err_tau": 86400.0, "gate": 0.6},
    {"weekly": True, "regime_hold": 86400.0}])
def test_fast_path_equals_the_river_reference_over_weeks(params: dict[str, Any]) -> None:
    data = weekly_series()
    bank = same_scores(params, data)
    t = data[-1][0] + 600.0
    exp, _ = bank.expected_at(0, t)
    out = bank.step(np.array([0]), np.array([t]), np.array([0.0]), learn=False)
    assert math.isclose(exp, float(out.expected[0]), rel_tol=1e-9)


def test_bank_rows_do_not_interact() -> None:
    a, b = series(seed=1), series(seed=2)
    bank = TailBank(capacity=2)
    s = np.array([bank.add(), bank.add()])
    alone = TailBank(capacity=1)
    s1 = np.array([alone.add()])
    for (ta, va), (tb, vb) in zip(a, b):
        both = bank.step(s, np.array([ta, tb]), np.array([va, vb]))
        one = alone.step(s1, np.array([ta]), np.array([va]))
        assert both.score[0] == one.score[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_one_has_no_side_effects(name: str) -> None:
    m = MODELS[name]()
    feed(m, series(n=400))
    before = state(m)
    x = {"t": T0 + 1e6, "y": 1e4}
    first = m.score_one(x)
    assert m.score_one(x) == first
    assert state(m) == before


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cold_start_and_scores_in_range(name: str) -> None:
    m = MODELS[name]()
    scores = feed(m, [(T0 + 60 * i, v) for i, v in enumerate([1.0, 500.0, -400.0] * 9)])
    assert scores[:27] == [0.0] * 27  # warm-up: never alerts
    later = feed(m, series(n=600))
    assert all(0.0 <= s < 1.0 and math.isfinite(s) for s in later)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_round_trip_continues_identically(name: str) -> None:
    data = series(n=1600)
    m = MODELS[name]()
    feed(m, data[:800])
    if isinstance(m, BankView):
        m2 = BankView(weekly=m.bank.weekly)
        m2.bank.S[0] = m2.bank.row_of(TailBank.row_bytes(m.bank.S[0]))
    else:
        m2 = pickle.loads(pickle.dumps(m))
    assert feed(m, data[800:]) == feed(m2, data[800:])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_deterministic_replay(name: str) -> None:
    data = series(n=800)
    assert feed(MODELS[name](), data) == feed(MODELS[name](), data)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_is_bounded(name: str) -> None:
    m = MODELS[name]()
    data = series(n=3000)
    feed(m, data[:1000])
    size = len(state(m))
    feed(m, data[1000:])
    assert len(state(m)) <= size * 1.1 + 64
    if name.startswith(("tail_bank", "calibrated_tail")):
        assert len(state(m)) <= 8192


def test_bank_state_is_compact() -> None:
    # a few KiB per series (checkpointed to the table): the daily and weekly profiles
    # (48 + 336 half hours) are most of it
    assert WIDTH * 8 <= 4096
    # without the weekly profile (the default): 135 columns since state version 7 (the
    # previous regime, its plain predictors and the excursion cluster: 10 more)
    # 139 since state version 9 (the excesses' medians, the last value and the resolution)
    assert TailBank().width * 8 <= 1112


def test_calibrated_predictive_learns_its_error_statistics() -> None:
    """River's PredictiveAnomalyDetection learns its error mean/variance in score_one; the
    wrapper scored a pure copy only, so its threshold stayed 0, every raw score was 1.0 and
    a spike scored like any sample (recall 0 on the KPI set)."""
    rng = np.random.default_rng(3)
    m = make_detector("predictive")
    feed(m, [(T0 + 60 * i, float(100 + rng.normal(0, 1))) for i in range(600)])
    normal = m.score_one({"t": T0 + 60 * 600, "y": 100.5})
    spike = m.score_one({"t": T0 + 60 * 600, "y": 130.0})
    assert normal < 0.5 <= 0.7 <= spike

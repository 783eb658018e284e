"""Risk score: bounded, driven by the action and each context factor, trading hours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sre_agent.config import ActionSettings
from sre_agent.processors.risk import RiskScorer, blast_radius, criticality_of, in_window
from sre_agent.schemas import ActionStep, Target

NOON = datetime(2025, 11, 13, 12, tzinfo=UTC)  # a Thursday


def step(risk: float, name: str = "checkout") -> ActionStep:
    return ActionStep(action="scale", risk=risk, target=Target(kind="deployment", name=name))


def score(scorer: RiskScorer, risk: float = 0.45, **kw: object) -> float:
    args: dict[str, object] = {"confidence": 0.8, "severity": "warning", "service": "checkout",
                               "now": NOON, "replicas": 3, "dependants": 1}
    args.update(kw)
    return scorer.score([step(risk)], **args).score  # type: ignore[arg-type]


def test_each_factor_moves_the_score_the_right_way() -> None:
    s = RiskScorer(ActionSettings(criticality={"wallet*": 1.0, "blog*": 0.0}))
    base = score(s)
    assert score(s, risk=0.7) > base  # the action's own risk dominates
    assert score(s, confidence=0.3) > base > score(s, confidence=0.99)
    assert score(s, severity="critical") > base > score(s, severity="info")
    assert score(s, replicas=40, dependants=8) > base > score(s, replicas=1, dependants=0)
    assert score(s, service="wallet-api") > base > score(s, service="blog")


def test_context_moves_at_most_two_tenths() -> None:
    s = RiskScorer(ActionSettings(criticality={"*": 1.0}))
    worst = score(s, confidence=0.0, severity="critical", replicas=10_000, dependants=10_000)
    assert 0.45 < worst <= 0.45 + 0.2 + 1e-9
    s = RiskScorer(ActionSettings(criticality={"*": 0.0}, trading_hours=["Sat 00:00-00:01"]))
    best = score(s, confidence=1.0, severity="info", replicas=0, dependants=0)
    assert 0.45 - 0.2 - 1e-9 <= best < 0.45


def test_trading_hours_add_risk() -> None:
    s = RiskScorer(ActionSettings(trading_hours=["Mon-Fri 13:30-20:00"]))
    inside = s.score([step(0.45)], 0.8, "warning", "x", datetime(2025, 11, 13, 14, tzinfo=UTC))
    outside = s.score([step(0.45)], 0.8, "warning", "x", datetime(2025, 11, 13, 22, tzinfo=UTC))
    assert inside.factors["trading_hours"] == 1.0 and outside.factors["trading_hours"] == 0.0
    assert inside.score > outside.score


@pytest.mark.parametrize("spec, when, expected", [
    ("00:00-24:00", datetime(2025, 1, 1, 23, 59, tzinfo=UTC), True),
    ("22:00-02:00", datetime(2025, 1, 1, 23, 0, tzinfo=UTC), True),
    ("22:00-02:00", datetime(2025, 1, 2, 1, 0, tzinfo=UTC), True),
    ("22:00-02:00", datetime(2025, 1, 2, 3, 0, tzinfo=UTC), False),
    ("Mon-Fri 09:00-17:00", datetime(2025, 11, 15, 10, tzinfo=UTC), False),  # Saturday
    ("Fri-Mon 09:00-17:00", datetime(2025, 11, 16, 10, tzinfo=UTC), True),  # Sunday wraps
    ("Fri 22:00-02:00", datetime(2025, 11, 15, 1, tzinfo=UTC), True),  # Saturday early = Friday
])
def test_windows(spec: str, when: datetime, expected: bool) -> None:
    assert in_window(spec, when) is expected


def test_bad_trading_hours_fail_at_start() -> None:
    with pytest.raises(ValueError):
        RiskScorer(ActionSettings(trading_hours=["25:00-26:00"]))


def test_criticality_and_blast_helpers() -> None:
    table = {"matching-engine*": 1.0, "order*": 0.9}
    assert criticality_of("Matching-Engine-Core", table, 0.5) == 1.0
    assert criticality_of("unknown", table, 0.5) == 0.5
    assert criticality_of(None, table, 0.4) == 0.4
    assert blast_radius(None, None) == 0.5
    assert blast_radius(0, 0) == 0.0 and blast_radius(10_000, 10_000) > 0.99


@given(risk=st.floats(0, 1), conf=st.floats(0, 1),
       sev=st.sampled_from(["info", "warning", "critical", "weird"]),
       replicas=st.one_of(st.none(), st.integers(-5, 10_000)),
       deps=st.one_of(st.none(), st.integers(-5, 1000)))
def test_score_always_in_unit_interval(risk: float, conf: float, sev: str, replicas: int | None,
                                       deps: int | None) -> None:
    s = RiskScorer(ActionSettings())
    r = s.score([step(risk)], conf, sev, "svc", NOON, replicas=replicas, dependants=deps)
    assert 0.0 <= r.score <= 1.0
    assert set(r.factors) >= {"uncertainty", "severity", "blast_radius", "criticality",
                              "trading_hours", "action"}

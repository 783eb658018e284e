"""Risk score of an action plan, in [0, 1], from the action and its context.

The action's own risk (per step, from the playbook) is the base: restarting a pod
is not a database failover. The context moves it by at most ±0.2::

    context = 0.30 * uncertainty      (1 - RCA confidence: acting on a wrong guess)
            + 0.20 * severity         (info 0.2, warning 0.5, critical 1.0)
            + 0.20 * blast_radius     (replicas and dependent services touched)
            + 0.20 * criticality      (business criticality of the service, configured)
            + 0.10 * trading_hours    (1 inside the configured trading windows)
    score   = clamp(max(step risk) + 0.4 * (context - 0.5), 0, 1)

Pure: the caller passes ``now`` (a UTC datetime) and what it knows of the target.

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.config import ActionSettings
>>> from sre_agent.schemas import ActionStep, Target
>>> scorer = RiskScorer(ActionSettings())
>>> step = ActionStep(action="rollout_undo", risk=0.45,
...                   target=Target(kind="deployment", name="checkout"))
>>> r = scorer.score([step], confidence=0.85, severity="critical", service="checkout",
...                  now=datetime(2025, 11, 13, 12, tzinfo=UTC), replicas=3, dependants=2)
>>> round(r.score, 3), r.factors["criticality"]
(0.458, 0.5)
>>> in_window("Mon-Fri 13:30-20:00", datetime(2025, 11, 15, 14, tzinfo=UTC))  # a Saturday
False
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..config import ActionSettings
from ..schemas import ActionStep

__all__ = ["SEVERITY_RISK", "WEIGHTS", "RiskAssessment", "RiskScorer", "criticality_of", "in_window"]

SEVERITY_RISK = {"info": 0.2, "warning": 0.5, "critical": 1.0}
WEIGHTS = {"uncertainty": 0.30, "severity": 0.20, "blast_radius": 0.20,
           "criticality": 0.20, "trading_hours": 0.10}
#: how far the context may move the action's own risk (score = action + SPAN * (context - 0.5))
SPAN = 0.4
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class RiskAssessment:
    score: float
    factors: dict[str, float] = field(default_factory=dict)


def _minutes(hhmm: str) -> int:
    h, _, m = hhmm.strip().partition(":")
    value = int(h) * 60 + int(m or 0)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"time out of range: {hhmm!r}")
    return value


def in_window(spec: str, now: datetime) -> bool:
    """Is ``now`` (UTC) inside ``"[Mon-Fri ]HH:MM-HH:MM"``? Windows may wrap midnight."""
    spec = spec.strip()
    days = set(range(7))
    if " " in spec:
        dpart, spec = spec.split(None, 1)
        first, _, last = dpart.lower().partition("-")
        a = _DAYS.index(first[:3])
        b = _DAYS.index(last[:3]) if last else a
        days = {d % 7 for d in range(a, a + ((b - a) % 7) + 1)}
    start_s, _, end_s = spec.partition("-")
    start, end = _minutes(start_s), _minutes(end_s)
    minute = now.hour * 60 + now.minute
    if start <= end:
        return now.weekday() in days and start <= minute < end
    # wraps midnight: the early part belongs to the previous day's window
    if minute >= start:
        return now.weekday() in days
    return minute < end and (now.weekday() - 1) % 7 in days


def criticality_of(service: str | None, table: Mapping[str, float], default: float) -> float:
    """Business criticality of ``service``: the first matching glob, else ``default``."""
    if service:
        for pattern, value in table.items():
            if fnmatch.fnmatchcase(service.lower(), pattern.lower()):
                return max(0.0, min(1.0, float(value)))
    return default


def blast_radius(replicas: int | None, dependants: int | None) -> float:
    """0..1 from the replicas touched and the services depending on the target.

    Unknown inputs count as medium (0.5): not knowing is not safe.
    """
    r = 0.5 if replicas is None else 1.0 - math.exp(-max(replicas, 0) / 10.0)
    d = 0.5 if dependants is None else 1.0 - math.exp(-max(dependants, 0) / 3.0)
    return 0.5 * r + 0.5 * d


class RiskScorer:
    """Scores plans with the configured criticality and trading hours."""

    def __init__(self, settings: ActionSettings) -> None:
        self.criticality = dict(settings.criticality)
        self.default_criticality = settings.default_criticality
        self.trading_hours = list(settings.trading_hours)
        for w in self.trading_hours:  # fail at start, not at the first incident
            in_window(w, datetime(2000, 1, 3))

    def trading(self, now: datetime) -> bool:
        return any(in_window(w, now) for w in self.trading_hours)

    def score(self, steps: Iterable[ActionStep], confidence: float, severity: str,
              service: str | None, now: datetime, replicas: int | None = None,
              dependants: int | None = None) -> RiskAssessment:
        """Risk of executing ``steps`` for a hypothesis of ``confidence`` at ``now``."""
        action = max((s.risk for s in steps), default=0.0)
        factors = {
            "uncertainty": 1.0 - max(0.0, min(1.0, confidence)),
            "severity": SEVERITY_RISK.get(severity, 0.5),
            "blast_radius": blast_radius(replicas, dependants),
            "criticality": criticality_of(service, self.criticality, self.default_criticality),
            "trading_hours": 1.0 if self.trading(now) else 0.0,
        }
        context = sum(WEIGHTS[k] * v for k, v in factors.items())
        score = max(0.0, min(1.0, action + SPAN * (context - 0.5)))
        out = {k: round(v, 4) for k, v in factors.items()}
        out["action"] = round(action, 4)
        out["context"] = round(context, 4)
        return RiskAssessment(score=round(score, 4), factors=out)

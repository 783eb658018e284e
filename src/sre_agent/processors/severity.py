"""Incident severity from impact, not from how loud one signal was.

Before this module an incident took the highest severity of its signals, and
the metric detector marks every strong anomaly ``critical``: every incident
was CRITICAL. Here severity is an *impact* score in [0, 1]::

    evidence = strongest active signal        anomaly/log score; alert critical 0.9,
                                              warning 0.6, info 0.3; k8s crash/OOM 0.8,
                                              other k8s 0.5; prediction 0.4 x confidence
    business = max(criticality, blast, burn)  criticality of the affected services
                                              (actions.criticality; protected ones >= 0.9),
                                              x off_hours_factor outside trading hours;
                                              blast = 1 - exp(-(services + callers - 1) / 3)
                                              over the dependency graph;
                                              burn = 1 when the error budget burns at
                                              >= high_burn_rate
    impact   = evidence x (0.4 + 0.6 x business)

``critical`` from ``critical_at`` (0.75), ``warning`` from ``warning_at`` (0.35),
else ``info``. Two rules sit on top, both from the SRE workbook's practice:
an error budget burning at ``page_burn_rate`` (14.4x: 2 % of a 30-day budget in
an hour) is critical whatever else, and an alert rule's own severity label is
kept as a floor (a person decided that rule pages).

Why it generalises: every input is a property of the incident (its signals'
calibrated scores, the dependency graph, the configured business criticality,
the SLO), never of a data set or a service name; the weights are few, monotone
and documented in docs/oncall.md, and each level comes with its reasons.

Pure: the caller passes the incident's signals, services, graph and event time.

Examples
--------
>>> from datetime import UTC, datetime
>>> from types import SimpleNamespace as S
>>> from sre_agent.config import SeveritySettings
>>> from sre_agent.processors.topology import ServiceGraph
>>> model = SeverityModel(SeveritySettings())
>>> t = datetime(2025, 11, 13, 12, tzinfo=UTC)
>>> spike = S(kind="anomaly", service="search", rule="latency_ms", severity="critical",
...           active=True, attrs={"score": 0.99, "observed": 900.0})
>>> model.assess([spike], ["search"], ServiceGraph(), t).level  # a loud anomaly, nothing more
'warning'
>>> wallet = S(kind="anomaly", service="wallet-service", rule="latency_ms", severity="critical",
...            active=True, attrs={"score": 0.99})
>>> a = model.assess([wallet], ["wallet-service"], ServiceGraph(), t)
>>> a.level, a.reasons[1]
('critical', 'criticality 1.00 (wallet-service, protected)')
>>> burn = S(kind="anomaly", service="search", rule="http_error_ratio", severity="warning",
...          active=True, attrs={"score": 0.8, "observed": 0.02})
>>> model.assess([burn], ["search"], ServiceGraph(), t).reasons[-1]
'error budget burning 20.0x (>= 14.4x pages)'
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..config import ActionSettings, SeveritySettings
from .risk import criticality_of, in_window
from .topology import ServiceGraph

__all__ = ["LEVELS", "Assessment", "SeverityModel", "SignalLike"]

LEVELS = ("info", "warning", "critical")
_ALERT = {"critical": 0.9, "warning": 0.6, "info": 0.3}
_K8S_SEVERE = 0.8
_K8S_OTHER = 0.5
_PREDICTION = 0.4
#: criticality given to a service that matches ``actions.protected``
PROTECTED_CRITICALITY = 0.9
#: the share of the impact that does not depend on the business context
BASE = 0.4


class SignalLike(Protocol):
    kind: str
    service: str
    rule: str
    severity: str
    active: bool
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Assessment:
    """A severity level, the impact score behind it and why."""

    level: str
    impact: float
    reasons: tuple[str, ...]


class SeverityModel:
    """Severity of an incident from its impact (see the module docstring)."""

    def __init__(self, settings: SeveritySettings | None = None,
                 actions: ActionSettings | None = None) -> None:
        self.settings = settings or SeveritySettings()
        a = actions or ActionSettings()
        self.criticality = dict(a.criticality)
        self.default_criticality = a.default_criticality
        self.protected = [p.lower() for p in a.protected]
        self.trading_hours = list(a.trading_hours)
        self.budget = 1.0 - self.settings.slo_target

    # ------------------------------------------------------------------ parts
    def evidence(self, sig: SignalLike) -> float:
        """How strong and how sure one signal is, in [0, 1]."""
        score = _num(sig.attrs.get("score"))
        if sig.kind in ("anomaly", "log"):
            return _clip(score if score is not None else 0.5)
        if sig.kind == "alert":
            return _ALERT.get(sig.severity, 0.6)
        if sig.kind == "k8s":
            return _K8S_SEVERE if sig.severity == "critical" else _K8S_OTHER
        if sig.kind == "prediction":
            return _PREDICTION * _clip(_num(sig.attrs.get("confidence")) or 0.5)
        return 0.0  # deploys are context, not symptoms

    def service_criticality(self, service: str) -> tuple[float, bool]:
        c = criticality_of(service, self.criticality, self.default_criticality)
        protected = any(fnmatch.fnmatchcase(service.lower(), p) for p in self.protected)
        return (max(c, PROTECTED_CRITICALITY) if protected else c), protected

    def burn_rate(self, sig: SignalLike) -> float | None:
        """Error budget burn rate of a signal, when it measures errors."""
        explicit = _num(sig.attrs.get("burn_rate"))
        if explicit is not None:
            return explicit
        if sig.kind != "anomaly" or str(sig.attrs.get("direction", "up")) == "down":
            return None
        name = sig.rule.lower()
        if not any(fnmatch.fnmatchcase(name, g) for g in self.settings.error_ratio_metrics):
            return None
        value = _num(sig.attrs.get("observed"))
        if value is None or not 0.0 <= value <= 1.0:
            return None  # not a ratio: a rate per second says nothing about the budget
        return value / self.budget

    def trading(self, at: datetime) -> bool:
        return any(in_window(w, at) for w in self.trading_hours)

    # ------------------------------------------------------------------ whole
    def assess(self, signals: Iterable[SignalLike], services: Sequence[str],
               graph: ServiceGraph, at: datetime) -> Assessment:
        """The severity of an incident with ``signals`` over ``services`` at event time ``at``."""
        s = self.settings
        sigs = list(signals)
        active = [x for x in sigs if x.active] or sigs
        reasons: list[str] = []
        strongest = max(active, key=self.evidence, default=None)
        ev = self.evidence(strongest) if strongest is not None else 0.0
        if strongest is not None:
            what = strongest.rule or strongest.kind
            reasons.append(f"evidence {ev:.2f} ({strongest.kind} {what} on {strongest.service})")

        crit, crit_svc, protected = 0.0, "", False
        for svc in services:
            c, p = self.service_criticality(svc)
            if c > crit:
                crit, crit_svc, protected = c, svc, p
        trading = self.trading(at)
        business = crit if trading else crit * s.off_hours_factor
        if crit_svc:
            reasons.append(f"criticality {crit:.2f} ({crit_svc}{', protected' if protected else ''})")
        if not trading:
            reasons.append(f"outside trading hours (criticality x {s.off_hours_factor:g})")

        callers: set[str] = set()
        for svc in services:
            callers.update(graph.upstream(svc))
        callers -= set(services)
        spread = len(services) - 1 + len(callers)
        blast = 1.0 - math.exp(-spread / 3.0)
        if spread:
            reasons.append(f"blast radius {len(services)} services, {len(callers)} callers")
        business = max(business, blast)

        burn = max((b for b in map(self.burn_rate, active) if b is not None), default=None)
        if burn is not None and burn >= s.high_burn_rate:
            business = 1.0
        impact = _clip(ev * (BASE + (1.0 - BASE) * business))

        level = "critical" if impact >= s.critical_at else (
            "warning" if impact >= s.warning_at else "info")
        if burn is not None and burn >= 1.0:
            pages = burn >= s.page_burn_rate
            reasons.append(f"error budget burning {burn:.1f}x"
                           + (f" (>= {s.page_burn_rate:g}x pages)" if pages else ""))
            if pages:
                level = "critical"
        if s.alert_severity_floor:
            floor = max((LEVELS.index(x.severity) for x in active
                         if x.kind == "alert" and x.severity in LEVELS), default=0)
            if floor > LEVELS.index(level):
                level = LEVELS[floor]
                reasons.append(f"alert rule severity {level} (kept as a floor)")
        return Assessment(level, round(impact, 4), tuple(reasons))


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        return None
    try:
        v = float(x)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))

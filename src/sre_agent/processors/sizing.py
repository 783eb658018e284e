"""Scale-outs sized to the demand the incident measured (the HPA's rule, in one step).

A fixed factor (1.5x) absorbs a 1.5x surge and nothing more. The diagnosis already
measured the load on the service: each load series (request rate, CPU) at its level
during the incident against its level before (the RCA's evidence windows, or the
anomaly's observed vs expected). The replicas that carried the *expected* load at the
service's normal utilisation carry the *observed* load at the same utilisation when
there are ``observed / expected`` times as many, the Kubernetes HPA's formula
``desired = ceil(current * currentMetric / targetMetric)`` with the utilisation before
the incident as the target::

    ratio   = max over the service's load series of observed / expected
              (CPU usage of throttled pods is capped at their limit: divided by the
               unthrottled share when a throttling ratio was measured)
    desired = ceil(current * ratio * headroom)
              bounded by current * max_factor (the step's largest change) and max_replicas,
              and never below the playbook's fixed factor (the floor when nothing was measured)

Pure; the planner applies it when the stream has observed the target's replicas.

Examples
--------
>>> from sre_agent.schemas import EvidenceItem
>>> surge = [EvidenceItem(kind="metric", summary="", metric="http_requests_per_second",
...                       observed=18000.0, expected=1200.0)]
>>> size_scale(4, {"factor": 1.5, "max_replicas": 50, "size_to": "demand"}, surge)
Sizing(replicas=40, ratio=15.0, basis='http_requests_per_second 1.8e+04 vs 1200 before', capped='max_factor 10')
>>> size_scale(4, {"factor": 1.5, "max_replicas": 50, "size_to": "demand"}, []).replicas
6
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..schemas import EvidenceItem
from .rca_engine import LOAD_CATEGORIES
from .rca_evidence import is_outbound
from .rca_features import metric_category

__all__ = ["Sizing", "load_ratio", "size_scale"]

#: the largest step a demand-sized scale takes by default (the playbooks' factor bound)
MAX_FACTOR = 10.0
#: a throttled share above this is no measurement of demand any more (usage / 0.05 = 20x)
MAX_THROTTLED = 0.95


@dataclass(frozen=True)
class Sizing:
    replicas: int
    #: the demand ratio used (1.0 when nothing was measured)
    ratio: float
    #: which series it came from, for the plan's reader
    basis: str
    #: which bound cut the demand, if any
    capped: str = ""


def _throttled(metric: str) -> bool:
    return "throttl" in metric.lower()


def load_ratio(evidence: Iterable[EvidenceItem]) -> tuple[float, str] | None:
    """The largest rise of a load series in ``evidence``: ``(observed / expected, basis)``.

    Load series are the service's own request rates and CPU (not calls it makes to
    others). A CPU throttling share (``*throttl*``, 0..1) is no load: it corrects the
    CPU usage measured alongside it, as usage of throttled pods stops at their limit.
    """
    items = [e for e in evidence if e.metric and e.observed is not None
             and e.expected is not None and math.isfinite(e.observed)
             and math.isfinite(e.expected)]
    shares = [e.observed for e in items if _throttled(e.metric or "")
              and e.observed is not None and 0.0 <= e.observed <= 1.0]
    throttled = min(max(shares, default=0.0), MAX_THROTTLED)
    best: tuple[float, str] | None = None
    for e in items:
        m = e.metric or ""
        if _throttled(m) or is_outbound(m) or metric_category(m) not in LOAD_CATEGORIES:
            continue
        assert e.observed is not None and e.expected is not None
        if e.expected <= 0 or e.observed <= e.expected:
            continue
        ratio = e.observed / e.expected
        basis = f"{m} {e.observed:.4g} vs {e.expected:.4g} before"
        if metric_category(m) == "cpu" and throttled > 0:
            ratio /= 1.0 - throttled
            basis += f", {throttled:.0%} throttled"
        if best is None or ratio > best[0]:
            best = (ratio, basis)
    return best


def size_scale(current: int, params: Mapping[str, Any],
               evidence: Iterable[EvidenceItem]) -> Sizing:
    """Replicas for a ``scale`` step with ``params`` on a workload of ``current`` replicas."""
    current = max(int(current), 1)
    factor = float(params.get("factor") or 1.0)
    cap = int(params.get("max_replicas", 50))
    floor = math.ceil(current * factor)
    found = load_ratio(evidence) if params.get("size_to") == "demand" else None
    if found is None:
        return Sizing(min(floor, cap), 1.0, f"fixed factor {factor:g}")
    ratio, basis = found
    headroom = float(params.get("headroom", 1.0))
    step = float(params.get("max_factor", MAX_FACTOR))
    want = math.ceil(round(current * ratio * headroom, 6))
    capped = ""
    if want > math.floor(current * step):
        want, capped = math.floor(current * step), f"max_factor {step:g}"
    if want > cap:
        want, capped = cap, f"max_replicas {cap}"
    if want < floor:
        want, capped = min(floor, cap), ""
    return Sizing(want, round(ratio, 3), basis, capped)

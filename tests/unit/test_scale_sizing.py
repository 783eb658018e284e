"""Scale-outs sized to the demand the diagnosis measured, not a fixed 1.5x.

sre-agent eval through the simulated cluster (issue 14): the traffic-surge playbook
scaled api-gateway 4 -> 6 replicas against 15x the load, and the resource-saturation
playbook user-service 3 -> 5 against requests 10x heavier; neither healed. The plan
now sizes the step from the load series the RCA measured (observed vs before), the
HPA's rule, bounded by the step's max_factor and max_replicas, scored by the risk engine
with the replicas it leaves running.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from sre_agent.config import ActionSettings
from sre_agent.processors.planner import Planner
from sre_agent.processors.rca import engine_hypotheses
from sre_agent.processors.rca_engine import IncidentWindow, rank_window
from sre_agent.processors.sizing import load_ratio, size_scale
from sre_agent.schemas import EvidenceItem, Hypothesis, RcaResult

NOW = datetime(2025, 11, 13, 3, tzinfo=UTC)
DEMAND = {"factor": 1.5, "max_replicas": 50, "size_to": "demand", "max_factor": 10}


def _m(metric: str, observed: float, expected: float) -> EvidenceItem:
    return EvidenceItem(kind="metric", summary=f"{metric} up", metric=metric,
                        observed=observed, expected=expected)


def _rca(*hyps: tuple[str, str, float, list[EvidenceItem]]) -> RcaResult:
    return RcaResult(incident_id="inc-7", severity="critical",
                     services=sorted({h[1] for h in hyps}),
                     hypotheses=[Hypothesis(cause_type=c, service=s, confidence=p, summary="",
                                            evidence=ev) for c, s, p, ev in hyps])


def _plan(rca: RcaResult, replicas: dict[str, int]):  # type: ignore[no-untyped-def]
    planner = Planner.from_settings(ActionSettings())
    draft = planner.draft(rca)
    assert draft is not None
    observed = {i: {"exists": True, "uid": f"u{i}", "replicas": replicas[s.target.name]}
                for i, s in enumerate(draft.steps)}
    return planner.finalize(draft, observed, NOW)


def _after(current: int, factor: float) -> int:
    """What the executor's back-ends do with a factor (sinks/kubernetes.py, sim/cluster.py)."""
    return math.ceil(max(current, 1) * factor)


def test_surge_is_scaled_to_the_measured_request_rate() -> None:
    # 15x the requests on 4 replicas: 1.5x (6) shed most of them; 10x is the step's bound
    plan = _plan(_rca(("traffic_surge", "api-gateway", 0.8,
                       [_m("http_requests_per_second", 18000.0, 1200.0)])),
                 {"api-gateway": 4})
    step = plan.steps[0]
    assert step.action == "scale"
    assert _after(4, step.params["factor"]) == 40 and step.params["replicas_after"] == 40
    assert "demand x15" in plan.evidence[0] and "max_factor 10" in plan.evidence[0]


def test_a_modest_rise_gets_a_modest_step_and_max_replicas_bounds_it() -> None:
    assert size_scale(4, DEMAND, [_m("http_requests_per_second", 3000.0, 1200.0)]).replicas == 10
    assert size_scale(20, DEMAND, [_m("http_requests_per_second", 6000.0, 1200.0)]).replicas == 50


def test_the_fixed_factor_is_the_floor_and_the_fallback() -> None:
    # nothing measured, or less than the floor: the playbook's 1.5x as before
    assert size_scale(4, DEMAND, []).replicas == 6
    assert size_scale(4, DEMAND, [_m("http_requests_per_second", 1300.0, 1200.0)]).replicas == 6
    # without size_to the factor is all there is, whatever was measured
    fixed = {"factor": 1.5, "max_replicas": 50}
    assert size_scale(4, fixed, [_m("http_requests_per_second", 18000.0, 1.2e3)]).replicas == 6


def test_throttled_cpu_usage_is_a_floor_of_the_demand() -> None:
    # heavier requests: usage stops at the limit (2.5x), 64 % of the demand is throttled
    ev = [_m("cpu_usage_cores", 7.5, 3.0), _m("cpu_throttled_ratio", 0.645, 0.01)]
    ratio, basis = load_ratio(ev) or (0.0, "")
    assert math.isclose(ratio, 2.5 / 0.355, rel_tol=1e-6) and "throttled" in basis
    assert size_scale(3, DEMAND, ev).replicas == 22


def test_outbound_calls_errors_and_latency_are_no_load() -> None:
    ev = [_m("http_latency_p99_seconds", 2.0, 0.05), _m("http_error_ratio", 0.4, 0.001),
          _m("cpu_throttled_ratio", 0.5, 0.01)]
    assert load_ratio(ev) is None


def test_peers_are_sized_from_their_own_load() -> None:
    rca = _rca(("traffic_surge", "api-gateway", 0.8,
                [_m("http_requests_per_second", 18000.0, 1200.0)]),
               ("traffic_surge", "market-data", 0.6,
                [_m("http_requests_per_second", 1980.0, 660.0)]))
    plan = _plan(rca, {"api-gateway": 4, "market-data": 3})
    assert [s.params["replicas_after"] for s in plan.steps] == [40, 9]


def test_the_risk_engine_scores_the_replicas_the_step_leaves_running() -> None:
    small = _plan(_rca(("traffic_surge", "api-gateway", 0.8,
                        [_m("http_requests_per_second", 1300.0, 1200.0)])), {"api-gateway": 4})
    big = _plan(_rca(("traffic_surge", "api-gateway", 0.8,
                      [_m("http_requests_per_second", 18000.0, 1200.0)])), {"api-gateway": 4})
    assert big.risk_factors["blast_radius"] > small.risk_factors["blast_radius"]
    assert big.risk_score > small.risk_score


def test_the_engine_hands_its_load_windows_to_the_hypotheses() -> None:
    # a request rate 15x its level before the start, measured by the RCA engine's windows
    t = np.arange(0.0, 3600.0, 30.0)
    start = 3000.0
    rps = np.where(t < start, 1200.0, 18000.0) + np.sin(t) * 5
    lat = np.where(t < start, 0.05, 1.5) + np.cos(t) * 0.001
    w = IncidentWindow(start=start, series={("api-gateway", "http_requests_per_second"): (t, rps),
                                            ("api-gateway", "http_latency_p99_seconds"): (t, lat)})
    ranking = rank_window(w)
    gw = next(c for c in ranking if c.service == "api-gateway")
    assert "http_requests_per_second" in gw.loads
    hyps = engine_hypotheses(ranking, [Hypothesis(cause_type="traffic_surge", service="api-gateway",
                                                  confidence=0.6, summary="")])
    ratio, _ = load_ratio(hyps[0].evidence) or (0.0, "")
    assert 14.0 < ratio < 16.0


def test_a_later_revision_sizes_from_the_replicas_the_load_was_measured_on() -> None:
    # eval run at 21c2942: after the plan's own 4 -> 40, the next RCA revision (same
    # evidence) re-sized from 40 and the plan read "40 -> 50"
    rca = _rca(("traffic_surge", "api-gateway", 0.8,
                [_m("http_requests_per_second", 18000.0, 1200.0)]))
    planner = Planner.from_settings(ActionSettings())
    draft = planner.draft(rca)
    assert draft is not None
    first = planner.finalize(draft, {0: {"exists": True, "replicas": 4}}, NOW)
    again = planner.finalize(draft, {0: {"exists": True, "replicas": 40}}, NOW, first)
    step = again.steps[0]
    assert step.params["replicas_before"] == 4 and step.params["replicas_after"] == 40
    assert _after(40, step.params["factor"]) == 40          # nothing more to add
    assert "4 -> 40 replicas (now 40)" in again.evidence[0]
    # another incident's plan is no reference
    other = first.model_copy(update={"incident_id": "inc-other"})
    assert planner.finalize(draft, {0: {"exists": True, "replicas": 40}}, NOW,
                            other).steps[0].params["replicas_after"] == 50

"""A datastore its callers cannot reach is ranked, and restarted (issue 14).

In every ``sre-agent eval`` run ``redis_outage_cascade`` was missed: redis, being down,
exports nothing but ``up == 0``; the engine ranks its callers (error ratios with z in the
thousands) and the first RCA named a caller (``dependency_failure@market-data``), whose
plan rate-limited the caller: nothing healed. Every caller's log said who was down
("call to redis failed: dial tcp ...: connection refused"). The shapes below are the
incident's revision 3 and the RCA's ranking from the recorded run (``--record``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sre_agent.config import Settings
from sre_agent.processors.planner import Planner
from sre_agent.processors.rca import RootCauseAnalyzer
from sre_agent.processors.rca_engine import Candidate
from sre_agent.processors.topology import ServiceGraph
from sre_agent.schemas import Incident, SignalRef
from sre_agent.sim.topology import Topology

T0 = datetime(2025, 11, 6, 10, 50, tzinfo=UTC)
REFUSED = "call to redis failed dial tcp <*> connect connection refused req_id <*>"


def log(service: str, template: str, dt: float) -> SignalRef:
    return SignalRef(kind="log", ref=f"l-{service}", service=service,
                     time=T0 + timedelta(seconds=dt), metric="log_new_error_template",
                     attrs={"direction": "up", "score": 0.9, "template": template})


def incident(*signals: SignalRef) -> Incident:
    return Incident(incident_id="inc", title="x", fingerprint="f", opened_at=T0,
                    services=sorted({s.service for s in signals}), signals=list(signals))


#: the engine's ranking of the recorded run: the callers, by their error ratios
RANKING = [Candidate(s, sc, "dependency_failure", [f"{s} errors"], kinds=["metric"])
           for s, sc in [("market-data", 9.0), ("order-service", 8.9), ("user-service", 8.0),
                         ("wallet-service", 6.4), ("api-gateway", 5.6)]]


def test_the_callee_its_callers_cannot_reach_is_ranked_first_and_restarted() -> None:
    graph = ServiceGraph(Topology.default().edges)
    inc = incident(log("order-service", REFUSED, 6), log("wallet-service", REFUSED, 29),
                   log("risk-engine", REFUSED, 47))
    rca = RootCauseAnalyzer(graph).analyze(inc, (), RANKING)
    top = rca.hypotheses[0]
    assert (top.cause_type, top.service) == ("dependency_failure", "redis"), rca.hypotheses
    assert "cannot reach redis" in top.evidence[0].summary
    draft = Planner.from_settings(Settings().actions).draft(rca)
    assert draft is not None
    assert [(s.action, s.target.ref()) for s in draft.steps] == [
        ("rollout_restart", "deployment/default/redis")]


def test_one_caller_alone_or_other_errors_name_no_culprit() -> None:
    graph = ServiceGraph(Topology.default().edges)
    analyzer = RootCauseAnalyzer(graph)
    # one caller that cannot reach redis, redis itself showing nothing: the caller may
    # be the broken one (its address, its network); the ranking stands
    one = analyzer.analyze(incident(log("order-service", REFUSED, 6)), (), RANKING)
    assert one.hypotheses[0].service == "market-data"
    # errors returned by a callee that answers are not "cannot reach"
    status = "call to risk-engine returned status <*> req_id <*>"
    other = analyzer.analyze(incident(log("order-service", status, 6),
                                      log("api-gateway", status, 7)), (), RANKING)
    assert other.hypotheses[0].service == "market-data"
    # a caller's own specific cause stays: its deploy may have broken its connections
    both = incident(log("order-service", REFUSED, 6), log("wallet-service", REFUSED, 9))
    both.candidate_changes = [{"service": "order-service", "app": "order-service",
                               "revision": "v2", "previous_revision": "v1",
                               "change_type": "deploy", "event_id": "d1",
                               "time": (T0 - timedelta(minutes=2)).isoformat()}]
    hyps = analyzer.analyze(both, (), RANKING).hypotheses
    deploy = [h for h in hyps if h.cause_type == "bad_deploy" and h.service == "order-service"]
    assert deploy and deploy[0].confidence > 0.8


def test_a_callee_its_caller_waits_on_and_that_is_slow_itself_is_the_slow_one() -> None:
    """slow_dependency in the recorded run: market-data slow (and 0.5 % errors), its
    caller risk-engine logs "call to market-data slow ... timeout": the engine ranked the
    caller on that log line (dependency_failure@risk-engine 0.90, market-data 0.78)."""
    graph = ServiceGraph(Topology.default().edges)
    lat = SignalRef(kind="anomaly", ref="m", service="market-data", time=T0,
                    metric="http_latency_p50_seconds", attrs={"direction": "up", "score": 0.8})
    err = lat.model_copy(update={"ref": "e", "metric": "http_error_ratio"})
    ranking = [Candidate("risk-engine", 9.0, "dependency_failure",
                         ["new error log lines 'WARN call to market-data slow <*> timeout <*> "
                          "req_id <*>': 1.09/min vs 0/min before (z=3.3)"], kinds=["log"]),
               Candidate("market-data", 7.0, "dependency_failure",
                         ["market-data: http_latency_p50_seconds up"], kinds=["metric"])]
    rca = RootCauseAnalyzer(graph).analyze(incident(lat, err), (), ranking)
    top = rca.hypotheses[0]
    assert (top.cause_type, top.service) == ("slow_dependency", "market-data"), rca.hypotheses
    draft = Planner.from_settings(Settings().actions).draft(rca)
    assert draft is not None and [(s.action, s.target.ref()) for s in draft.steps] == [
        ("rollout_restart", "deployment/default/market-data")]


# -- the same evidence in the shared engine (``sre-agent rca offline`` and the stream) --

def _callee_window(callers: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """redis down from the start: it exports nothing; its callers' error ratios jump and
    their logs say "connection refused" to redis (the redis_outage_cascade shape)."""
    import numpy as np

    from sre_agent.processors.rca_engine import IncidentWindow

    start = 1_700_003_600.0
    t = np.arange(start - 3600, start + 600, 60.0)
    rng = np.random.default_rng(5)
    series, logs = {}, []
    for i, svc in enumerate(["order-service", "wallet-service", "api-gateway"]):
        v = 0.01 * (1 + 0.1 * rng.standard_normal(len(t)))
        if svc in callers or svc == "api-gateway":
            v[t >= start] += 0.3 + 0.1 * i
        series[(svc, "http_error_ratio")] = (t, v)
        for k in range(60):  # everyday lines before and after
            logs.append((start - 3600 + 70.0 * k + i, svc, f"INFO GET /{svc} 200 in 12 ms"))
    for k in range(40):
        for svc in callers:
            logs.append((start + 5 + 7.0 * k, svc,
                         f"ERROR call to redis failed dial tcp 10.0.0.{k}:6379 connect "
                         f"connection refused req_id {k}"))
    edges = [("api-gateway", "order-service"), ("api-gateway", "wallet-service"),
             ("order-service", "redis"), ("wallet-service", "redis")]
    return IncidentWindow(start=start, series=series, logs=sorted(logs), edges=edges,
                          symptom={"service": "api-gateway"})


def test_the_engine_ranks_the_callee_its_callers_cannot_reach() -> None:
    """Before, this evidence lived in the stream's rules layer only: ``rca offline`` (and
    the engine's ranking the stream starts from) put a caller first on its error ratio."""
    from sre_agent.processors.rca_engine import rank_window

    ranked = rank_window(_callee_window(("order-service", "wallet-service")))
    top = ranked[0]
    assert (top.service, top.cause_type, top.unreachable) == (
        "redis", "dependency_failure", True), [(c.service, c.score) for c in ranked]
    assert "cannot reach redis" in top.evidence[0]
    # the stream folds the engine's ranking in: the plan restarts redis
    rca = RootCauseAnalyzer(ServiceGraph(_callee_window(()).edges)).analyze(
        incident(log("order-service", REFUSED, 6)), (), ranked)
    assert (rca.hypotheses[0].service, rca.hypotheses[0].cause_type) == (
        "redis", "dependency_failure")
    draft = Planner.from_settings(Settings().actions).draft(rca)
    assert draft is not None and [(s.action, s.target.ref()) for s in draft.steps] == [
        ("rollout_restart", "deployment/default/redis")]


def test_the_engine_needs_two_callers_or_the_callees_own_evidence() -> None:
    from sre_agent.processors.rca_engine import rank_window

    ranked = rank_window(_callee_window(("order-service",)))
    assert ranked[0].service != "redis"
    assert not any(c.unreachable for c in ranked)

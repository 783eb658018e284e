"""Rules-first RCA on incidents built by the real correlator from plain signals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sre_agent.config import CorrelationSettings
from sre_agent.processors.correlate import GroupState, IncidentCorrelator
from sre_agent.processors.correlate_signals import (
    from_alert,
    from_anomaly,
    from_deploy,
    from_k8s,
    from_prediction,
)
from sre_agent.processors.rca import CAUSE_TYPES, RootCauseAnalyzer, merge_llm
from sre_agent.processors.topology import ServiceGraph
from sre_agent.schemas import (
    Alert,
    Anomaly,
    DeployEvent,
    EvidenceItem,
    Hypothesis,
    Incident,
    K8sEvent,
    Prediction,
    SimilarCase,
)

T0 = 1_800_000_000.0
EDGES = [("web", "api"), ("api", "db"), ("api", "cache"), ("web", "auth")]


def at(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, UTC)


def anomaly(service: str, metric: str, s: float, direction: str = "up", score: float = 0.97,
            template: str | None = None) -> Anomaly:
    dev = 8.0 if direction == "up" else -8.0
    return Anomaly(anomaly_id=f"{service}-{metric}", series=f'{metric}{{service="{service}"}}',
                   metric=metric, service=service, observed=10, expected=1, lower=0, upper=2,
                   deviation=dev, score=score, direction=direction, time=at(s), started_at=at(s),
                   kind="log" if template else "metric", template=template)


def incident_of(*events: object, edges: list[tuple[str, str]] = EDGES) -> Incident:
    """Feed events through the correlator; return the latest state of the one incident."""
    c = IncidentCorrelator(CorrelationSettings(edges=edges, open_min_metrics=1))  # any anomaly opens
    st = GroupState(group="g")
    out: list[Incident] = []
    for e in events:
        sig = {Anomaly: from_anomaly, Alert: from_alert, DeployEvent: from_deploy,
               K8sEvent: from_k8s, Prediction: from_prediction}[type(e)](e)  # type: ignore[index]
        out += c.update(st, sig, now=T0 + 10_000)
    out += c.tick(st, now=T0 + 10_000 + 60)  # flush batched updates
    assert len({i.incident_id for i in out}) == 1, [i.title for i in out]
    return out[-1]


def rca(inc: Incident, similar: list[SimilarCase] | None = None):  # type: ignore[no-untyped-def]
    return RootCauseAnalyzer(ServiceGraph(EDGES)).analyze(inc, similar or [])


def top(inc: Incident) -> tuple[str, str]:
    h = rca(inc).hypotheses[0]
    return h.cause_type, h.service


def test_deploy_then_errors_and_caller_latency_blames_the_deploy() -> None:
    inc = incident_of(
        DeployEvent(app="api", service="api", revision="v8", previous_revision="v7", time=at(0),
                    author="bob", event_id="dep1"),
        anomaly("api", "error_rate", 90), anomaly("api", "latency_p99", 95),
        anomaly("web", "latency_p99", 100))
    r = rca(inc)
    h = r.hypotheses[0]
    assert (h.cause_type, h.service) == ("bad_deploy", "api")
    assert h.confidence >= 0.75
    assert h.evidence[0].kind == "deploy" and "v8" in h.evidence[0].summary
    assert "bob" in h.evidence[0].summary and "90 s before" in h.evidence[0].summary
    assert any(e.kind == "metric" and "error_rate" in e.summary for e in h.evidence)
    assert h.recommended_actions[0] == "Roll back api to v7 (argocd app rollback api)"
    assert r.method == "rules" and r.incident_revision == inc.revision


def test_database_pool_exhaustion_propagating_to_callers() -> None:
    inc = incident_of(anomaly("db", "db_connections_active", 0),
                      anomaly("api", "error_rate", 20), anomaly("web", "latency", 30))
    assert top(inc) == ("db_pool_exhaustion", "db")


def test_pool_exhaustion_log_template_onset() -> None:
    inc = incident_of(
        anomaly("api", "error_rate", 10),
        anomaly("api", "log_template_rate", 5, template="HikariPool-1 - Connection is not "
                "available, request timed out after <*>ms"))
    r = rca(inc)
    assert (r.hypotheses[0].cause_type, r.hypotheses[0].service) == ("db_pool_exhaustion", "api")
    assert any(e.kind == "log" for e in r.hypotheses[0].evidence)


def test_slow_dependency_when_only_latency_at_the_root() -> None:
    inc = incident_of(anomaly("db", "query_latency_ms", 0), anomaly("api", "latency_p90", 10),
                      anomaly("web", "latency_p90", 12))
    assert top(inc) == ("slow_dependency", "db")


def test_dependency_failure_on_errors_at_the_root() -> None:
    inc = incident_of(anomaly("cache", "error_rate", 0), anomaly("api", "error_rate", 5),
                      anomaly("api", "latency", 6))
    assert top(inc) == ("dependency_failure", "cache")


def test_memory_leak_with_oom_kills_and_prediction() -> None:
    inc = incident_of(
        Prediction(series='memory{service="api"}', metric="memory_working_set", service="api",
                   current=0.8, limit=1.0, breach_at=at(3600), seconds_to_breach=3600,
                   confidence=0.9, slope_per_hour=0.2, time=at(0)),
        anomaly("api", "container_memory_working_set_bytes", 10),
        K8sEvent(name="api-7d9f8b6c4-xk2lp", reason="OOMKilled", message="container api",
                 time=at(20)),
        anomaly("api", "latency_p99", 25))
    assert top(inc) == ("memory_leak", "api")


def test_traffic_surge_vs_cpu_saturation() -> None:
    surge = incident_of(anomaly("api", "http_requests_per_second", 0),
                        anomaly("api", "cpu_usage", 10), anomaly("api", "latency", 12))
    assert top(surge) == ("traffic_surge", "api")
    sat = incident_of(anomaly("api", "cpu_usage", 0), anomaly("api", "latency", 12))
    assert top(sat) == ("resource_saturation", "api")


def test_disk_crashloop_node_pressure() -> None:
    assert top(incident_of(anomaly("db", "disk_used_bytes", 0),
                           anomaly("db", "write_latency", 5)))[0] == "disk_saturation"
    crash = incident_of(K8sEvent(name="auth-5c8d7f9b6-abcde", reason="BackOff",
                                 message="Back-off restarting failed container", time=at(0)))
    assert top(crash) == ("crash_loop", "auth")
    node = incident_of(K8sEvent(name="auth-5c8d7f9b6-abcde", reason="FailedScheduling",
                                message="0/3 nodes available: insufficient memory", time=at(0)))
    assert top(node) == ("node_pressure", "auth")


def test_config_change_from_the_change_type() -> None:
    inc = incident_of(DeployEvent(app="api-config", service="api", change_type="config",
                                  revision="cm-42", time=at(0), event_id="c1"),
                      anomaly("api", "error_rate", 60))
    assert top(inc) == ("config_change", "api")


def test_hypotheses_are_well_formed() -> None:
    inc = incident_of(
        DeployEvent(app="api", service="api", revision="v8", time=at(0), event_id="dep1"),
        anomaly("db", "db_connections_active", 50), anomaly("api", "error_rate", 60),
        anomaly("web", "latency", 70))
    r = rca(inc)
    assert 1 <= len(r.hypotheses) <= 5
    confs = [h.confidence for h in r.hypotheses]
    assert confs == sorted(confs, reverse=True) and all(0 <= c <= 1 for c in confs)
    for h in r.hypotheses:
        assert h.cause_type in CAUSE_TYPES and h.evidence and h.recommended_actions
    assert len({(h.cause_type, h.service) for h in r.hypotheses}) == len(r.hypotheses)


def test_unknown_when_nothing_matches() -> None:
    inc = incident_of(from_alert_event := Alert(fingerprint="x", name="SomethingOdd",
                                               labels={"service": "solo"}, time=at(0)), edges=[])
    assert from_alert_event.name == "SomethingOdd"
    assert top(inc)[0] == "unknown"


def ambiguous() -> Incident:
    return incident_of(
        DeployEvent(app="api", service="api", revision="v8", time=at(0), event_id="dep1"),
        anomaly("api", "error_rate", 60), anomaly("db", "db_connections_active", 70),
        anomaly("web", "latency", 80))


def test_similar_confirmed_case_changes_the_ranking() -> None:
    inc = ambiguous()
    before = rca(inc).hypotheses
    assert before[0].cause_type == "bad_deploy"
    case = SimilarCase(id="old-1", title="db pool exhausted after batch job", similarity=0.85,
                       cause_type="db_pool_exhaustion", service="db", kind="incident")
    after = rca(inc, [case])
    assert (after.hypotheses[0].cause_type, after.hypotheses[0].service) == (
        "db_pool_exhaustion", "db")
    assert any(e.kind == "similar" and e.ref == "old-1" for e in after.hypotheses[0].evidence)
    assert after.similar == [case]


def test_rejected_similar_case_lowers_a_cause() -> None:
    inc = ambiguous()
    base = {(h.cause_type, h.service): h.confidence for h in rca(inc).hypotheses}
    bad = SimilarCase(id="old-2", title="x", similarity=0.9, cause_type="bad_deploy",
                      resolution="rejected: rating bad", service="api")
    after = {(h.cause_type, h.service): h.confidence for h in rca(inc, [bad]).hypotheses}
    assert after[("bad_deploy", "api")] < base[("bad_deploy", "api")]


def test_similar_case_adds_a_missing_cause() -> None:
    inc = incident_of(anomaly("api", "error_rate", 0), edges=[])
    case = SimilarCase(id="p", title="t", similarity=0.9, cause_type="memory_leak", kind="incident")
    r = rca(inc, [case])
    assert ("memory_leak", "api") in {(h.cause_type, h.service) for h in r.hypotheses}


def test_merge_llm_validates_and_blends() -> None:
    inc = ambiguous()
    rules = rca(inc)
    llm = [Hypothesis(cause_type="db_pool_exhaustion", service="db", confidence=0.9,
                      summary="pool saturated by long transactions",
                      evidence=[EvidenceItem(kind="reasoning", summary="x")]),
           Hypothesis(cause_type="cosmic_rays", service="api", confidence=0.5, summary="?"),
           Hypothesis(cause_type="bad_deploy", service="not-a-service", confidence=0.99,
                      summary="hallucinated")]
    merged = merge_llm(rules, llm, tokens=1234, services=inc.services)
    assert merged.method == "rules+llm" and merged.llm_tokens == 1234
    keys = {(h.cause_type, h.service) for h in merged.hypotheses}
    assert ("unknown", "api") in keys and all(s != "not-a-service" for _, s in keys)
    db = next(h for h in merged.hypotheses if h.cause_type == "db_pool_exhaustion")
    old = next(h for h in rules.hypotheses if h.cause_type == "db_pool_exhaustion")
    assert db.confidence > old.confidence and any(e.kind == "llm" for e in db.evidence)


@pytest.mark.parametrize("cause", CAUSE_TYPES)
def test_every_cause_type_has_actions(cause: str) -> None:
    from sre_agent.processors.rca_rules import ACTIONS

    assert ACTIONS[cause]

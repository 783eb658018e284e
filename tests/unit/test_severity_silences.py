"""Severity from impact, run-time silences and hand resolution in the correlator.

Each defect issue 16 names is a test here that failed before the fix:
every incident was CRITICAL (the loudest anomaly decided), silences existed
only in the configuration, nobody could resolve an incident, Alertmanager's
``runbook_url``/``generatorURL`` were dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sre_agent.config import ActionSettings, CorrelationSettings, SeveritySettings
from sre_agent.processors.correlate import GroupState, IncidentCorrelator
from sre_agent.processors.correlate_signals import (
    Signal,
    from_alert,
    from_anomaly,
    resolve_signal,
)
from sre_agent.processors.ingest import parse_alertmanager
from sre_agent.processors.severity import SeverityModel
from sre_agent.processors.silences import SilenceBook
from sre_agent.schemas import Alert, Anomaly, Silence

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a Friday


def at(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, UTC)


def anomaly(service: str, metric: str, s: float, score: float = 0.99, observed: float = 10.0,
            labels: dict[str, str] | None = None) -> Signal:
    return from_anomaly(Anomaly(
        anomaly_id=f"{service}-{metric}", series=f'{metric}{{service="{service}"}}', metric=metric,
        service=service, labels=labels or {"service": service}, observed=observed, expected=1,
        lower=0, upper=2, deviation=9, score=score, severity="critical", time=at(s),
        started_at=at(s)))


def run(c: IncidentCorrelator, sigs: list[Signal], st: GroupState | None = None) -> list:
    st = st or GroupState(group="g")
    out = []
    for sig in sigs:
        out += c.update(st, sig, now=sig.ts)
    return out


# ------------------------------------------------------------------ severity
def test_a_loud_anomaly_on_an_ordinary_service_is_not_critical() -> None:
    # before: the detector marks a 0.99 anomaly critical and the incident took it
    out = run(IncidentCorrelator(CorrelationSettings()), [anomaly("search", "latency_ms", 0)])
    inc = out[0]
    assert inc.severity == "warning", inc.severity_reasons
    assert inc.impact is not None and 0.35 <= inc.impact < 0.75
    assert inc.severity_reasons[0] == "evidence 0.99 (anomaly latency_ms on search)"


def test_protected_service_in_trading_hours_is_critical_off_hours_less() -> None:
    model = SeverityModel(SeveritySettings(), ActionSettings(trading_hours=["Mon-Fri 08:00-16:00"]))
    c = IncidentCorrelator(CorrelationSettings(), severity=model)
    inc = run(c, [anomaly("wallet-service", "latency_ms", 0)])[0]  # Friday 08:00
    assert inc.severity == "critical"
    assert "criticality 1.00 (wallet-service, protected)" in inc.severity_reasons
    night = run(IncidentCorrelator(CorrelationSettings(), severity=model),
                [anomaly("wallet-service", "latency_ms", 15 * 3600)])[0]  # Friday 23:00
    assert "outside trading hours (criticality x 0.7)" in night.severity_reasons
    assert night.impact < inc.impact


def test_blast_radius_across_the_dependency_graph_raises_severity() -> None:
    edges = [("web", "api"), ("mobile", "api"), ("api", "db"), ("batch", "db")]
    alone = run(IncidentCorrelator(CorrelationSettings()), [anomaly("db", "latency_ms", 0)])[0]
    wide = run(IncidentCorrelator(CorrelationSettings(edges=edges)),
               [anomaly("db", "latency_ms", 0), anomaly("api", "latency_ms", 5)])[-1]
    assert alone.severity == "warning"
    assert wide.severity == "critical", wide.severity_reasons
    assert "blast radius 2 services, 3 callers" in wide.severity_reasons


def test_error_budget_burn_pages_and_prediction_is_info() -> None:
    burn = run(IncidentCorrelator(CorrelationSettings()),
               [anomaly("search", "http_error_ratio", 0, score=0.8, observed=0.03)])[0]
    assert burn.severity == "critical"
    assert burn.severity_reasons[-1] == "error budget burning 30.0x (>= 14.4x pages)"
    slow = run(IncidentCorrelator(CorrelationSettings()),
               [anomaly("search", "http_error_ratio", 0, score=0.8, observed=0.002)])[0]
    assert slow.severity == "warning" and "error budget burning 2.0x" in slow.severity_reasons
    pred = Signal(kind="prediction", fingerprint="prediction:disk", service="search",
                  rule="disk_used", time=at(0), severity="warning",
                  attrs={"confidence": 0.8, "seconds_to_breach": 3600})
    assert run(IncidentCorrelator(CorrelationSettings()), [pred])[0].severity == "info"


def test_alert_rule_severity_is_a_floor_and_can_be_turned_off() -> None:
    page = from_alert(Alert(fingerprint="f1", name="CheckoutDown", severity="critical",
                            labels={"service": "search"}, time=at(0), starts_at=at(0)))
    assert run(IncidentCorrelator(CorrelationSettings()), [page])[0].severity == "critical"
    model = SeverityModel(SeveritySettings(alert_severity_floor=False))
    assert run(IncidentCorrelator(CorrelationSettings(), severity=model),
               [page])[0].severity == "warning"


def test_a_duplicate_marked_critical_does_not_bypass_the_model() -> None:
    c = IncidentCorrelator(CorrelationSettings())
    st = GroupState(group="g")
    first = anomaly("search", "latency_ms", 0).model_copy(update={"severity": "warning"})
    out = run(c, [first, anomaly("search", "latency_ms", 5)], st)
    assert [i.severity for i in out] == ["warning"]


# ------------------------------------------------------------------ silences
def test_run_time_silence_drops_matching_signals_while_active() -> None:
    book = SilenceBook()
    book.update(Silence(silence_id="s1", matchers={"service": "search", "namespace": "prod"},
                        starts_at=at(0), ends_at=at(600), author="api:otto", comment="deploy"))
    c = IncidentCorrelator(CorrelationSettings(), silences=book)
    prod = {"service": "search", "namespace": "prod"}
    assert run(c, [anomaly("search", "latency_ms", 10, labels=prod)]) == []
    assert run(c, [anomaly("search", "cpu", 20, labels=prod)]) == []
    assert c.stats.silenced == 2 and book.hits["s1"] == 2
    # audited once per silence and signal
    assert [x[0] for x in c.silenced_first] == ["s1", "s1"]
    run(c, [anomaly("search", "latency_ms", 30, labels=prod)])
    assert len(c.silenced_first) == 2
    # another namespace, or after the window: not silenced
    assert run(c, [anomaly("search", "errors", 40, labels={"namespace": "staging"})])
    assert run(IncidentCorrelator(CorrelationSettings(), silences=book),
               [anomaly("search", "latency_ms", 700, labels=prod)])


def test_expired_silence_stays_expired_and_ended_ones_are_found() -> None:
    book = SilenceBook()
    s = Silence(silence_id="s1", matchers={"service": "*"}, starts_at=at(0), ends_at=at(600),
                author="api:otto", time=at(0))
    book.update(s)
    assert [x.silence_id for x in book.ended(at(600))] == ["s1"]
    book.update(s.model_copy(update={"state": "expired", "time": at(100), "ends_at": at(100)}))
    book.update(s)  # a late replay of the active state
    assert book.get("s1").state == "expired" and book.ended(at(700)) == []
    assert book.match({"service": "x"}, {}, at(50)) is None


# ------------------------------------------------------------------ hand resolution, labels
def test_a_person_resolves_an_incident_and_a_new_firing_reopens_it() -> None:
    c = IncidentCorrelator(CorrelationSettings(reopen_window=1800))
    st = GroupState(group="search")
    opened = run(c, [anomaly("search", "latency_ms", 0)], st)[0]
    done = c.update(st, resolve_signal(opened.incident_id, "search", "api:otto", at(60)),
                    now=T0 + 60)
    assert [(i.status, i.resolved_by) for i in done] == [("resolved", "api:otto")]
    assert c.update(st, resolve_signal("nope", "search", "api:otto", at(61)), now=T0 + 61) == []
    again = run(c, [anomaly("search", "latency_ms", 120)], st)
    assert [(i.incident_id, i.status, i.resolved_by) for i in again] == [
        (opened.incident_id, "updated", None)]


def test_incident_carries_its_signals_labels_for_routing() -> None:
    out = run(IncidentCorrelator(CorrelationSettings()),
              [anomaly("search", "latency_ms", 0, labels={"service": "search", "namespace": "prod",
                                                           "team": "discovery"})])
    assert out[0].labels == {"service": "search", "namespace": "prod", "team": "discovery"}


def test_alertmanager_runbook_and_generator_links_survive_to_the_incident() -> None:
    payload = {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": "HighLatency", "service": "search"},
        "annotations": {"summary": "slow", "runbook_url": "https://runbooks.example/latency"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
        "startsAt": at(0).isoformat(), "fingerprint": "abc"}]}
    alert = parse_alertmanager(payload)[0]
    assert alert.generator_url == "http://prometheus:9090/graph?g0.expr=latency"
    inc = run(IncidentCorrelator(CorrelationSettings()), [from_alert(alert)])[0]
    attrs = inc.signals[0].attrs
    assert attrs["runbook_url"] == "https://runbooks.example/latency"
    assert attrs["generator_url"] == "http://prometheus:9090/graph?g0.expr=latency"
    bad = parse_alertmanager({**payload, "alerts": [{**payload["alerts"][0],
                                                     "generatorURL": "javascript:alert(1)"}]})[0]
    assert bad.generator_url is None


def test_silence_windows_in_the_future_are_maintenance_windows() -> None:
    book = SilenceBook()
    book.update(Silence(silence_id="mw", matchers={"service": "db"}, kind="maintenance",
                        starts_at=at(3600), ends_at=at(7200), author="api:otto"))
    assert book.match({"service": "db"}, {}, at(0)) is None
    assert book.match({"service": "db"}, {}, at(3600 + 1)).silence_id == "mw"
    assert [s.silence_id for s in book.listing(at(0))] == ["mw"]
    assert book.listing(at(7200 + 1)) == [] and len(book.listing(at(7201), True)) == 1
    assert timedelta(0) < book.get("mw").ends_at - book.get("mw").starts_at

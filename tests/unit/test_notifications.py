"""The notification machine: every incident routed, threads, escalation, once per key.

Defect of issue 16 proven here: an incident that no playbook covers (or whose
RCA is unknown) reached nobody, since only action plans were notified; there was
no routing by severity/service, no escalation and no resolution notice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sre_agent.config import NotifySink
from sre_agent.processors.notifications import (
    IncidentIn,
    NotifyState,
    RcaIn,
    Rules,
    Tick,
    TriageIn,
    begin,
    decide,
    failed,
    next_due,
    sent,
)
from sre_agent.schemas import Hypothesis, Incident, RcaResult, TriageEvent

T = datetime(2025, 11, 13, 3, 0, tzinfo=UTC)
NOW = 1_763_000_000.0


def incident(sev: str = "warning", status: str = "open", rev: int = 1, services: tuple = ("api",),
             reopen: int = 0, labels: dict | None = None, iid: str = "i1") -> Incident:
    return Incident(incident_id=iid, title=f"{services[0]}: latency up", fingerprint="f",
                    opened_at=T, time=T, severity=sev, status=status, revision=rev,  # type: ignore[arg-type]
                    services=list(services), root_service=services[0], reopen_count=reopen,
                    labels=labels or {"namespace": "prod"},
                    resolved_at=T if status == "resolved" else None)


SINKS = [
    NotifySink(name="oncall", type="slack", channel="#oncall"),
    NotifySink(name="payments", type="slack", channel="#payments",
               scope={"include": [{"service": ["wallet*", "order*"]}]}),  # type: ignore[arg-type]
    NotifySink(name="pd", type="pagerduty", secret="pd", escalate_after=600,
               scope={"include": [{"severity": "critical"}]}),  # type: ignore[arg-type]
    NotifySink(name="mail", type="email", smtp_host="smtp", to=["oncall@example.com"],
               scope={"include": [{"namespace": "prod"}],  # type: ignore[arg-type]
                      "exclude": [{"labels": {"team": "sandbox"}}]}),
]
RULES = Rules(sinks=SINKS, console_url="http://agent/console#/incident/{incident_id}")


def run(st: NotifyState | None, ev, now: float = NOW) -> tuple[NotifyState | None, list]:
    st, out = decide(st, ev, now, RULES)
    done = []
    if st is not None:
        for s in out:  # every send succeeds, once per key (as the agent's outbox does)
            if not begin(st, s, now):
                continue
            if s.msg.event == "open" and s.sink in ("oncall", "payments"):
                st.sinks[s.sink].thread = {"channel": "C1", "ts": "1.000001"}
            sent(st, s.msg.key)
            done.append((s.sink, s.msg.event))
    return st, done


def test_every_incident_is_notified_without_a_plan_and_routed_by_scope() -> None:
    st, out = run(None, IncidentIn(incident()))
    assert out == [("oncall", "open"), ("mail", "open")]
    _, out = run(None, IncidentIn(incident(services=("wallet-service",))))
    assert ("payments", "open") in out
    _, out = run(None, IncidentIn(incident(labels={"namespace": "prod", "team": "sandbox"})))
    assert out == [("oncall", "open")]  # excluded from e-mail by label
    _, out = run(None, IncidentIn(incident(labels={"namespace": "dev"})))
    assert out == [("oncall", "open")]


def test_slack_thread_gets_material_updates_triage_and_the_resolution() -> None:
    st, _ = run(None, IncidentIn(incident()))
    st, out = run(st, IncidentIn(incident(rev=2)))  # nothing material changed
    assert out == []
    st, out = run(st, IncidentIn(incident(rev=3, services=("api", "db"))))
    assert out == [("oncall", "update")]
    rca = RcaResult(incident_id="i1", hypotheses=[Hypothesis(cause_type="unknown", service="api",
                                                             confidence=0.2, summary="?")])
    st, out = run(st, RcaIn(rca))
    assert out == [("oncall", "update")] and st.cause == "unknown on api (20%)"
    ack = TriageEvent(incident_id="i1", action="ack", actor="api:otto", comment="on it")
    st, out = run(st, TriageIn(ack))
    assert out == [("oncall", "ack")] and st.acked_by == "api:otto"
    st, out = run(st, TriageIn(ack))  # the same act redelivered: its key is done
    assert out == [] and st.sent.count(f"i1#0:oncall:ack:{ack.event_id}") == 1
    st, out = run(st, IncidentIn(incident(status="resolved", rev=4, services=("api", "db"))))
    assert out == [("oncall", "resolve"), ("mail", "resolve")]
    st, out = run(st, IncidentIn(incident(status="resolved", rev=4)))
    assert out == []


def test_pagerduty_escalates_when_nobody_acknowledges_in_time() -> None:
    st, out = run(None, IncidentIn(incident(sev="critical")))
    assert ("pd", "escalate") not in out
    assert next_due(st, RULES) == NOW + 600
    st, out = run(st, Tick(), now=NOW + 599)
    assert out == []
    st, out = run(st, Tick(), now=NOW + 600)
    assert out == [("pd", "escalate")]
    st, out = run(st, TriageIn(TriageEvent(incident_id="i1", action="ack", actor="slack:U1")),
                  now=NOW + 700)
    assert ("pd", "ack") in out and ("oncall", "ack") in out
    st, out = run(st, IncidentIn(incident(sev="critical", status="resolved", rev=2)), now=NOW + 800)
    assert ("pd", "resolve") in out


def test_acknowledged_or_snoozed_incidents_do_not_escalate_until_the_snooze_ends() -> None:
    st, _ = run(None, IncidentIn(incident(sev="critical")))
    st, _ = run(st, TriageIn(TriageEvent(incident_id="i1", action="ack", actor="api:otto")), NOW + 10)
    st, out = run(st, Tick(), now=NOW + 2000)
    assert out == [] and next_due(st, RULES) is None
    st2, _ = run(None, IncidentIn(incident(sev="critical", iid="i2")))
    st2, out = run(st2, TriageIn(TriageEvent(incident_id="i2", action="snooze", actor="api:otto",
                                            minutes=30)), NOW + 10)
    assert out == [("oncall", "snooze")]
    st2, out = run(st2, Tick(), now=NOW + 900)
    assert out == []  # due at 600, snoozed until 1810
    assert next_due(st2, RULES) == NOW + 10 + 1800
    st2, out = run(st2, Tick(), now=NOW + 1811)
    assert out == [("pd", "escalate")]


def test_severity_rising_routes_to_newly_matching_sinks_and_reopen_goes_back_to_the_thread() -> None:
    st, _ = run(None, IncidentIn(incident(sev="warning")))
    st, _ = run(st, IncidentIn(incident(sev="critical", rev=2)))
    assert next_due(st, RULES) == NOW + 600  # critical now: escalation to PagerDuty pending
    st, out = run(st, IncidentIn(incident(status="resolved", rev=3)), NOW + 60)
    assert ("pd", "resolve") not in out  # never told: nothing to close
    st, out = run(st, IncidentIn(incident(rev=4, reopen=1)), NOW + 120)
    assert ("oncall", "reopen") in out and ("mail", "open") in out
    assert st.acked_by is None and st.cycle == 1


def test_a_send_in_doubt_goes_again_and_a_done_key_never_does() -> None:
    st, out = decide(None, IncidentIn(incident()), NOW, RULES)
    first = out[0]
    assert begin(st, first, NOW)  # the worker dies here: pending, outcome unknown
    st2, again = decide(st, Tick(), NOW + 5, RULES)
    assert again[0].msg.key == first.msg.key  # in doubt: offered again, first
    assert st2.pending[first.msg.key].next == NOW  # when it was begun (the lookup's start)
    sent(st2, first.msg.key)
    assert begin(st2, first, NOW + 6) is False


def test_failed_sends_are_retried_with_backoff_then_given_up() -> None:
    rules = Rules(sinks=SINKS, max_attempts=3)
    st, out = decide(None, IncidentIn(incident()), NOW, rules)
    s = out[0]
    begin(st, s, NOW)
    assert failed(st, s, "HTTP 500", NOW, rules) is False
    assert next_due(st, rules) == NOW + 30
    st, out = decide(st, Tick(), NOW + 30, rules)
    assert [x.msg.key for x in out] == [s.msg.key]
    begin(st, out[0], NOW + 30)
    assert failed(st, out[0], "HTTP 500", NOW + 30, rules) is False
    assert st.retry[s.msg.key].next == NOW + 90
    begin(st, out[0], NOW + 90)
    assert failed(st, out[0], "HTTP 500", NOW + 90, rules) is True
    assert s.msg.key in st.sent and not st.retry


def test_messages_carry_the_console_link_and_the_severity_reasons() -> None:
    inc = incident().model_copy(update={"severity_reasons": ["evidence 0.99", "criticality 0.5"]})
    _, out = decide(None, IncidentIn(inc), NOW, RULES)
    m = out[0].msg
    assert m.url == "http://agent/console#/incident/i1"
    assert m.reasons == ["evidence 0.99", "criticality 0.5"] and m.dedup_key == "i1#0"

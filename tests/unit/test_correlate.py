"""Incident correlator: identity, grouping, lifecycle, noise suppression, change linking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sre_agent.config import CorrelationSettings, SilenceSettings
from sre_agent.processors.correlate import MIN_UPDATE_INTERVAL, GroupState, IncidentCorrelator
from sre_agent.processors.correlate_signals import (
    Signal,
    from_alert,
    from_anomaly,
    from_deploy,
    from_k8s,
)
from sre_agent.schemas import Alert, Anomaly, DeployEvent, K8sEvent

T0 = 1_800_000_000.0


def at(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, UTC)


def alert(fp: str, service: str, s: float, status: str = "firing", name: str = "HighErrors",
          severity: str = "warning") -> Signal:
    return from_alert(Alert(fingerprint=fp, name=name, status=status, severity=severity,
                            labels={"service": service}, time=at(s), starts_at=at(s)))


def anomaly(service: str, metric: str, s: float, status: str = "open",
            severity: str = "warning", direction: str = "up") -> Signal:
    return from_anomaly(Anomaly(anomaly_id=f"{service}-{metric}", status=status, series=f"{metric}"
                                f'{{service="{service}"}}', metric=metric, service=service,
                                observed=10, expected=1, lower=0, upper=2, deviation=9, score=0.99,
                                time=at(s), started_at=at(s), severity=severity,  # type: ignore[arg-type]
                                direction=direction))  # type: ignore[arg-type]


def deploy(service: str, s: float, revision: str = "v2") -> Signal:
    return from_deploy(DeployEvent(app=service, service=service, revision=revision, time=at(s),
                                   author="alice", event_id=f"dep-{service}-{revision}"))


class Harness:
    """Feeds signals in order through one group state, re-encoding it every time."""

    def __init__(self, **kw: object) -> None:
        # the grouping rules are tested with any anomaly opening an incident; the minimum
        # evidence to open one has its own tests (Harness(open_min_metrics=2) there)
        kw.setdefault("open_min_metrics", 1)
        # ... and weak evidence judged at once (waiting for the rest of a scrape: own tests)
        kw.setdefault("settle", 0)
        self.settings = CorrelationSettings(**kw)  # type: ignore[arg-type]
        self.c = IncidentCorrelator(self.settings)
        self.states: dict[str, bytes] = {}
        self.out: list = []

    def feed(self, sig: Signal, now: float | None = None) -> list:
        group = self.c.group_of(sig.service)
        raw = self.states.get(group)
        st = GroupState.from_bytes(raw) if raw else GroupState(group=group)
        got = self.c.update(st, sig, now=sig.ts if now is None else T0 + now)
        self.states[group] = st.to_bytes()  # the table round trip, every event
        self.out += got
        return got

    def tick(self, now: float) -> list:
        got = []
        for group, raw in list(self.states.items()):
            st = GroupState.from_bytes(raw)
            got += self.c.tick(st, T0 + now)
            self.states[group] = st.to_bytes()
        self.out += got
        return got

    def incidents(self) -> set[str]:
        return {i.incident_id for i in self.out}


def test_same_fingerprint_two_seconds_apart_is_one_incident() -> None:
    h = Harness()
    first = h.feed(alert("fp1", "api", 0))
    second = h.feed(alert("fp1", "api", 2))
    assert [i.status for i in first] == ["open"] and second == []
    assert h.c.stats.duplicates == 1
    # identity is the fingerprint, not text: a changed annotation is still the same incident
    a = Alert(fingerprint="fp1", name="HighErrors", labels={"service": "api"}, time=at(3),
              annotations={"summary": "LLM wrote something different"})
    assert h.feed(from_alert(a)) == []
    assert len(h.incidents()) == 1


def test_incident_id_is_deterministic_from_fingerprint_and_time() -> None:
    a, b = Harness(), Harness()
    ia = a.feed(alert("fp1", "api", 0))[0]
    ib = b.feed(alert("fp1", "api", 0))[0]
    assert ia.incident_id == ib.incident_id and ia.fingerprint == "alert:fp1"


def test_dependency_graph_groups_database_and_api_symptoms() -> None:
    h = Harness(edges=[("web", "api"), ("api", "db")])
    h.feed(anomaly("db", "connections", 0))
    upd = h.feed(anomaly("api", "error_rate", 20))
    assert [i.status for i in upd] == ["updated"]
    inc = upd[0]
    assert inc.services == ["api", "db"] and inc.root_service == "db"
    assert len(h.incidents()) == 1
    # an unrelated service in the same window is its own incident
    other = h.feed(anomaly("search", "latency", 30))
    assert other[0].status == "open" and len(h.incidents()) == 2


def test_max_hops_limits_grouping() -> None:
    h = Harness(edges=[("web", "api"), ("api", "db")], max_hops=1)
    h.feed(anomaly("db", "cpu", 0))
    assert h.feed(anomaly("web", "latency", 5))[0].status == "open"  # 2 hops away
    h2 = Harness(edges=[("web", "api"), ("api", "db")], max_hops=2)
    h2.feed(anomaly("db", "cpu", 0))
    assert h2.feed(anomaly("web", "latency", 5))[0].status == "updated"


def test_outside_the_window_opens_a_new_incident() -> None:
    h = Harness(window=60)
    h.feed(anomaly("api", "latency", 0))
    assert h.feed(anomaly("api", "errors", 30))[0].status == "updated"
    assert h.feed(anomaly("api", "cpu", 200))[0].status == "open"
    assert len(h.incidents()) == 2


def test_resolved_alerts_never_open_an_incident() -> None:
    h = Harness()
    assert h.feed(alert("fp9", "api", 0, status="resolved")) == []
    assert h.feed(anomaly("api", "latency", 1, status="resolved")) == []
    assert h.out == [] and h.c.stats.resolved_ignored == 2


def test_lifecycle_open_updated_resolved_after_holddown() -> None:
    h = Harness(resolve_holddown=60)
    h.feed(alert("a", "api", 0))
    h.feed(alert("b", "api", 10, severity="critical"))
    h.feed(alert("a", "api", 100, status="resolved"))
    assert h.tick(500) == []  # b still firing
    h.feed(alert("b", "api", 510, status="resolved"))
    assert h.tick(550) == []  # hold-down not over
    done = h.tick(571)
    # as of the end of the hold-down (510 + 60), not of the tick that saw it
    assert [i.status for i in done] == ["resolved"] and done[0].resolved_at == at(570)
    assert done[0].time == at(570)
    assert [i.status for i in h.out] == ["open", "updated", "resolved"]
    assert [i.revision for i in h.out] == [1, 2, 3]
    assert h.out[1].severity == "critical"


def test_flapping_is_suppressed_inside_the_holddown() -> None:
    h = Harness(resolve_holddown=120, flap_threshold=4)
    h.feed(alert("f", "api", 0))
    for k in range(1, 6):  # resolve/refire every 20 s: no event at all
        assert h.feed(alert("f", "api", 40 * k - 20, status="resolved")) == []
        assert h.feed(alert("f", "api", 40 * k)) == []
    assert [i.status for i in h.out] == ["open"]
    assert h.c.stats.flaps_suppressed == 5
    h.feed(alert("f", "api", 300, status="resolved"))
    assert [i.status for i in h.tick(430)] == ["resolved"]
    assert h.out[-1].signals[0].attrs["flapping"] is True


def test_recurrence_within_reopen_window_reopens_later_opens_new() -> None:
    h = Harness(resolve_holddown=0, reopen_window=600)
    first = h.feed(alert("r", "api", 0))[0]
    assert [i.status for i in h.feed(alert("r", "api", 10, status="resolved"))] == ["resolved"]
    again = h.feed(alert("r", "api", 300))
    assert again[0].incident_id == first.incident_id and again[0].reopen_count == 1
    assert again[0].status == "updated" and again[0].resolved_at is None
    h.feed(alert("r", "api", 310, status="resolved"))
    late = h.feed(alert("r", "api", 310 + 601))
    assert late[0].status == "open" and late[0].incident_id != first.incident_id


def test_resolved_incident_does_not_absorb_new_signals() -> None:
    h = Harness(resolve_holddown=0)
    first = h.feed(alert("x", "api", 0))[0]
    h.feed(alert("x", "api", 5, status="resolved"))
    nxt = h.feed(alert("y", "api", 10))[0]
    assert nxt.status == "open" and nxt.incident_id != first.incident_id


def test_silences_and_maintenance_windows() -> None:
    sil = SilenceSettings(matchers={"service": "batch*"}, starts_at=at(0), ends_at=at(100))
    maint = SilenceSettings(matchers={"name": "Watchdog"})
    h = Harness(silences=[sil, maint])
    assert h.feed(alert("s1", "batch-etl", 10)) == []
    assert h.feed(alert("s2", "api", 10, name="Watchdog")) == []
    assert h.feed(alert("s3", "batch-etl", 150))[0].status == "open"  # window over
    assert h.c.stats.silenced == 2


def test_min_occurrences_per_rule() -> None:
    h = Harness(min_occurrences={"DiskAlmostFull": 3, "k8s:ProbeFailed": 2}, window=300)
    for s in (0, 10):
        assert h.feed(alert("d", "db", s, name="DiskAlmostFull")) == []
    assert h.feed(alert("d", "db", 20, name="DiskAlmostFull"))[0].status == "open"
    probe = K8sEvent(name="web-0", reason="Unhealthy", message="Readiness probe failed", time=at(0))
    assert h.feed(from_k8s(probe)) == []
    assert h.c.stats.below_threshold == 3
    # other rules open at once
    assert h.feed(alert("e", "web", 1, name="Other"))[0].status == "open"


def test_min_occurrences_count_resets_after_the_window() -> None:
    h = Harness(min_occurrences={"Noisy": 2}, window=60)
    assert h.feed(alert("n", "api", 0, name="Noisy")) == []
    assert h.feed(alert("n", "api", 100, name="Noisy")) == []  # the first is too old
    assert h.feed(alert("n", "api", 110, name="Noisy"))[0].status == "open"


def test_deploys_are_linked_before_and_after_the_incident_opens() -> None:
    h = Harness(edges=[("api", "db")])
    h.feed(deploy("api", 0, "v7"))
    inc = h.feed(anomaly("api", "error_rate", 120))[0]
    assert [c["revision"] for c in inc.candidate_changes] == ["v7"]
    assert inc.candidate_changes[0]["seconds_before"] == 120.0
    assert inc.candidate_changes[0]["author"] == "alice"
    # a late-arriving deploy event (other topic, reordered) is linked with an update
    upd = h.feed(deploy("db", 60, "schema-42"))
    assert upd[0].status == "updated"
    assert {c["revision"] for c in upd[0].candidate_changes} == {"v7", "schema-42"}
    # deploys do not count as raw signals and never open incidents
    assert h.c.stats.signals_in == 1 and h.c.stats.changes == 2
    h.feed(deploy("unrelated", 130))
    assert len(h.incidents()) == 1


def test_old_deploys_are_not_candidates() -> None:
    h = Harness(change_lookback=600)
    h.feed(deploy("api", 0))
    inc = h.feed(anomaly("api", "latency", 3600))[0]
    assert inc.candidate_changes == []


def test_nonmaterial_updates_are_batched_and_flushed_by_tick() -> None:
    h = Harness()
    h.feed(anomaly("api", "latency", 0))
    assert h.feed(anomaly("api", "errors", 1)) == []  # same service, within the interval
    flushed = h.tick(1 + MIN_UPDATE_INTERVAL)
    assert [i.status for i in flushed] == ["updated"] and len(flushed[0].signals) == 2


def test_idle_incident_is_resolved() -> None:
    h = Harness(idle_resolve=900)
    h.feed(alert("i", "api", 0))
    assert h.tick(899) == []
    assert [i.status for i in h.tick(901)] == ["resolved"]


def test_noise_reduction_on_a_storm() -> None:
    h = Harness(edges=[("web", "api"), ("api", "db")])
    for k in range(50):
        h.feed(alert("db-conn", "db", k * 2))
        h.feed(alert(f"api-5xx-{k % 5}", "api", k * 2 + 1))
        h.feed(anomaly("web", "latency", k * 2 + 1))
    assert len(h.incidents()) == 1
    assert h.c.stats.signals_in == 150
    assert h.c.stats.noise_reduction == pytest.approx(1 - 1 / 150)


def test_k8s_events_dedup_across_pods() -> None:
    h = Harness()
    for pod in ("api-7d9f8b6c4-aaaaa", "api-7d9f8b6c4-bbbbb", "api-7d9f8b6c4-ccccc"):
        h.feed(from_k8s(K8sEvent(name=pod, reason="BackOff", message="Back-off restarting",
                                 time=at(1))))
    # severity from impact: a crash loop on a service of default criticality is a warning
    assert len(h.out) == 1 and h.out[0].severity == "warning"
    assert h.out[0].severity_reasons[0].startswith("evidence 0.80 (k8s CrashLoopBackOff")
    assert h.out[0].signals[0].attrs["count"] == 1 and h.c.stats.duplicates == 2


def test_point_in_time_signals_do_not_hold_an_incident_open() -> None:
    # a k8s event never sends "resolved": once the anomaly recovers and the event is a
    # window old, the incident goes quiet and resolves after the hold-down
    h = Harness(resolve_holddown=60, window=600)
    h.feed(anomaly("api", "error_rate", 0))
    h.feed(from_k8s(K8sEvent(name="api-1", service="api", reason="OOMKilled", time=at(5))))
    h.feed(anomaly("api", "error_rate", 120, status="resolved"))
    # the OOMKill is recent: still part of a live problem (its batched update may flush)
    assert [i.status for i in h.tick(300)] in ([], ["updated"])
    st = GroupState.from_bytes(h.states[h.c.group_of("api")])
    assert IncidentCorrelator.next_deadline(st, h.settings) == T0 + 605
    assert h.tick(605) == []  # quiet from now on
    done = h.tick(666)
    assert [i.status for i in done] == ["resolved"]


def test_next_deadline() -> None:
    h = Harness(resolve_holddown=60)
    h.feed(alert("a", "api", 0))
    st = GroupState.from_bytes(h.states["api"])
    assert IncidentCorrelator.next_deadline(st, h.settings) == T0 + h.settings.idle_resolve
    h.feed(alert("a", "api", 10, status="resolved"))
    st = GroupState.from_bytes(h.states["api"])
    assert IncidentCorrelator.next_deadline(st, h.settings) == T0 + 70


def test_prediction_keeps_its_incident_joinable_until_the_breach() -> None:
    from sre_agent.processors.correlate_signals import from_prediction
    from sre_agent.schemas import Prediction

    h = Harness(window=600)
    early = h.feed(from_prediction(Prediction(
        series='mem{service="api"}', metric="memory_working_set", service="api", current=0.8,
        limit=1.0, breach_at=at(3600), seconds_to_breach=3600, confidence=0.9, time=at(0))))
    later = h.feed(anomaly("api", "memory_working_set", 2400))  # 40 min later, before breach
    assert early[0].status == "open" and later and later[0].incident_id == early[0].incident_id


# ---------------------------------------------------------------- following the platform
def test_new_fault_after_recovery_opens_its_own_incident() -> None:
    # issue 14: a healed incident that was not closed yet took the next fault in
    h = Harness(edges=[("gateway", "wallet")], resolve_holddown=300)
    first = h.feed(anomaly("gateway", "error_ratio", 0))[0]
    h.feed(deploy("gateway", 400, "v2-rollback"))
    h.feed(anomaly("gateway", "error_ratio", 420, status="resolved"))
    # still in its hold-down (not resolved yet), a neighbour's new fault
    nxt = h.feed(anomaly("wallet", "error_ratio", 500))
    assert [i.status for i in nxt] == ["open"] and nxt[0].incident_id != first.incident_id
    assert nxt[0].services == ["wallet"] and nxt[0].root_service == "wallet"
    # the gateway incident resolves on its own schedule
    assert [(i.incident_id, i.status) for i in h.tick(420 + 300)] == [
        (first.incident_id, "resolved")]


def test_new_fault_of_a_neighbour_while_old_symptoms_still_fire_opens_its_own_incident() -> None:
    # issue 14: an earlier fault's anomaly still open an hour later (its level never came
    # back to the old baseline) absorbed the next fault of a neighbour into its incident
    h = Harness(edges=[("gateway", "redis"), ("gateway", "risk")], idle_resolve=7200)
    old = h.feed(anomaly("risk", "latency", 0))[0]
    assert h.feed(anomaly("gateway", "errors", 60))[0].incident_id == old.incident_id
    h.feed(anomaly("gateway", "errors", 600, status="resolved"))
    # 70 minutes later, redis fails: its callers' symptoms are a new fault
    new = h.feed(anomaly("redis", "availability", 4200))
    assert [i.status for i in new] == ["open"] and new[0].incident_id != old.incident_id
    assert new[0].services == ["redis"]
    nxt = h.feed(anomaly("gateway", "errors", 4210))
    assert nxt[0].incident_id == new[0].incident_id and nxt[0].services == ["gateway", "redis"]


def test_node_metrics_describe_the_node_and_join_its_kubernetes_events() -> None:
    # node-exporter's series carry the node they describe; named after the exporter job
    # they opened a separate incident beside the node's NodePressure one
    from sre_agent.schemas import K8sEvent

    h = Harness()
    ev = h.feed(from_k8s(K8sEvent(kind="Node", name="ip-10-0-2-41", reason="NodePressure",
                                  type="Warning", message="memory pressure", time=at(0))))
    a = Anomaly(anomaly_id="n1", status="open",
                series='node_memory_used_ratio{node="ip-10-0-2-41"}',
                metric="node_memory_used_ratio", service="node-exporter",
                labels={"node": "ip-10-0-2-41", "job": "node-exporter"}, observed=0.97,
                expected=0.55, lower=0, upper=0.7, deviation=30, score=0.98, time=at(5),
                started_at=at(5), severity="critical", direction="up")
    sig = from_anomaly(a)
    assert sig.service == "ip-10-0-2-41"
    h.feed(sig)
    h.tick(5 + MIN_UPDATE_INTERVAL)
    assert h.incidents() == {ev[0].incident_id} and len(h.out[-1].signals) == 2


def test_recovered_services_of_an_incident_pull_nothing_new_in() -> None:
    h = Harness(edges=[("api", "db"), ("batch", "db")])
    inc = h.feed(anomaly("db", "latency", 0))[0]
    assert h.feed(anomaly("api", "errors", 10))[0].incident_id == inc.incident_id
    h.feed(anomaly("db", "latency", 60, status="resolved"))
    # batch is a neighbour of db (recovered) only, not of api (still firing)
    other = h.feed(anomaly("batch", "latency", 120))
    assert other[0].status == "open" and other[0].incident_id != inc.incident_id
    # a symptom next to what still fires joins as before
    h.feed(anomaly("api", "latency", 130))
    h.tick(130 + MIN_UPDATE_INTERVAL)
    assert h.out[-1].incident_id == inc.incident_id and len(h.out[-1].signals) == 3
    assert len(h.incidents()) == 2


def test_a_prediction_not_repeated_lets_its_incident_resolve() -> None:
    from sre_agent.processors.correlate_signals import from_prediction
    from sre_agent.schemas import Prediction

    def pred(s: float) -> Signal:
        return from_prediction(Prediction(
            series='disk{service="api"}', metric="disk_used_ratio", service="api", current=0.8,
            limit=0.95, breach_at=at(s + 7200), seconds_to_breach=7200, confidence=0.9,
            time=at(s)))

    h = Harness(prediction_stale=3600, resolve_holddown=60, idle_resolve=86400)
    h.feed(pred(0))
    h.feed(pred(1800))  # repeated while the breach is still expected
    st = GroupState.from_bytes(h.states["api"])
    assert IncidentCorrelator.next_deadline(st, h.settings) == T0 + 1800 + 3600
    assert h.tick(1800 + 3599) == []
    assert h.tick(1800 + 3600) == []  # quiet from now on
    assert [i.status for i in h.tick(1800 + 3660)] == ["resolved"]


def test_only_changes_in_effect_before_the_incident_are_candidates() -> None:
    h = Harness(change_after=120)
    h.feed(deploy("api", 0, "v2-bad"))
    h.feed(from_deploy(DeployEvent(app="api", service="api", revision="v1", time=at(600),
                                   change_type="rollback", event_id="rb-1")))
    h.feed(from_deploy(DeployEvent(app="api", service="api", revision="cfg-3", time=at(700),
                                   change_type="config", event_id="cfg-3")))
    inc = h.feed(anomaly("api", "error_ratio", 1200))[0]
    # v2-bad was rolled back before the incident: not running, not a candidate
    assert [c["event_id"] for c in inc.candidate_changes] == ["cfg-3", "rb-1"]
    # a deploy reported 60 s after the first symptom is linked (sync reported late) ...
    assert h.feed(deploy("api", 1260, "v3"))[0].candidate_changes[0]["revision"] == "v3"
    # ... a change made 10 min into the incident (its remediation) is not
    assert h.feed(from_deploy(DeployEvent(app="api", service="api", revision="v1",
                                          time=at(1800), change_type="rollback",
                                          event_id="rb-2"))) == []
    assert all(c["seconds_before"] >= -120 for c in h.out[-1].candidate_changes)


def test_a_rollback_to_the_revision_that_ran_before_is_no_candidate_cause() -> None:
    # issue 14 (demo): the agent's rollback of the gateway was linked to every later incident
    # near the gateway for two hours; RCA blamed it ("bad deploy") and the next plans rolled
    # the rollback back, reinstalling the bad version (and again, flip-flopping)
    def change(s: float, rev: str, prev: str, kind: str = "deploy") -> Signal:
        return from_deploy(DeployEvent(app="gateway", service="gateway", revision=rev,
                                       previous_revision=prev, time=at(s), change_type=kind,
                                       event_id=f"{kind}-{rev}-{s:g}"))

    h = Harness(edges=[("gateway", "wallet")], resolve_holddown=0)
    h.feed(change(0, "v2-bad", "v1"))
    first = h.feed(anomaly("gateway", "error_ratio", 60))[0]
    assert [c["revision"] for c in first.candidate_changes] == ["v2-bad"]
    h.feed(change(400, "v1", "v2-bad", "rollback"))  # restores what ran before v2-bad
    h.feed(anomaly("gateway", "error_ratio", 460, status="resolved"))
    later = h.feed(anomaly("wallet", "error_ratio", 3000))[0]
    assert later.incident_id != first.incident_id
    assert later.candidate_changes == []  # neither the reverted deploy nor its rollback
    # a rollback to a revision the log never saw running stays a suspect
    h.feed(change(3100, "v0", "v1", "rollback"))
    assert [c["revision"] for c in h.out[-1].candidate_changes] == ["v0"]


def test_a_change_just_before_a_joining_service_s_first_symptom_is_a_candidate() -> None:
    # issue 14 (demo): a bad gateway deploy 5 min after an unrelated neighbour's anomaly
    # opened an incident joined that incident, and its deploy, made after the incident
    # opened, was never linked: RCA could not see the cause of the gateway's symptoms
    h = Harness(edges=[("gateway", "market")], change_after=120)
    opened = h.feed(anomaly("market", "disk_used_ratio", 0))[0]
    h.feed(deploy("gateway", 210, "v2-bad"))
    joined = h.feed(anomaly("gateway", "error_ratio", 300))[0]
    assert joined.incident_id == opened.incident_id
    assert [c["revision"] for c in joined.candidate_changes] == ["v2-bad"]
    # ... while a change of it made once its symptoms were under way (its remediation) is not
    h.feed(from_deploy(DeployEvent(app="gateway", service="gateway", revision="v1",
                                   time=at(900), change_type="rollback", event_id="rb")))
    assert all(c["revision"] == "v2-bad" for c in h.out[-1].candidate_changes)


# ---------------------------------------------------------------- minimum evidence
def test_a_lone_warning_anomaly_opens_nothing_until_corroborated() -> None:
    """Issue 14: most false-alarm incidents of the closed loop were opened by one warning
    metric anomaly, or by one metric moving on many services at once."""
    h = Harness(edges=[("web", "api"), ("api", "db")], open_min_metrics=2)
    assert h.feed(anomaly("api", "cpu", 0)) == []
    assert h.feed(anomaly("api", "cpu", 0, status="resolved")) == []  # recovered: nothing
    assert h.c.stats.held == 1 and h.c.stats.unconfirmed == 1
    assert h.feed(anomaly("db", "latency", 60)) == []
    opened = h.feed(anomaly("db", "errors", 90))  # a second metric of the same service
    assert [i.status for i in opened] == ["open"] and opened[0].services == ["db"]
    assert opened[0].opened_at == at(90) and len(opened[0].signals) == 2
    assert opened[0].signals[0].time == at(60)  # its onset: the first held signal


def test_strong_signals_open_at_once_and_take_the_held_ones_in() -> None:
    h = Harness(edges=[("web", "api"), ("api", "db")], open_min_metrics=2)
    assert h.feed(anomaly("db", "latency", 0)) == []
    got = h.feed(alert("a1", "api", 30, severity="critical"))
    assert [i.status for i in got] == ["open"] and got[0].services == ["api", "db"]
    assert [s.kind for s in got[0].signals] == ["anomaly", "alert"]
    h2 = Harness(open_min_metrics=2)
    assert [i.status for i in h2.feed(anomaly("db", "latency", 0, severity="critical"))] == ["open"]


def test_a_change_in_effect_corroborates_a_warning_anomaly() -> None:
    h = Harness(open_min_metrics=2)
    h.feed(deploy("user", 0))
    assert [i.status for i in h.feed(anomaly("user", "memory", 600))] == ["open"]
    h2 = Harness(open_min_metrics=2, change_lookback=300)
    h2.feed(deploy("user", 0))
    assert h2.feed(anomaly("user", "memory", 600)) == []  # too old to be its cause


def test_a_metric_moving_on_many_services_at_once_is_no_evidence() -> None:
    # one topology group (counted within it): services a-d all call x
    h = Harness(edges=[(s, "x") for s in "abcd"], open_min_metrics=2, common_mode_services=3)
    for i, svc in enumerate("abcd"):
        assert h.feed(anomaly(svc, "memory", i)) == []
    # a service's second metric is not enough when the first moved on four services
    for i, svc in enumerate("abc"):
        assert h.feed(anomaly(svc, "cpu", 10 + i, direction="down")) == []
    assert h.feed(anomaly("a", "latency", 20)) == []  # cpu went down on three: common too
    got = h.feed(anomaly("a", "errors", 21))  # two metrics of its own
    assert got[0].services == ["a"] and {s.metric for s in got[0].signals} == {"latency", "errors"}


def test_causes_without_a_symptom_or_moving_the_harmless_way_open_nothing() -> None:
    h = Harness(open_min_metrics=2)
    assert h.feed(anomaly("db", "cpu_usage", 0)) == []
    assert h.feed(anomaly("db", "memory_used", 5)) == []  # two causes, no symptom users feel
    assert h.feed(anomaly("web", "disk_used", 0, direction="down")) == []
    assert h.feed(anomaly("web", "latency_p99", 5)) == []  # less disk used is no fault
    assert h.feed(anomaly("db", "latency_p99", 9))[0].services == ["db"]


def test_a_warning_alert_on_a_cause_alone_opens_nothing() -> None:
    # issue 14 (eval, flapping_alert): a hand-written CPU rule whose threshold sits at the
    # usual level flapped and opened an incident each time, with no symptom anywhere
    h = Harness(edges=[("web", "api")], open_min_metrics=2)
    for k in range(3):
        assert h.feed(alert("cpu", "api", 600 * k, name="HighCPUUsage")) == []
        assert h.feed(alert("cpu", "api", 600 * k + 120, status="resolved",
                            name="HighCPUUsage")) == []
    assert h.incidents() == set()
    # a symptom rule pages at once; so does a critical cause rule
    assert [i.status for i in h.feed(alert("lat", "web", 2000, name="HighLatencyP99"))] == ["open"]
    assert [i.status for i in h.feed(alert("pool", "db", 2000, name="DBConnectionPoolExhausted",
                                           severity="critical"))] == ["open"]
    # the cause rule with a symptom of its service beside it opens, both in the incident
    h2 = Harness(open_min_metrics=2)
    assert h2.feed(alert("cpu", "api", 0, name="HighCPUUsage")) == []
    out = h2.feed(anomaly("api", "http_latency_p99_seconds", 60))
    assert [i.status for i in out] == ["open"] and len(out[0].signals) == 2


def test_a_platform_wide_load_burst_opens_nothing() -> None:
    # issue 14 (eval, clean hours): a market burst doubled requests and CPU everywhere for
    # a few minutes; the database's query latency rose with it, and whichever signals came
    # first in the minute opened an incident before the rest showed the whole platform moving
    edges = [("api", "db"), ("orders", "db"), ("wallet", "db"), ("match", "db")]
    h = Harness(edges=edges, open_min_metrics=2, settle=60)
    burst = [("db", "cpu_usage_cores"), ("db", "pg_query_latency_p99_seconds"),
             ("db", "pg_queries_per_second"), ("orders", "cpu_usage_cores"),
             ("wallet", "http_requests_per_second"), ("wallet", "cpu_usage_cores"),
             ("orders", "http_requests_per_second")]
    for svc, metric in burst:
        assert h.feed(anomaly(svc, metric, 0)) == []
    # a critical queue movement in the burst is the load's doing too
    assert h.feed(anomaly("match", "kafka_consumer_lag", 0, severity="critical")) == []
    assert h.feed(anomaly("api", "http_requests_per_second", 60)) == []
    assert h.tick(120) == [] and h.incidents() == set()


def test_weak_evidence_opens_once_the_scrape_is_in() -> None:
    h = Harness(edges=[("api", "db")], open_min_metrics=2, settle=60)
    assert h.feed(anomaly("db", "http_latency_p99_seconds", 0)) == []
    assert h.feed(anomaly("db", "cpu_usage_cores", 0)) == []  # complete: judged at 60
    deadline = IncidentCorrelator.next_deadline(
        GroupState.from_bytes(h.states[h.c.group_of("db")]), h.settings)
    assert deadline == T0 + 60
    opened = h.tick(60)
    assert [i.status for i in opened] == ["open"] and opened[0].services == ["db"]
    assert len(opened[0].signals) == 2 and opened[0].opened_at == at(0)


def test_callers_of_a_failing_dependency_form_one_incident() -> None:
    # issue 14 (eval, redis_outage_cascade): redis went down (a target that is down exports
    # no metrics) and each of its callers opened an incident of its own, four RCAs and four
    # plans for one fault
    edges = [("orders", "redis"), ("wallet", "redis"), ("users", "redis"), ("wallet", "ledger")]
    h = Harness(edges=edges)
    first = h.feed(alert("o", "orders", 0))[0]
    assert h.feed(alert("w", "wallet", 20))[0].incident_id == first.incident_id
    assert h.feed(alert("u", "users", 40))[0].incident_id == first.incident_id
    assert len(h.incidents()) == 1
    # no shared dependency: not related
    other = h.feed(alert("x", "batch", 50))
    assert other[0].incident_id != first.incident_id


def test_a_critical_anomaly_of_a_cause_alone_opens_nothing() -> None:
    # issue 14 (eval, first scored minute): the agent's own scale-out of risk-engine made its
    # CPU jump (critical), and a disk compacted at midnight fell far (critical, down): each
    # opened an incident with no symptom anywhere
    h = Harness(edges=[("web", "api")], open_min_metrics=2)
    assert h.feed(anomaly("api", "cpu_usage_cores", 0, severity="critical")) == []
    assert h.feed(anomaly("web", "disk_used_ratio", 0, severity="critical",
                          direction="down")) == []
    assert h.incidents() == set()
    # a symptom beside the cause opens, the cause in the incident
    got = h.feed(anomaly("api", "http_latency_p99_seconds", 60))
    assert [i.status for i in got] == ["open"]
    assert {"cpu_usage_cores", "http_latency_p99_seconds"} <= {s.metric for s in got[0].signals}
    # critical symptoms (and metrics of unknown kind) still open at once
    h2 = Harness(open_min_metrics=2)
    assert [i.status for i in h2.feed(anomaly("db", "http_error_ratio", 0,
                                              severity="critical"))] == ["open"]
    assert [i.status for i in h2.feed(anomaly("x", "widgets_total", 0,
                                              severity="critical"))] == ["open"]


def test_a_changed_service_sharing_a_platform_wide_movement_opens_nothing() -> None:
    # issue 14 (eval, flapping_alert window): memory rose on eight services in one minute;
    # matching-engine, deployed 26 min before, came first and opened an incident at once
    edges = [(s, "db") for s in ("match", "orders", "wallet", "users")]
    h = Harness(edges=edges, open_min_metrics=2, settle=60)
    h.feed(deploy("match", 0))
    assert h.feed(anomaly("match", "memory_limit_ratio", 1560)) == []
    for svc in ("orders", "wallet", "users"):
        assert h.feed(anomaly(svc, "memory_limit_ratio", 1560)) == []
    assert h.tick(1620) == [] and h.incidents() == set()
    # alone, the changed service's one metric is enough, once the scrape is in
    h2 = Harness(edges=edges, open_min_metrics=2, settle=60)
    h2.feed(deploy("match", 0))
    assert h2.feed(anomaly("match", "memory_limit_ratio", 690)) == []
    got = h2.tick(750)
    assert [i.status for i in got] == ["open"] and got[0].candidate_changes


def test_a_quiet_incident_is_resolved_as_of_its_holddown_before_the_next_signal() -> None:
    """No tick between a recovered incident's hold-down and a new fault's first signal (a
    busy worker, a replay where a quiet hour passes in seconds): the incident is resolved
    first, as of the end of its hold-down, and the new signal opens its own incident."""
    h = Harness(resolve_holddown=60, window=300)
    h.feed(alert("a", "api", 0, severity="critical"))
    h.feed(alert("a", "api", 100, status="resolved"))
    out = h.feed(alert("w", "api", 4000, severity="critical"))
    assert [(i.status, i.time) for i in out] == [("resolved", at(160)), ("open", at(4000))]
    assert out[0].incident_id != out[1].incident_id

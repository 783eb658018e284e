"""The stream RCA's first analysis waits for the incident's first moment (issue 14).

In the closed loop (``sre-agent eval``) the first RCA of an incident went out on the
revision that opened it: one signal, whichever the correlator happened to see first
(a "503 overloaded, shedding" log line read as a dependency failure in traffic_surge, a
pool gauge without its log line in db_pool_exhaustion). That first result is the one
that pages and plans (an AUTO plan executes at once), and which signal came first varied
run to run, so RCA top-1 moved between 58 and 83 %. The first analysis now waits, bounded,
for ``rca.first_seconds`` of event time after the incident's first signal, and analyses
the latest revision then."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from sre_agent.config import Settings
from sre_agent.schemas import Incident, SignalRef
from sre_agent.streams.rca_agent import due_first, first_moment, hold_first, incident_window_args

T0 = datetime(2025, 11, 3, 14, 0, tzinfo=UTC)


def revision(n: int, *signals: tuple[str, str, str]) -> Incident:
    return Incident(incident_id="inc", title="x", fingerprint="f", opened_at=T0, revision=n,
                    services=sorted({s for _, s, _ in signals}),
                    signals=[SignalRef(kind=k, ref=f"r{i}", service=s, time=T0, metric=m)
                             for i, (k, s, m) in enumerate(signals)])


def test_first_analysis_waits_for_the_first_moment_and_takes_the_latest_revision() -> None:
    wait = Settings().rca.first_seconds
    assert wait >= 60.0  # at least one sample minute of the platform's scrape
    held: OrderedDict = OrderedDict()
    analysed: dict = {}
    lone = revision(1, ("log", "api-gateway", "503 overloaded"))
    start = incident_window_args(lone, 300.0)["start"]
    t = T0.timestamp()
    # the opening revision, one signal, the windows at the same minute: held, not analysed
    assert hold_first(held, analysed, lone, start, t, wait, now=0.0)
    assert due_first(held, t, wait, stalled=False, now=0.5) == []
    # the same moment's other signals arrive as a new revision: it replaces the held one
    full = revision(2, ("log", "api-gateway", "503 overloaded"),
                    ("anomaly", "api-gateway", "http_requests_per_second"),
                    ("anomaly", "api-gateway", "cpu_usage_cores"))
    assert hold_first(held, analysed, full, start, t + 30, wait, now=1.0)
    assert due_first(held, t + 30, wait, stalled=False, now=1.0) == []
    # the windows reached the end of the first moment: the latest revision is analysed
    due = due_first(held, t + wait, wait, stalled=False, now=1.2)
    assert [(i.revision, s) for i, s in due] == [(2, start)] and not held
    analysed["inc"] = 0
    # later revisions of an analysed incident are analysed at once, as before
    assert not hold_first(held, analysed, revision(3, ("log", "api-gateway", "x")), start,
                          t + 30, wait, now=2.0)


def test_the_wait_is_bounded() -> None:
    inc = revision(1, ("anomaly", "redis", "up_ratio"))
    t = T0.timestamp()
    held: OrderedDict = OrderedDict()
    hold_first(held, {}, inc, t, t, 60.0, now=100.0)
    assert due_first(held, t, 60.0, stalled=True, now=101.0)  # the feed went quiet
    hold_first(held, {}, inc, t, t, 60.0, now=100.0)
    assert not due_first(held, t, 60.0, stalled=False, now=159.0)
    assert due_first(held, t, 60.0, stalled=False, now=160.0)  # event time lags the wall
    # an incident whose first moment is already in the windows (a backfill) is not held
    assert not hold_first(held, {}, inc, t, t + 3600, 60.0, now=0.0)


def test_a_reopened_incident_waits_for_its_new_moment() -> None:
    """Scorecard run 3: the db_pool incident resolved at 10:49:57, api-gateway's error
    anomaly fired again at 10:50 (the redis outage) and reopened it; it was analysed at
    once on its old signals (db_pool_exhaustion@risk-engine), and that went out as the
    first diagnosis of the redis outage."""
    t = T0.timestamp()
    analysed = {"inc": 0}
    back = revision(9, ("anomaly", "risk-engine", "db_pool_usage_ratio"),
                    ("anomaly", "api-gateway", "http_error_ratio"))
    back = back.model_copy(update={"reopen_count": 1, "time": T0 + timedelta(hours=2)})
    moment = first_moment(back, analysed, 300.0)
    assert moment == t + 7200
    held: OrderedDict = OrderedDict()
    assert hold_first(held, analysed, back, moment, t + 7200, 60.0, now=0.0)
    assert due_first(held, t + 7200 + 60, 60.0, stalled=False, now=0.5) == [(back, moment)]
    # analysed since it reopened: later revisions go at once
    analysed["inc"] = 1
    assert first_moment(back, analysed, 300.0) == t
    assert not hold_first(held, analysed, back, t, t + 7200, 60.0, now=1.0)


def test_the_first_moment_is_judged_by_the_metric_windows_clock() -> None:
    """Scorecard run 4, traffic_surge: the log lines (straight from ``logs``) moved the
    windows' clock past the first moment while the metric partials (a flush interval
    behind) did not hold the gateway's request-rate rise yet; the first RCA read the
    '503 overloaded, shedding' lines alone as a dependency failure."""
    from sre_agent.processors.rca_windows import WindowStore
    from sre_agent.streams.rca_agent import first_clock

    t = T0.timestamp()
    store = WindowStore(bucket=60.0)
    assert first_clock(store) == float("-inf")
    store.add_log(t + 5, "api-gateway", "503 Service Unavailable: overloaded, shedding")
    assert first_clock(store) == t + 5  # no series at all: the lines' clock
    store.add_points("api-gateway", "http_requests_per_second", [(t, 1300.0)])
    store.add_log(t + 75, "api-gateway", "503 Service Unavailable: overloaded, shedding")
    assert store.clock == t + 75 and first_clock(store) == t  # the metrics are behind
    held: OrderedDict = OrderedDict()
    inc = revision(1, ("log", "api-gateway", "503 overloaded"))
    hold_first(held, {}, inc, t, first_clock(store), 60.0, now=0.0)
    assert due_first(held, first_clock(store), 60.0, stalled=False, now=0.1) == []
    store.add_points("api-gateway", "http_requests_per_second", [(t + 60, 7500.0)])
    assert due_first(held, first_clock(store), 60.0, stalled=False, now=0.2) == [(inc, t)]

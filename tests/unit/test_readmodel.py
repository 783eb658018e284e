"""The read model: folding the output topics in any order, bounds, queries."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from sre_agent.readmodel import ReadModel, SeriesBuffers
from sre_agent.readmodel.query import QueryError, choice_param, float_param, page_params, paginate
from sre_agent.readmodel.records import timeline
from sre_agent.schemas import Anomaly, Feedback, Incident, Prediction, encode
from tests.api_support import incident_events

T = datetime(2025, 11, 13, 12, 0, tzinfo=UTC)


def fold(events: list, **kw: int) -> ReadModel:
    rm = ReadModel(**kw)
    for ev in events:
        rm.update(ev)
    return rm


def test_whole_incident_is_assembled_whatever_the_topic_order() -> None:
    events = incident_events("i1", service="api", now=T)
    expected = None
    rng = random.Random(7)
    orders = [events, list(reversed(events))] + [rng.sample(events, len(events)) for _ in range(10)]
    for order in orders:
        rm = fold(order)
        d = rm.incident("i1")
        assert d is not None
        view = (
            d.summary.status,
            d.summary.top_cause.cause_type if d.summary.top_cause else None,
            [(p.plan.plan_id, len(p.approvals), len(p.results)) for p in d.plans],
            [e.kind for e in d.timeline],
            d.series,
        )
        expected = expected or view
        assert view == expected
    assert expected is not None
    assert expected[:3] == ("open", "bad_deploy", [("plan-i1", 1, 1)])
    assert expected[4] == ['latency_ms{service="api"}']
    # timeline is chronological
    d = fold(events).incident("i1")
    assert d is not None
    assert [e.time for e in d.timeline] == sorted(e.time for e in d.timeline)
    assert {e.kind for e in d.timeline} == {
        "signal",
        "incident",
        "rca",
        "plan",
        "approval",
        "action",
    }


def test_latest_revision_wins_and_resolution_closes() -> None:
    rm = ReadModel()
    base = dict(incident_id="i1", title="t", fingerprint="f", opened_at=T)
    rm.update(Incident(**base, revision=2, status="updated", time=T + timedelta(minutes=2)))
    rm.update(Incident(**base, revision=1, time=T))  # late, older revision
    assert rm.incidents(status="open")[0].revision == 2
    rm.update(
        Incident(
            **base,
            revision=3,
            status="resolved",
            resolved_at=T + timedelta(minutes=5),
            time=T + timedelta(minutes=5),
        )
    )
    assert rm.incidents(status="open") == [] and rm.incidents(status="resolved")[0].revision == 3
    assert [e.summary.split(" ")[0] for e in timeline(rm.records["i1"])] == [
        "open",
        "updated",
        "resolved",
    ]


def test_bounds_evict_least_recently_updated() -> None:
    rm = ReadModel(max_items=10)
    for i in range(25):
        for ev in incident_events(f"i{i}", now=T + timedelta(minutes=i)):
            rm.update(ev)
    assert len(rm.records) == 10 and len(rm.anomaly_views) == 10 and len(rm.audit_log) == 10
    assert {s.incident_id for s in rm.incidents()} == {f"i{i}" for i in range(15, 25)}
    assert rm.find_plan("plan-i3") is None and rm.find_plan("plan-i24") is not None
    assert len(rm._plan_index) == 10  # evicted incidents take their plans along


def test_anomaly_open_then_resolved_and_hours_filter() -> None:
    kw = dict(
        anomaly_id="a1",
        series="cpu",
        metric="cpu",
        service="api",
        observed=9.0,
        expected=1.0,
        lower=0.0,
        upper=2.0,
        deviation=5.0,
        score=0.9,
    )
    rm = ReadModel()
    rm.update(Anomaly(**kw, time=T))
    assert rm.summary()["anomalies_open"] == 1
    rm.update(Anomaly(**{**kw, "observed": 1.0}, status="resolved", time=T + timedelta(minutes=3)))
    (a,) = rm.anomalies()
    assert (a.status, a.observed, a.resolved_at) == ("resolved", 9.0, T + timedelta(minutes=3))
    assert rm.anomalies(since=T + timedelta(minutes=1)) == []
    assert rm.anomalies(service="web") == [] and rm.summary()["anomalies_open"] == 0
    marks = rm.series.get("cpu").marks  # type: ignore[union-attr]
    assert [m["status"] for m in marks] == ["open", "resolved"]


def test_predictions_latest_per_series_soonest_first() -> None:
    rm = ReadModel()
    for sid, secs in (("disk{a}", 7200), ("disk{b}", 600), ("disk{a}", 3600)):
        rm.update(
            Prediction(
                series=sid,
                metric="disk",
                current=0.8,
                limit=0.95,
                confidence=0.8,
                seconds_to_breach=secs,
                breach_at=T + timedelta(seconds=secs),
                time=T,
            )
        )
    assert [(p.series, p.seconds_to_breach) for p in rm.predictions()] == [
        ("disk{b}", 600),
        ("disk{a}", 3600),
    ]


def test_invalid_bytes_are_counted_not_raised() -> None:
    rm = ReadModel()
    assert rm.update_raw("feedback", b'{"incident_id": 5}') is None
    assert rm.update_raw("feedback", None) is None
    fb = rm.update_raw("feedback", encode(Feedback(incident_id="i9", rating="good")))
    assert isinstance(fb, Feedback) and rm.rejected["feedback"] == 2 and rm.events["feedback"] == 1
    with pytest.raises(KeyError):
        rm.update_raw("metrics", b"{}")


def test_find_by_unique_prefix() -> None:
    rm = fold(incident_events("abcdef-1") + incident_events("abcdxx-2"))
    assert rm.find_incident("abcdef") == "abcdef-1"
    assert rm.find_incident("abcd") is None  # ambiguous
    assert rm.find_incident("abc") is None  # too short
    assert rm.find_plan("plan-abcdx").plan.plan_id == "plan-abcdxx-2"  # type: ignore[union-attr]


def test_llm_and_latency_accounting_whatever_the_order() -> None:
    events = incident_events("i1", now=T)
    for order in (events, list(reversed(events)), random.Random(3).sample(events, len(events))):
        rm = fold(order)
        got = {s: (rm.latency.get(s)[0][-1][1], rm.latency.get(s)[1]) for s in rm.latency.stages()}
        assert got == {
            "correlate": (1, pytest.approx(10.0)),
            "rca": (1, pytest.approx(10.0)),
            "plan": (1, pytest.approx(5.0)),
            "execute": (1, pytest.approx(4.0)),
        }
        assert rm.actions_by_outcome == {"dry_run": 1}


def test_series_buffers_bounded_and_ordered() -> None:
    sb = SeriesBuffers(max_series=2, max_points=5)
    for i, sid in enumerate(["a", "b", "c"]):
        sb.mark(sid, f"m{sid}", "svc", 100.0, 1.0, 1.0, 0.0, 2.0, "open", 0.9, f"x{i}")
    assert [s for s, _ in sb.items()] == ["b", "c"] and set(sb.metrics) == {"mb", "mc"}
    assert (
        sb.add_points(
            "c", [(101.0, 1.0), (99.0, 5.0), (102.0, 2.0)], band=lambda s, t, v: (1.0, 0.5, 1.5)
        )
        == 2
    )
    assert sb.points("c")[1:] == [(101.0, 1.0, 1.0, 0.5, 1.5), (102.0, 2.0, 1.0, 0.5, 1.5)]

    def broken(s: str, t: float, v: float) -> None:
        raise RuntimeError("band provider down")

    sb.add_points("c", [(103.0 + i, 1.0) for i in range(10)], band=broken)  # type: ignore[arg-type]
    pts = sb.points("c")
    assert len(pts) == 5 and pts[-1] == (112.0, 1.0, None, None, None)


@pytest.mark.parametrize(
    ("q", "msg"),
    [
        ({"limit": "0"}, "limit must be an integer between 1 and 1000"),
        ({"limit": "1e3"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
def test_page_params_errors(q: dict[str, str], msg: str) -> None:
    with pytest.raises(QueryError, match=msg):
        page_params(q)


def test_query_helpers() -> None:
    assert float_param({}, "hours", 24.0, 0.0, 720.0) == 24.0
    for bad in ("nan", "inf", "0", "-3", "721", "x"):
        with pytest.raises(QueryError, match="hours must be a number"):
            float_param({"hours": bad}, "hours", 24.0, 0.0, 720.0)
    assert choice_param({"s": "open"}, "s", ("open", "all")) == "open"
    with pytest.raises(QueryError, match="s must be one of open, all"):
        choice_param({"s": "x"}, "s", ("open", "all"))
    items = list(range(7))
    pages = [paginate(items, 3, o) for o in (0, 3, 6)]
    assert list(itertools.chain(*(p["items"] for p in pages))) == items
    assert [p["next_offset"] for p in pages] == [3, 6, None]
    assert paginate(items, 3, 50)["items"] == []

"""The streaming RCA judges the disturbance that led to the page (issue 14: on real
incidents the replayed alert joined an incident whose first signal came from an earlier
fault 24 minutes before; the judged window, 5 minutes from there, never reached it)."""

from __future__ import annotations

from datetime import UTC, datetime

from sre_agent.schemas import Incident, SignalRef
from sre_agent.streams.rca_agent import incident_window_args

START = 1_800_000_000.0


def at(s: float) -> datetime:
    return datetime.fromtimestamp(START + s, UTC)


def incident(*sigs: tuple[str, str, float]) -> Incident:
    return Incident(incident_id="i", title="x", fingerprint="f", opened_at=at(sigs[0][2]),
                    signals=[SignalRef(kind=k, ref=f"r{i}", service=svc, time=at(t), metric="m")
                             for i, (k, svc, t) in enumerate(sigs)])


def test_start_is_the_first_signal_when_it_led_to_the_page() -> None:
    inc = incident(("anomaly", "db", -120), ("anomaly", "api", -60), ("alert", "web", 0))
    assert incident_window_args(inc, after=300)["start"] == START - 120
    assert incident_window_args(inc)["start"] == START - 120


def test_what_was_going_on_long_before_the_page_is_not_its_start() -> None:
    inc = incident(("anomaly", "recs", -1468), ("anomaly", "ship", -530),
                   ("anomaly", "ship", -200), ("alert", "web", 0), ("anomaly", "ship", 30))
    assert incident_window_args(inc, after=300)["start"] == START  # the page
    no_page = incident(("anomaly", "recs", -1468), ("anomaly", "ship", 0))
    assert incident_window_args(no_page, after=300)["start"] == START - 1468
